"""PyTorch side of BENCHMARKS.md: the same models, batch and work as examples/bench.rs.

Usage: /path/to/venv/bin/python scripts/bench/torch_bench.py ARCH BATCH STEPS
Runs on the CPU with 2 threads (the development machine's core count). The model definitions
come from scripts/models/param_counts.py (PyTorch twins of the zoo, same parameter counts).
"""
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "models"))
import param_counts  # noqa: E402


def build(arch):
    # The zoo twins return (stages, logits).
    return param_counts.ARCHS[arch](10)


def main():
    arch = sys.argv[1] if len(sys.argv) > 1 else "resnet20"
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 128
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = build(arch)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, 3, 32, 32)
    y = torch.arange(batch) % 10
    model.train()
    times = []
    for i in range(steps + 2):
        t = time.perf_counter()
        out = model(x)
        logits = out[-1] if isinstance(out, (list, tuple)) else out
        loss = F.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()
        if i >= 2:
            times.append(time.perf_counter() - t)
    train = batch * len(times) / sum(times)
    model.eval()
    times = []
    with torch.no_grad():
        for i in range(steps + 2):
            t = time.perf_counter()
            model(x)
            if i >= 2:
                times.append(time.perf_counter() - t)
    infer = batch * len(times) / sum(times)
    print(json.dumps({"framework": f"pytorch {torch.__version__} cpu", "arch": arch, "batch": batch,
                      "steps": steps, "train_img_per_s": round(train, 1), "infer_img_per_s": round(infer, 1)}))


if __name__ == "__main__":
    main()
