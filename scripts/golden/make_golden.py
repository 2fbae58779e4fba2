# Regenerate with: PYTHON scripts/golden/make_golden.py  (from the repo root)
"""Golden values from PyTorch for the `tests/golden_*.rs` tests.

Every input is a float32 value (what the Rust side computes with); the reference outputs are
computed by PyTorch in float64 from those exact float32 inputs and written with their full
float repr (nothing is rounded). Seeds are fixed, so a rerun rewrites identical files.

JSON layout: each file is an object of named cases; a tensor is {"shape": [...], "data": [...]}
in row-major order.
"""

import json
import os

import numpy as np
import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "golden")


def f32(t):
    """Rounds to float32 and returns a float64 tensor holding exactly those values."""
    return t.to(torch.float32).to(torch.float64)


def randn(gen, *shape, scale=1.0):
    return f32(torch.randn(*shape, generator=gen, dtype=torch.float64) * scale)


def arr(t):
    """A reference value: full float64 repr."""
    t = t.detach().to(torch.float64).contiguous()
    return {"shape": list(t.shape), "data": [float(v) for v in t.reshape(-1).tolist()]}


def short32(v):
    """The shortest decimal that reads back (decimal → f64 → f32, as serde_json + `as f32` do)
    as exactly the float32 `v`; the full f64 repr when that fails."""
    s = float(np.format_float_positional(np.float32(v), unique=True, trim="-"))
    return s if np.float32(s) == np.float32(v) else float(v)


def arr32(t):
    """An input that is exactly float32: written with its shortest float32 repr (lossless)."""
    t = t.detach().to(torch.float64).contiguous()
    assert torch.equal(t, f32(t)), "arr32 takes float32-exact values"
    return {"shape": list(t.shape), "data": [short32(v) for v in t.reshape(-1).tolist()]}


def pool_weights(*shape):
    """The weighting of the pooled output in the pool tests, w[k] = ((k·7919) mod 1000)/500 − 1
    over the flat index k: exact in f32, so the Rust test rebuilds it instead of reading it."""
    n = int(np.prod(shape))
    k = torch.arange(n, dtype=torch.float64)
    return (((k * 7919) % 1000) / 500.0 - 1.0).reshape(*shape)


def write(name, obj):
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, name)
    with open(path, "w") as f:
        json.dump(obj, f, separators=(",", ":"))
        f.write("\n")
    print(f"{path}: {os.path.getsize(path)} bytes")


# ---------------------------------------------------------------------------------------------
# 1-2. adaptive pooling and the MEAL stage feature
# ---------------------------------------------------------------------------------------------
def pool_cases():
    gen = torch.Generator().manual_seed(1)
    cases = {}
    # (L_in, L_out, B, C)
    shapes = [
        (16, 10000, 1, 1),
        (256, 1000, 1, 2),
        (64, 5000, 1, 1),
        (10, 3, 2, 3),
        (7, 7, 2, 3),
        (5, 13, 2, 3),
        (256, 10, 2, 3),
    ]
    for l_in, l_out, b, c in shapes:
        x0 = randn(gen, b, c, l_in)
        w = pool_weights(b, c, l_out)
        case = {"out_len": l_out, "x": arr32(x0)}
        for kind in ("avg", "max"):
            x = x0.clone().requires_grad_(True)
            out = F.adaptive_avg_pool1d(x, l_out) if kind == "avg" else F.adaptive_max_pool1d(x, l_out)
            (out * w).sum().backward()
            case[kind] = {"out": arr(out), "grad": arr(x.grad)}
        cases[f"{l_in}_{l_out}"] = case
    stage = {}
    for shape in [(2, 3, 4, 4), (2, 5, 8, 8)]:
        for l_out in (10, 100, 7):
            x0 = randn(gen, *shape)
            b, c, h, w_ = shape
            w = pool_weights(b, l_out)
            case = {"out_len": l_out, "x": arr32(x0)}
            for kind in ("avg", "max"):
                x = x0.clone().requires_grad_(True)
                v = x.view(b, c, h * w_)
                if kind == "avg":
                    f = F.adaptive_avg_pool1d(v, l_out).mean(dim=1)
                else:
                    f = F.adaptive_max_pool1d(v, l_out).max(dim=1)[0]
                (f * w).sum().backward()
                case[kind] = {"out": arr(f), "grad": arr(x.grad)}
            stage[f"{'x'.join(map(str, shape))}_{l_out}"] = case
    write("pool.json", {"adaptive_pool1d": cases, "stage_feature": stage})


# ---------------------------------------------------------------------------------------------
# 3-4, 6. similarity losses, BCE with logits, gradient reversal
# ---------------------------------------------------------------------------------------------
def similarity_loss(kind, s, raw, probs, t):
    if kind == "ce":
        return -(probs * F.log_softmax(s / t, dim=1)).sum() / s.shape[0] * t * t
    if kind == "kl":
        return F.kl_div(F.log_softmax(s / t, dim=1), probs, reduction="batchmean") * t * t
    if kind == "l1":
        return F.l1_loss(s, raw)
    if kind == "l2":
        return F.mse_loss(s, raw)
    if kind == "l1_soft":
        return F.l1_loss(F.softmax(s / t, dim=1), probs)
    if kind == "l2_soft":
        return F.mse_loss(F.softmax(s / t, dim=1), probs)
    raise ValueError(kind)


class GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad.neg()


def loss_cases():
    gen = torch.Generator().manual_seed(2)
    sim = {}
    inputs = {}
    for d, b in ((10, 4), (100, 2)):
        s0 = randn(gen, b, d, scale=2.0)
        teachers = [randn(gen, b, d, scale=3.0) for _ in range(3)]
        inputs[f"d{d}"] = {"student": arr32(s0), "teachers": [arr32(t) for t in teachers]}
        for temp in (1.0, 4.0):
            targets = {
                "one": (teachers[0], F.softmax(teachers[0] / temp, dim=1)),
                "mean3": (
                    sum(teachers) / 3.0,
                    sum(F.softmax(t / temp, dim=1) for t in teachers) / 3.0,
                ),
            }
            for tname, (raw, probs) in targets.items():
                sim[f"probs_T{int(temp)}_{tname}_d{d}"] = arr(probs)
                for kind in ("ce", "kl", "l1", "l2", "l1_soft", "l2_soft"):
                    s = s0.clone().requires_grad_(True)
                    loss = similarity_loss(kind, s, raw, probs, temp)
                    loss.backward()
                    sim[f"{kind}_T{int(temp)}_{tname}_d{d}"] = {
                        "kind": kind,
                        "temperature": temp,
                        "target": tname,
                        "inputs": f"d{d}",
                        "loss": loss.item(),
                        "grad": arr(s.grad),
                    }
    # A given target with exact zeros (0·log 0 = 0 in KL).
    b, d = 3, 6
    s0 = randn(gen, b, d, scale=2.0)
    probs = torch.tensor(
        [[0.5, 0.5, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0], [0.25, 0.25, 0.125, 0.125, 0.25, 0]],
        dtype=torch.float64,
    )
    raw = randn(gen, b, d)
    for kind in ("ce", "kl", "l1_soft", "l2_soft"):
        for temp in (1.0, 4.0):
            s = s0.clone().requires_grad_(True)
            loss = similarity_loss(kind, s, raw, probs, temp)
            loss.backward()
            sim[f"{kind}_T{int(temp)}_zeros"] = {
                "kind": kind,
                "temperature": temp,
                "target": "given",
                "student": arr32(s0),
                "raw": arr32(raw),
                "probs": arr32(probs),
                "loss": loss.item(),
                "grad": arr(s.grad),
            }

    bce = {}
    b = 4
    logits = randn(gen, 2 * b, 2, scale=3.0)
    logits[0, 0], logits[1, 1], logits[2, 0], logits[3, 1] = 50.0, -50.0, 0.0, -0.0
    logits[5, 0], logits[6, 1], logits[7, 0] = 0.0, 49.5, -50.0
    disc_targets = torch.tensor([[1.0, 0.0]] * b + [[0.0, 1.0]] * b, dtype=torch.float64)
    rand_targets = (torch.rand(2 * b, 2, generator=gen) > 0.5).to(torch.float64)
    for tname, y in (("disc", disc_targets), ("random", rand_targets)):
        z = logits.clone().requires_grad_(True)
        loss = F.binary_cross_entropy_with_logits(z, y)
        loss.backward()
        bce[tname] = {"logits": arr32(logits), "targets": arr32(y), "loss": loss.item(), "grad": arr(z.grad)}

    # Gradient reversal in a tiny graph: h = tanh(x·W); loss = Σ c·GRL(h)² + Σ e·h.
    x = randn(gen, 3, 4)
    wmat = randn(gen, 4, 5)
    c = randn(gen, 3, 5)
    e = randn(gen, 3, 5)
    xg = x.clone().requires_grad_(True)
    h = torch.tanh(xg @ wmat)
    loss = (c * GradReverse.apply(h) ** 2).sum() + (e * h).sum()
    loss.backward()
    grl = {"x": arr32(x), "w": arr32(wmat), "c": arr32(c), "e": arr32(e), "loss": loss.item(), "grad": arr(xg.grad)}

    write("losses.json", {"similarity": sim, "similarity_inputs": inputs, "bce": bce, "grl": grl})


# ---------------------------------------------------------------------------------------------
# 5. the discriminator (1×1 Conv2d layers, exactly like the reference)
# ---------------------------------------------------------------------------------------------
class RefDiscriminator(torch.nn.Module):
    def __init__(self, d, final_relu):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(d, d // 2, 1)
        self.conv2 = torch.nn.Conv2d(d // 2, (d // 2) // 2, 1)
        self.conv3 = torch.nn.Conv2d((d // 2) // 2, 2, 1)
        self.final_relu = final_relu

    def forward(self, x):
        x = x.view(x.shape[0], x.shape[1], 1, 1)
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = self.conv3(x)
        if self.final_relu:
            x = F.relu(x)
        return x.view(x.shape[0], -1)


def discriminator_cases():
    cases = {}
    seed = 3
    for d in (10, 40):
        for kind in ("reference", "fixed"):
            torch.manual_seed(seed)
            seed += 1
            net = RefDiscriminator(d, kind == "reference")
            with torch.no_grad():
                for p in net.parameters():
                    p.copy_(f32(p))
            net = net.double()
            b = 3
            gen = torch.Generator().manual_seed(seed)
            x = randn(gen, 2 * b, d, scale=2.0).requires_grad_(True)
            out = net(x)
            y = torch.tensor([[1.0, 0.0]] * b + [[0.0, 1.0]] * b, dtype=torch.float64)
            loss = F.binary_cross_entropy_with_logits(out, y)
            loss.backward()
            layers = []
            for conv in (net.conv1, net.conv2, net.conv3):
                layers.append(
                    {
                        "weight": arr32(conv.weight.reshape(conv.out_channels, conv.in_channels)),
                        "bias": arr32(conv.bias),
                        "weight_grad": arr(conv.weight.grad.reshape(conv.out_channels, conv.in_channels)),
                        "bias_grad": arr(conv.bias.grad),
                    }
                )
            cases[f"{kind}_d{d}"] = {
                "kind": kind,
                "dim": d,
                "batch": b,
                "layers": layers,
                "x": arr32(x),
                "out": arr(out),
                "loss": loss.item(),
                "x_grad": arr(x.grad),
                "num_params": sum(p.numel() for p in net.parameters()),
            }
    write("discriminator.json", cases)


# ---------------------------------------------------------------------------------------------
# 7-8. SGD and BatchNorm2d
# ---------------------------------------------------------------------------------------------
def optim_cases():
    gen = torch.Generator().manual_seed(5)
    w0 = randn(gen, 3, 4, scale=0.5)
    b0 = randn(gen, 3, scale=0.5)
    x = randn(gen, 5, 4)
    y = randn(gen, 5, 3)
    sgd = {}
    configs = {
        "plain": dict(momentum=0.0, nesterov=False, weight_decay=0.0),
        "momentum_wd": dict(momentum=0.9, nesterov=False, weight_decay=5e-4),
        "nesterov_wd": dict(momentum=0.9, nesterov=True, weight_decay=1e-4),
    }
    for name, cfg in configs.items():
        lin = torch.nn.Linear(4, 3).double()
        with torch.no_grad():
            lin.weight.copy_(w0)
            lin.bias.copy_(b0)
        opt = torch.optim.SGD(lin.parameters(), lr=0.1, **cfg)
        steps = []
        for _ in range(5):
            opt.zero_grad()
            loss = F.mse_loss(lin(x), y)
            loss.backward()
            opt.step()
            steps.append({"loss": loss.item(), "weight": arr(lin.weight), "bias": arr(lin.bias)})
        sgd[name] = {**cfg, "lr": 0.1, "steps": steps}

    bn = torch.nn.BatchNorm2d(3).double()
    gamma = f32(randn(gen, 3, scale=0.5) + 1.0)
    beta = randn(gen, 3, scale=0.5)
    with torch.no_grad():
        bn.weight.copy_(f32(gamma))
        bn.bias.copy_(f32(beta))
    x1 = f32(randn(gen, 4, 3, 5, 5, scale=2.0) + 0.5)
    x2 = f32(randn(gen, 4, 3, 5, 5, scale=1.5) - 0.3)
    x3 = randn(gen, 4, 3, 5, 5)
    wout = randn(gen, 4, 3, 5, 5)
    bn.train()
    x1g = x1.clone().requires_grad_(True)
    out1 = bn(x1g)
    (out1 * wout).sum().backward()
    rm1, rv1 = bn.running_mean.clone(), bn.running_var.clone()
    with torch.no_grad():
        out2 = bn(x2)
    rm2, rv2 = bn.running_mean.clone(), bn.running_var.clone()
    bn.eval()
    with torch.no_grad():
        out3 = bn(x3)
    batchnorm = {
        "weight": arr32(bn.weight),
        "bias": arr32(bn.bias),
        "x1": arr32(x1),
        "x2": arr32(x2),
        "x3": arr32(x3),
        "w": arr32(wout),
        "out1": arr(out1),
        "running_mean1": arr(rm1),
        "running_var1": arr(rv1),
        "out2": arr(out2),
        "running_mean2": arr(rm2),
        "running_var2": arr(rv2),
        "eval_out": arr(out3),
        "x1_grad": arr(x1g.grad),
        "weight_grad": arr(bn.weight.grad),
        "bias_grad": arr(bn.bias.grad),
    }
    init = {"weight": arr32(w0), "bias": arr32(b0), "x": arr32(x), "y": arr32(y)}
    write("optim.json", {"sgd": sgd, "sgd_init": init, "batchnorm": batchnorm})


if __name__ == "__main__":
    torch.set_num_threads(1)
    pool_cases()
    loss_cases()
    discriminator_cases()
    optim_cases()
