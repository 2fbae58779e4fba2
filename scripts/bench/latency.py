#!/usr/bin/env python3
"""The twin of `meal bench --arch ARCH --latency`: the same model's eval forward timed run by run
at batch 1 and batch 8, in PyTorch eager and in ONNX Runtime, as ms per image (median and 90th
percentile, nearest rank, as src/bench/latency.rs).

    PYTHON scripts/bench/latency.py --arch ARCH --safetensors W.safetensors --onnx M.onnx
        [--steps N] [--warmup W] [--threads T] [--seed S]
    PYTHON scripts/bench/latency.py --table RESULTS.jsonl

Both files come from the checkpoint `meal bench --latency --save-model` wrote (`meal export`
with `--format safetensors` and `--format onnx`), so all three runtimes time the same weights.
PyTorch: the twin of scripts/models/param_counts.py loaded strictly, eval mode, float32, under
`torch.inference_mode()`, `torch.set_num_threads(T)`. ONNX Runtime: CPUExecutionProvider, default
graph optimisation (which folds BatchNorm into the convolutions), `intra_op_num_threads = T`,
sequential execution. Prints one JSON line per runtime. `--table` turns the lines of
scripts/bench/latency.sh into a markdown table. Needs torch, onnxruntime and numpy.
"""
import argparse
import json
import math
import os
import sys
import time

BATCHES = [1, 8]


def summarise(batch, times):
    if not times:
        sys.exit("latency.py: --steps must be at least 1")
    s = sorted(times)
    n = len(s)
    median = s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2
    p90 = s[math.ceil(n * 0.9) - 1]
    row = {"batch": batch, "runs": n, "median_ms_per_image": median * 1e3 / batch,
           "p90_ms_per_image": p90 * 1e3 / batch}
    for key in ("median_ms_per_image", "p90_ms_per_image"):
        if not math.isfinite(row[key]) or row[key] <= 0:
            sys.exit(f"latency.py: {key} at batch {batch} came out as {row[key]}")
    return row


def timed(run, x, warmup, steps):
    times = []
    for i in range(warmup + steps):
        t = time.perf_counter()
        out = run(x)
        elapsed = time.perf_counter() - t
        if not math.isfinite(float(out.sum())):
            sys.exit("latency.py: the logits are not finite; this is not a real forward")
        if i >= warmup:
            times.append(elapsed)
    return times


def build_torch(arch, classes):
    """The zoo twin of scripts/models/param_counts.py, else timm's model of that name (meal's
    ImageNet forms carry timm's parameter names)."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "interop"))
    import torch_models as tm
    if arch in tm.param_counts.ARCHS:
        return tm.build(arch, "meal", classes)
    import timm
    if not timm.is_model(arch):
        sys.exit(f"latency.py: {arch} is neither a zoo twin nor a timm model")
    return timm.create_model(arch, pretrained=False, num_classes=classes)


def measure(args):
    import numpy as np
    import onnxruntime as ort
    import torch

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "interop"))
    import torch_models as tm

    torch.set_num_threads(args.threads)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(args.onnx, opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    # The export fixes the image side and the classes; the batch axis is dynamic.
    size = session.get_inputs()[0].shape[-1]
    classes = session.get_outputs()[0].shape[-1]
    if not (isinstance(size, int) and isinstance(classes, int)):
        sys.exit(f"latency.py: {args.onnx} has no fixed image side or class count")

    sd, _ = tm.load_safetensors(args.safetensors)
    model = build_torch(args.arch, classes)
    model.load_state_dict(sd, strict=True)
    model.eval()

    def torch_run(x):
        with torch.inference_mode():
            return tm.logits(model, x)

    def ort_run(x):
        return session.run(None, {name: x})[0]

    rng = np.random.default_rng(args.seed)
    rows = {"pytorch": [], "onnxruntime": []}
    for b in BATCHES:
        x = rng.standard_normal((b, 3, size, size), dtype=np.float32)
        rows["pytorch"].append(summarise(b, timed(torch_run, torch.from_numpy(x), args.warmup,
                                                  args.steps)))
        rows["onnxruntime"].append(summarise(b, timed(ort_run, x, args.warmup, args.steps)))
    for fw, version in (("pytorch", torch.__version__), ("onnxruntime", ort.__version__)):
        print(json.dumps({"framework": f"{fw} {version}", "arch": args.arch, "warmup": args.warmup,
                          "steps": args.steps, "threads": args.threads, "latency": rows[fw]}))


def table(path):
    by = {}
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            fw = r["framework"].split()[0]
            by.setdefault(r["arch"], {})[fw] = r
    names = {}
    print("| model | batch | meal ms/img median (p90) | PyTorch | ONNX Runtime "
          "| PyTorch / meal | ORT / meal |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for arch, fws in by.items():
        missing = {"meal", "pytorch", "onnxruntime"} - fws.keys()
        if missing:
            sys.exit(f"latency.py: {arch} has no result from {', '.join(sorted(missing))}")
        for fw, r in fws.items():
            names[fw] = r["framework"]
        for i, b in enumerate(BATCHES):
            m, p, o = (fws[fw]["latency"][i] for fw in ("meal", "pytorch", "onnxruntime"))
            assert m["batch"] == p["batch"] == o["batch"] == b, (m, p, o)
            cell = lambda r: f"{r['median_ms_per_image']:.3f} ({r['p90_ms_per_image']:.3f})"
            ratio = lambda r: f"{r['median_ms_per_image'] / m['median_ms_per_image']:.2f}"
            print(f"| {arch} | {b} | {cell(m)} | {cell(p)} | {cell(o)} | {ratio(p)} | {ratio(o)} |")
    print()
    print("Ratios of the medians: above 1 means meal answers faster. "
          + ", ".join(sorted(names.values())) + ".")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch")
    ap.add_argument("--safetensors")
    ap.add_argument("--onnx")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--table")
    args = ap.parse_args()
    if args.table:
        table(args.table)
    elif args.arch and args.safetensors and args.onnx:
        measure(args)
    else:
        ap.error("give --arch, --safetensors and --onnx, or --table")


if __name__ == "__main__":
    main()
