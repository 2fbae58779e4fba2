# Regenerate with: PYTHON scripts/models/make_golden_models.py  (from the repo root)
"""Golden outputs of every zoo model for `tests/models_golden.rs`, from the PyTorch twins in
param_counts.py filled with its deterministic stream (weights keyed by module path; the Rust test
fills its models the same way), on the batch of 2 images `uniform("input", 2*3*32*32)`.

Per model, two passes, PyTorch in float64:
- eval: every stage output and the logits (BatchNorm on the filled running statistics);
- train: a fresh model in train mode (BatchNorm on batch statistics), the same outputs, then the
  backward of L = sum_k w_k * logits_k + sum_s mean_k(w_k * stage_s[k]) with the weights
  w_k = ((k*7919) mod 1000)/500 - 1 (exact in float32): the gradient of the input, of the first
  and the last weight, of the last bias, of the first and a middle BatchNorm's weight and bias,
  and those two BatchNorms' running mean and variance after the pass. The train pass also runs
  in float32, and each quantity records as "spread" how far PyTorch's own float32 result is from
  its float64 one (max |difference| / max |value|): the test allows a few times that.

Storage (about 3 MB): logits, gradients and running statistics in full, and the stage outputs
of the SMALL models; a larger stage output (more than FULL elements) of the others as its per-channel mean and root mean square over (N, H, W) plus SAMPLES values at the flat
indices (j*(n-1))//(SAMPLES-1). Every value is a little-endian float32 in
tests/fixtures/models/golden.bin; tests/fixtures/models/golden.json says where each one lies
({"shape", "offset", "len"} for a full tensor; {"shape", "channels": [offset, C], "samples":
[offset, SAMPLES]} for a summarised one), with the keys digest and tensor count of each model.
"""

import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from param_counts import ARCHS, fill, keys_digest, tensors, uniform  # noqa: E402

OUT = os.path.join(HERE, "..", "..", "tests", "fixtures", "models")
BATCH = 2
# Models whose stage outputs are stored in full in both passes; the others' stages larger than
# FULL elements are summarised (below), to keep the fixture a few MB.
SMALL = {"resnet8", "vgg8"}
FULL = 8192
SAMPLES = 2048


def weights(n):
    k = np.arange(n, dtype=np.int64)
    return torch.from_numpy(((k * 7919) % 1000) / 500.0 - 1.0)


class Blob:
    """The float32 values, appended in order; offsets count float32 values."""

    def __init__(self):
        self.parts = []
        self.size = 0

    def add(self, t):
        a = t.detach().to(torch.float64).reshape(-1).numpy().astype("<f4")
        off = self.size
        self.parts.append(a)
        self.size += a.size
        return [off, int(a.size)]

    def full(self, t):
        off, n = self.add(t)
        return {"shape": list(t.shape), "offset": off, "len": n}

    def stage(self, t, full):
        if t.numel() <= full:
            return self.full(t)
        c = t.shape[1]
        per = t.transpose(0, 1).reshape(c, -1)
        stats = torch.cat([per.mean(dim=1), per.pow(2).mean(dim=1).sqrt()])
        flat = t.reshape(-1)
        n = flat.numel()
        idx = torch.tensor([(j * (n - 1)) // (SAMPLES - 1) for j in range(SAMPLES)])
        return {"shape": list(t.shape), "channels": self.add(stats), "samples": self.add(flat[idx])}


def loss_of(stages, logits):
    total = (weights(logits.numel()).reshape(logits.shape) * logits).sum()
    for s in stages:
        total = total + (weights(s.numel()).reshape(s.shape) * s).mean()
    return total


def watched(model):
    """PyTorch keys of the tensors whose gradients (or running statistics) are recorded: the
    first and last weights, the classifier's bias (when it has one: ResNet-9's has none), and
    the first and the middle BatchNorm."""
    params = [(k, t) for k, _, name, t in tensors(model) if isinstance(t, nn.Parameter)]
    weights_ = [k for k, t in params if k.endswith(".weight") and t.dim() >= 2]
    bns = [k.rsplit(".", 1)[0] for k, m, name, _ in tensors(model)
           if isinstance(m, nn.BatchNorm2d) and name == "weight"]
    last_bias = [k for k, m, name, _ in tensors(model) if name == "bias" and isinstance(m, nn.Linear)][-1:]
    chosen_bns = [bns[0], bns[len(bns) // 2]]
    grads = [weights_[0], weights_[-1]] + last_bias + [f"{b}.{p}" for b in chosen_bns for p in ("weight", "bias")]
    running = [f"{b}.{p}" for b in chosen_bns for p in ("running_mean", "running_var")]
    return grads, running


def spread(a, b):
    """How far PyTorch's own float32 result b is from its float64 one a, relative to max|a|."""
    a = a.detach().to(torch.float64)
    return ((a - b.detach().to(torch.float64)).abs().max() / a.abs().max()).item()


def with_spread(entry, a, b):
    entry["spread"] = spread(a, b)
    return entry


def train_entry(name, blob, build, forward, x, full):
    """The train pass of one model: `build()` gives a fresh float64 model (filled here),
    `forward(model, x)` its (stages, logits); the pass runs in float64 and float32, and each
    recorded quantity carries its float32 spread."""

    def train_pass(dtype):
        model = build()
        fill(model)
        model = model.to(dtype).train()
        xg = x.clone().to(dtype).requires_grad_(True)
        stages, logits = forward(model, xg)
        loss = loss_of(stages, logits)
        loss.backward()
        return model, xg, stages, logits, loss

    model, xg, stages, logits, loss = train_pass(torch.float64)
    grads, running = watched(model)
    by_key = {k: t for k, _, _, t in tensors(model)}
    for k in grads:
        assert by_key[k].grad is not None, f"{name}: no gradient for {k}"
    # PyTorch's own float32 error on each quantity, as a fraction of its largest |value|: deep
    # random networks in train mode amplify rounding in the backward pass (BatchNorm on 2
    # samples), so float32 gradients can be percents off float64 ones for any implementation.
    m32, x32, stages32, logits32, loss32 = train_pass(torch.float32)
    by_key32 = {k: t for k, _, _, t in tensors(m32)}
    return {
        "stages": [with_spread(blob.stage(s, full), s, s32) for s, s32 in zip(stages, stages32)],
        "logits": with_spread(blob.full(logits), logits, logits32),
        "loss": loss.item(),
        "loss_spread": spread(loss.reshape(1), loss32.reshape(1)),
        "input_grad": with_spread(blob.full(xg.grad), xg.grad, x32.grad),
        "grads": {k: with_spread(blob.full(by_key[k].grad), by_key[k].grad, by_key32[k].grad) for k in grads},
        "running": {k: with_spread(blob.full(by_key[k]), by_key[k], by_key32[k]) for k in running},
    }


def golden(name, make, blob):
    full = 1 << 62 if name in SMALL else FULL
    x = torch.from_numpy(uniform("input", BATCH * 3 * 32 * 32).reshape(BATCH, 3, 32, 32))
    model = make(10).double().eval()
    fill(model)
    digest, count = keys_digest(model)
    with torch.no_grad():
        stages, logits = model(x)
    entry = {
        "keys_digest": digest,
        "tensors": count,
        "eval": {"stages": [blob.stage(s, full) for s in stages], "logits": blob.full(logits)},
    }
    entry["train"] = train_entry(name, blob, lambda: make(10).double(), lambda m, x: m(x), x, full)
    return entry


def main():
    torch.set_num_threads(1)
    blob = Blob()
    gold = {"batch": BATCH, "samples": SAMPLES, "models": {}}
    for name, make in ARCHS.items():
        gold["models"][name] = golden(name, make, blob)
        print(f"{name}: {blob.size * 4 / 1e6:.2f} MB so far")
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "golden.bin"), "wb") as f:
        for a in blob.parts:
            f.write(a.tobytes())
    with open(os.path.join(OUT, "golden.json"), "w") as f:
        json.dump(gold, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
