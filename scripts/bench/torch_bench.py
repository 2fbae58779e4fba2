"""The PyTorch twin of `meal bench`: the same work, the same flags, the same JSON fields.

Usage: PYTHON scripts/bench/torch_bench.py (--arch ARCH | --workload NAME) [--batch B]
           [--image-size N] [--steps N] [--warmup W] [--seed S] [--threads T]
           [--device cpu|cuda|cuda:N] --json

Runs on the CPU with 2 threads by default (`torch.set_num_threads`), the development machine's
core count, which is also what meal's thread pool uses there. `--device cuda` runs the models
and the batch on the GPU (the GPU host's script, scripts/device/run.sh); every step ends in a
`.item()`, which waits for the GPU, so the times are the GPU's. Models are the PyTorch twins of
the zoo in scripts/models/param_counts.py (same parameter counts and outputs as meal's zoo,
checked by tests/models_golden.rs); an architecture that is not there is an ImageNet form, whose
twin is timm's model of that name (`timm.create_model(name, pretrained=False)`, 1000 classes,
224×224 unless --image-size says otherwise). Written from docs/meal-reference.md and meal's
semantics (src/distill), not from the reference code:

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
--workload meal-v2-resnet50: one MEAL V2 step (reference §4.1, as the `meal-v2` recipe):
    timm's senet154 and resnet152s in eval mode under no_grad, the mean of their softmaxes as
    the soft cross-entropy target, one discriminator 1000→125→15→2 (ReLU after every layer) fed
    cat(student logits, mean teacher logits), one backward, SGD (lr 0.01, momentum 0.9, no
    weight decay) on the student (timm's resnet50, train mode) and the discriminator.
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

# (image side, classes) of the two forms.
CIFAR = (32, 10)
IMAGENET = (224, 1000)
# (student, teachers, (index, out_dim, gamma) per stage, method) as in src/bench/workload.rs.
WORKLOADS = {
    "meal-v1-resnet18": ("resnet18_cifar", ["resnet18_cifar"],
                         [(0, 10000, 0.001), (1, 5000, 0.01), (2, 1000, 0.05), (3, 500, 0.1),
                          (-1, None, 1.0)], "v1"),
    "meal-v1-cifar-small": ("resnet8", ["resnet20", "vgg8", "resnet14"], [(-1, None, 1.0)], "v1"),
    "meal-v2-resnet50": ("resnet50", ["senet154", "resnet152s"], [(-1, None, 1.0)], "v2"),
}
# Student lr, D lr, weight decay, discriminator width divisor.
METHODS = {"v1": (0.1, 1e-3, 5e-4, 2), "v2": (0.01, 0.01, 0.0, 8)}
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


def natural(arch):
    """(image side, classes) an architecture is built for."""
    return CIFAR if arch in param_counts.ARCHS else IMAGENET


class Logits(nn.Module):
    """A timm model with the zoo twins' output: (stage features, logits); no stages."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return [], self.net(x)


def build(arch, classes):
    if arch in param_counts.ARCHS:
        return param_counts.ARCHS[arch](classes).to(DEVICE)
    import timm
    if not timm.is_model(arch):
        raise SystemExit(f"bench: unknown arch {arch}: neither a zoo twin in "
                         f"scripts/models/param_counts.py nor a timm model")
    return Logits(timm.create_model(arch, pretrained=False, num_classes=classes)).to(DEVICE)


# Where models and batches live: set once from --device in main().
DEVICE = torch.device("cpu")


def random_batch(batch, size, classes):
    # Drawn on the CPU so that the same seed gives the same batch on every device.
    x, y = torch.randn(batch, 3, size, size), torch.arange(batch) % classes
    return x.to(DEVICE), y.to(DEVICE)


def bench_arch(arch, size, classes, batch, warmup, steps):
    model = build(arch, classes)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x, y = random_batch(batch, size, classes)
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


def discriminator(d, k):
    """The reference's D: d → d/k → d/k/k → 2, a ReLU after every layer."""
    h1 = d // k
    h2 = h1 // k
    return nn.Sequential(nn.Linear(d, h1), nn.ReLU(), nn.Linear(h1, h2), nn.ReLU(),
                         nn.Linear(h2, 2), nn.ReLU())


def bench_workload(name, size, batch, warmup, steps):
    student_arch, teacher_archs, spec, method = WORKLOADS[name]
    lr, d_lr, wd, k = METHODS[method]
    classes = natural(student_arch)[1]
    teachers = [build(a, classes) for a in teacher_archs]
    for t in teachers:
        # v1: batch statistics, as meal's teacher_bn = "train"; v2: running statistics.
        t.train(method == "v1")
        t.requires_grad_(False)
    student = build(student_arch, classes)
    student.train()
    discs = nn.ModuleList([discriminator(classes if d is None else d, k) for _, d, _ in spec]).to(DEVICE)
    opt_s = torch.optim.SGD(student.parameters(), lr=lr, momentum=0.9, weight_decay=wd)
    opt_d = torch.optim.SGD(discs.parameters(), lr=d_lr, momentum=0.9, weight_decay=wd)
    x, _ = random_batch(batch, size, classes)
    y_d = torch.cat([torch.tensor([[1.0, 0.0]]).expand(batch, 2),
                     torch.tensor([[0.0, 1.0]]).expand(batch, 2)]).to(DEVICE)

    def teacher_targets(i):
        """(raw, probabilities) per stage: one teacher in v1 (round robin), every teacher's
        mean in v2 (the mean of probabilities, and of logits for D)."""
        chosen = [teachers[i % len(teachers)]] if method == "v1" else teachers
        raws = None
        probs = None
        for t in chosen:
            t_stages, t_logits = t(x)
            r = [matched(t_stages, t_logits, k, d) for k, d, _ in spec]
            p = [F.softmax(v, 1) for v in r]
            raws = r if raws is None else [a + b for a, b in zip(raws, r)]
            probs = p if probs is None else [a + b for a, b in zip(probs, p)]
        n = len(chosen)
        if n > 1:
            raws = [v / n for v in raws]
            probs = [v / n for v in probs]
        return raws, probs

    def step(i):
        with torch.no_grad():
            targets, target_probs = teacher_targets(i)
        s_stages, s_logits = student(x)
        feats = [matched(s_stages, s_logits, k, d) for k, d, _ in spec]
        sim = 0.0
        adv = 0.0
        for (_, _, gamma), s, t, p, disc in zip(spec, feats, targets, target_probs, discs):
            sim = sim + gamma * -(p * F.log_softmax(s, 1)).sum() / batch
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
    p.add_argument("--image-size", type=int,
                   help="side of the square images (default: 32 for CIFAR forms, 224 for ImageNet)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument("--json", action="store_true", help="(always one JSON line; for symmetry)")
    a = p.parse_args()
    if a.image_size is not None and a.image_size < 1:
        p.error("--image-size must be at least 1 (pixels per side)")
    if a.steps < 1:
        p.error("--steps must be at least 1")
    global DEVICE
    try:
        DEVICE = torch.device(a.device)
    except RuntimeError as e:
        p.error(f"--device {a.device}: {e}")
    if DEVICE.type == "cuda" and not torch.cuda.is_available():
        p.error(f"--device {a.device}: this PyTorch sees no CUDA GPU (torch {torch.__version__})")
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    batch = a.batch or (128 if a.arch else 64)
    size, classes = natural(a.arch or WORKLOADS[a.workload][0])
    size = a.image_size or size
    if a.arch:
        train, infer = bench_arch(a.arch, size, classes, batch, a.warmup, a.steps)
    else:
        train, infer = bench_workload(a.workload, size, batch, a.warmup, a.steps)
    model, simd = cpu()
    report = {"framework": f"pytorch {torch.__version__}"}
    report["arch" if a.arch else "workload"] = a.arch or a.workload
    report.update({
        "batch": batch, "image_size": size, "classes": classes, "warmup": a.warmup, "steps": a.steps, "device": str(DEVICE),
        "threads": torch.get_num_threads(), "cpu": model, "simd": simd,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "train_img_per_s": train["median"], "train": train,
        "infer_img_per_s": infer["median"], "infer": infer,
        # ru_maxrss is in KiB on Linux.
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "import_rss_mb": IMPORT_RSS_MB,
    })
    if DEVICE.type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(DEVICE)
        report["peak_gpu_mb"] = torch.cuda.max_memory_allocated(DEVICE) / 2**20
    print(json.dumps(report))


if __name__ == "__main__":
    main()
