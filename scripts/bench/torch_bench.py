"""The PyTorch twin of `meal bench`: the same work, the same flags, the same JSON fields.

Usage: PYTHON scripts/bench/torch_bench.py (--arch ARCH | --workload NAME) [--batch B]
           [--steps N] [--warmup W] [--seed S] [--threads T] --json

Runs on the CPU with 2 threads by default (`torch.set_num_threads`), the development machine's
core count, which is also what meal's thread pool uses there. Models are the PyTorch twins of
the zoo in scripts/models/param_counts.py (same parameter counts and outputs as meal's zoo,
checked by tests/models_golden.rs). Written from docs/meal-reference.md and meal's semantics
(src/distill), not from the reference code:

--arch: a training step (forward, cross-entropy, backward, SGD lr 0.1, momentum 0.9, weight
    decay 5e-4) and an eval-mode forward under no_grad, on a seeded random batch.
--workload: one MEAL V1 step, as meal's `objective::step` in its default (joint) mode:
    - teachers frozen, BatchNorm on batch statistics (train mode, as `teacher_bn = "train"`),
      run under no_grad; the random-teacher draw is a round robin (step i asks teacher i mod n),
      as in `meal bench`;
    - stage feature: channel mean of (B, C, H·W), then AdaptiveAvgPool1d(out_dim) (the same
      values as pooling first; both meal and this twin take the cheaper order);
    - similarity: soft cross-entropy −(1/B)·Σ softmax(t)·log_softmax(s), weighted by γ;
    - one discriminator per stage, Linear d→d/2→d/4→2 with a ReLU after every layer (the
      reference's), PyTorch's default init, input cat(student rows, teacher rows), BCE with
      logits against [1,0] / [0,1], η = 1;
    - one backward of similarity + discriminator loss, then SGD (momentum 0.9, weight decay
      5e-4) on the student (lr 0.1) and on the discriminators (lr 1e-3).
    The inference figure is the student's eval-mode forward.
"""
import argparse
import json
import os
import resource
import sys
import time

import torch

# Resident memory of the interpreter and the torch libraries, before any model: part of every
# peak below, reported apart so the table can say how much of it is not the workload's.
IMPORT_RSS_MB = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "models"))
import param_counts  # noqa: E402

CLASSES = 10
# (index, out_dim, gamma) as in src/bench/workload.rs.
WORKLOADS = {
    "meal-v1-resnet18": ("resnet18_cifar", ["resnet18_cifar"],
                         [(0, 10000, 0.001), (1, 5000, 0.01), (2, 1000, 0.05), (3, 500, 0.1),
                          (-1, None, 1.0)]),
    "meal-v1-cifar-small": ("resnet8", ["resnet20", "vgg8", "resnet14"], [(-1, None, 1.0)]),
}
SIMD_FLAGS = ["sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512dq", "avx512bw",
              "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16",
              "amx_int8", "asimd", "sve", "sve2"]


def cpu():
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return None, []
    field = {}
    for line in text.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            field.setdefault(k.strip(), v.strip())
    model = field.get("model name") or field.get("Model") or field.get("cpu model")
    flags = (field.get("flags") or field.get("Features") or "").split()
    return model, [f for f in SIMD_FLAGS if f in flags]


def measure(images, warmup, steps, f):
    times = []
    for i in range(warmup + steps):
        t = time.perf_counter()
        f(i)
        if i >= warmup:
            times.append(max(time.perf_counter() - t, 1e-9))
    times.sort()
    n = len(times)
    median = times[n // 2] if n % 2 else (times[n // 2 - 1] + times[n // 2]) / 2
    return {"median": images / median, "min": images / times[-1], "max": images / times[0],
            "median_ms": median * 1e3}


def finite(what, value):
    if not torch.isfinite(torch.tensor(value)):
        raise SystemExit(f"bench: the {what} became {value}")


def build(arch):
    return param_counts.ARCHS[arch](CLASSES)


def random_batch(batch):
    return torch.randn(batch, 3, 32, 32), torch.arange(batch) % CLASSES


def bench_arch(arch, batch, warmup, steps):
    model = build(arch)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x, y = random_batch(batch)
    model.train()

    def train_step(_):
        loss = F.cross_entropy(model(x)[1], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        finite("cross-entropy", loss.item())

    train = measure(batch, warmup, steps, train_step)
    model.eval()
    with torch.no_grad():
        infer = measure(batch, warmup, steps, lambda _: finite("logit sum", model(x)[1].sum().item()))
    return train, infer


def matched(stages, logits, index, out_dim):
    if out_dim is None:
        return logits
    x = stages[index]
    b, _, h, w = x.shape
    return F.adaptive_avg_pool1d(x.reshape(b, -1, h * w).mean(1, keepdim=True), out_dim).reshape(b, out_dim)


def discriminator(d):
    half = d // 2
    return nn.Sequential(nn.Linear(d, half), nn.ReLU(), nn.Linear(half, half // 2), nn.ReLU(),
                         nn.Linear(half // 2, 2), nn.ReLU())


def bench_workload(name, batch, warmup, steps):
    student_arch, teacher_archs, spec = WORKLOADS[name]
    teachers = [build(a) for a in teacher_archs]
    for t in teachers:
        t.train()  # batch statistics, as meal's teacher_bn = "train"
        t.requires_grad_(False)
    student = build(student_arch)
    student.train()
    discs = nn.ModuleList([discriminator(CLASSES if d is None else d) for _, d, _ in spec])
    opt_s = torch.optim.SGD(student.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    opt_d = torch.optim.SGD(discs.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    x, _ = random_batch(batch)
    y_d = torch.cat([torch.tensor([[1.0, 0.0]]).expand(batch, 2),
                     torch.tensor([[0.0, 1.0]]).expand(batch, 2)])

    def step(i):
        with torch.no_grad():
            t_stages, t_logits = teachers[i % len(teachers)](x)
            targets = [matched(t_stages, t_logits, k, d) for k, d, _ in spec]
        s_stages, s_logits = student(x)
        feats = [matched(s_stages, s_logits, k, d) for k, d, _ in spec]
        sim = 0.0
        adv = 0.0
        for (_, _, gamma), s, t, disc in zip(spec, feats, targets, discs):
            sim = sim + gamma * -(F.softmax(t, 1) * F.log_softmax(s, 1)).sum() / batch
            adv = adv + F.binary_cross_entropy_with_logits(disc(torch.cat([s, t])), y_d)
        total = sim + adv
        opt_s.zero_grad()
        opt_d.zero_grad()
        total.backward()
        opt_s.step()
        opt_d.step()
        finite("MEAL loss", total.item())

    train = measure(batch, warmup, steps, step)
    student.eval()
    with torch.no_grad():
        infer = measure(batch, warmup, steps,
                        lambda _: finite("logit sum", student(x)[1].sum().item()))
    return train, infer


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--arch")
    g.add_argument("--workload", choices=sorted(WORKLOADS))
    p.add_argument("--batch", type=int)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true", help="(always one JSON line; for symmetry)")
    a = p.parse_args()
    if a.arch is not None and a.arch not in param_counts.ARCHS:
        p.error(f"unknown arch {a.arch}; known: {', '.join(param_counts.ARCHS)}")
    if a.steps < 1:
        p.error("--steps must be at least 1")
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    batch = a.batch or (128 if a.arch else 64)
    if a.arch:
        train, infer = bench_arch(a.arch, batch, a.warmup, a.steps)
    else:
        train, infer = bench_workload(a.workload, batch, a.warmup, a.steps)
    model, simd = cpu()
    report = {"framework": f"pytorch {torch.__version__}"}
    report["arch" if a.arch else "workload"] = a.arch or a.workload
    report.update({
        "batch": batch, "warmup": a.warmup, "steps": a.steps, "device": "cpu",
        "threads": torch.get_num_threads(), "cpu": model, "simd": simd,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "train_img_per_s": train["median"], "train": train,
        "infer_img_per_s": infer["median"], "infer": infer,
        # ru_maxrss is in KiB on Linux.
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "import_rss_mb": IMPORT_RSS_MB,
    })
    print(json.dumps(report))


if __name__ == "__main__":
    main()
