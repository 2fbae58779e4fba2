"""ONNX Runtime's time per node of an exported model, summed by kind, to set beside meal's
per-layer times (`examples/conv_latency.rs`) and profiles.

ONNX Runtime's own profiler (`SessionOptions.enable_profiling`) times every node of `RUNS` runs
after `WARMUP` untimed ones, on the CPU provider with `--threads` intra-op threads; the script
prints the median microseconds per run of each kind (1×1, k×k and depthwise convolutions, the
squeeze-excitation's 1×1 layers on 1×1 maps, and every other operator by name) and, with
`--nodes N`, the N slowest nodes with their input shapes. Profiling adds a little time per node:
compare kinds with kinds, and whole-model latency with scripts/bench/latency.py.

Usage: PYTHON scripts/bench/ort_nodes.py MODEL.onnx --batch 8 [--side 224] [--nodes 40]
(MODEL.onnx from `meal export --format onnx`; PYTHON with onnxruntime and numpy.)
"""
import argparse
import collections
import json
import os
import tempfile

import numpy as np
import onnxruntime as ort

WARMUP = 10
RUNS = 50


def kind(op, shapes):
    if op != "Conv" or len(shapes) < 2:
        return op
    w = shapes[1]
    k = "depthwise %dx%d" % (w[2], w[3]) if w[1] == 1 else "conv %dx%d" % (w[2], w[3])
    if shapes[0][2:] == [1, 1]:
        k = "excitation " + k
    return k


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--side", type=int, default=224)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--nodes", type=int, default=0)
    a = ap.parse_args()
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.enable_profiling = True
    # In the temporary folder, so that a failed run leaves nothing in the working tree.
    so.profile_file_prefix = os.path.join(tempfile.gettempdir(), "ort_nodes")
    s = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((a.batch, 3, a.side, a.side), dtype=np.float32)
    name = s.get_inputs()[0].name
    for _ in range(WARMUP + RUNS):
        s.run(None, {name: x})
    path = s.end_profiling()
    with open(path) as f:
        events = json.load(f)
    os.remove(path)
    per_node = collections.defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            args = e["args"]
            shapes = [list(d.values())[0] for d in args.get("input_type_shape", [])]
            per_node[(e["name"], args["op_name"], json.dumps(shapes))].append(e["dur"])
    nodes = []
    for (n, op, shapes), durs in per_node.items():
        durs = sorted(durs[WARMUP:])
        if not durs:
            raise SystemExit(f"ort_nodes.py: node {n} has no timed run")
        nodes.append((durs[len(durs) // 2], op, json.loads(shapes)))
    by_kind = collections.Counter()
    count = collections.Counter()
    for us, op, shapes in nodes:
        by_kind[kind(op, shapes)] += us
        count[kind(op, shapes)] += 1
    total = sum(by_kind.values())
    print(f"{a.model}: batch {a.batch}, {a.threads} threads, {RUNS} profiled runs, "
          f"median µs per run")
    for k, us in by_kind.most_common():
        print(f"  {k:28s} {us:10.0f}  {100 * us / total:5.1f}%  ({count[k]} nodes)")
    print(f"  {'total':28s} {total:10.0f}")
    for us, op, shapes in sorted(nodes, key=lambda n: -n[0])[: a.nodes]:
        print(f"  {us:8.0f} {op} {shapes}")


if __name__ == "__main__":
    main()
