#!/usr/bin/env python3
"""PyTorch twins of the meal model zoo: trainable parameter counts and forward MACs at 32x32.

Every architecture here is written from the descriptions in docs/meal-reference.md (sections
1.4 and 2) and the crate's own docs; the Rust models in src/models/ must give the same counts.
MACs are summed by forward hooks on Conv2d (out_h*out_w*k_h*k_w*in/groups*out per image, bias
not counted) and Linear (in*out), at batch 1.

`fill` gives every model deterministic weights (a splitmix64 stream keyed by the FNV-1a hash of
each tensor's name, which the module attributes here make equal to the Rust module path);
make_golden_models.py uses it to write the forward and backward goldens of
tests/models_golden.rs. The Rust side of the fill is `meal::selftest::fill` (src/selftest/fill.rs),
which `meal selftest` and the golden tests share.

    PYTHON scripts/models/param_counts.py \
        --json tests/fixtures/models/param_counts.json \
        --golden tests/fixtures/models/golden_outputs.json
"""

import argparse
import json
import math

import numpy as np

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv3(i, o, stride=1, bias=False, groups=1):
    return nn.Conv2d(i, o, 3, stride, 1, groups=groups, bias=bias)


def conv1(i, o, stride=1, bias=False):
    return nn.Conv2d(i, o, 1, stride, 0, bias=bias)


class Model(nn.Module):
    """Every model returns (list of stage maps, logits)."""


class CBR(nn.Module):
    """conv -> BN -> ReLU (the Rust `ConvBnRelu`)."""

    def __init__(self, i, o, kk, stride=1, bias=False, groups=1):
        super().__init__()
        self.conv = nn.Conv2d(i, o, kk, stride, kk // 2, groups=groups, bias=bias)
        self.bn = nn.BatchNorm2d(o)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class CB(nn.Module):
    """conv -> BN (the Rust `ConvBn`): projection shortcuts."""

    def __init__(self, i, o, kk, stride):
        super().__init__()
        self.conv = nn.Conv2d(i, o, kk, stride, kk // 2, bias=False)
        self.bn = nn.BatchNorm2d(o)

    def forward(self, x):
        return self.bn(self.conv(x))


def run_layers(layers, x, stages):
    for blocks in layers:
        for b in blocks:
            x = b(x)
        stages.append(x)
    return x


# ---------------------------------------------------------------- CIFAR ResNet (option A)
class BlockA(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1, self.bn1 = conv3(cin, cout, stride), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = conv3(cout, cout), nn.BatchNorm2d(cout)
        self.stride, self.pad = stride, (cout - cin) // 2

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        s = x
        if self.stride != 1 or self.pad:
            s = F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, self.pad, self.pad))
        return F.relu(y + s)


class ResNetCifar(Model):
    def __init__(self, depth, k):
        super().__init__()
        n = (depth - 2) // 6
        self.stem = CBR(3, 16, 3)
        layers, cin = [], 16
        for s, w in enumerate([16, 32, 64]):
            blocks = []
            for i in range(n):
                blocks.append(BlockA(cin, w, 2 if s > 0 and i == 0 else 1))
                cin = w
            layers.append(nn.ModuleList(blocks))
        self.stages = nn.ModuleList(layers)
        self.fc = nn.Linear(64, k)

    def forward(self, x):
        st = []
        x = run_layers(self.stages, self.stem(x), st)
        return st, self.fc(x.mean((2, 3)))


# ---------------------------------------------------------------- VGG with BN
class VGG(Model):
    """`cfg`: conv widths grouped by the max-pool closing each group."""

    def __init__(self, cfg, k):
        super().__init__()
        groups, cin = [], 3
        for widths in cfg:
            units = []
            for w in widths:
                units.append(CBR(cin, w, 3, bias=True))
                cin = w
            groups.append(nn.ModuleList(units))
        self.groups = nn.ModuleList(groups)
        self.fc = nn.Linear(cin, k)

    def forward(self, x):
        st = []
        for g in self.groups:
            for u in g:
                x = u(x)
            x = F.max_pool2d(x, 2, 2)
            st.append(x)
        st.pop()  # the last pooled map is not a stage (MEAL overwrites it with the logits)
        # vgg19_bn's last map is 1x1, where MEAL's AvgPool2d(1) + flatten is this global mean.
        return st, self.fc(x.mean((2, 3)))


VGG19 = [[64, 64], [128, 128], [256] * 4, [512] * 4, [512] * 4]
VGG8 = [[32], [64, 64], [128, 128], [256, 256]]


# ---------------------------------------------------------------- ResNet-18 / PreAct
class Basic(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1, self.bn1 = conv3(cin, cout, stride), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = conv3(cout, cout), nn.BatchNorm2d(cout)
        self.shortcut = CB(cin, cout, 1, stride) if stride != 1 or cin != cout else None

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + (x if self.shortcut is None else self.shortcut(x)))


class PreAct(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), conv3(cin, cout, stride)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), conv3(cout, cout)
        self.shortcut = conv1(cin, cout, stride) if stride != 1 or cin != cout else None

    def forward(self, x):
        a = F.relu(self.bn1(x))
        s = x if self.shortcut is None else self.shortcut(a)
        return self.conv2(F.relu(self.bn2(self.conv1(a)))) + s


class ResNet18(Model):
    def __init__(self, block, k, preact):
        super().__init__()
        self.stem = conv3(3, 64) if preact else CBR(3, 64, 3)
        layers, cin = [], 64
        for s, w in enumerate([64, 128, 256, 512]):
            layers.append(nn.ModuleList([block(cin, w, 1 if s == 0 else 2), block(w, w, 1)]))
            cin = w
        self.layers = nn.ModuleList(layers)
        self.fc = nn.Linear(512, k)

    def forward(self, x):
        st = []
        x = run_layers(self.layers, self.stem(x), st)
        return st, self.fc(F.avg_pool2d(x, 4).flatten(1))


# ---------------------------------------------------------------- DenseNet-BC
class DenseUnit(nn.Module):
    def __init__(self, cin, g):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), conv1(cin, 4 * g)
        self.bn2, self.conv2 = nn.BatchNorm2d(4 * g), conv3(4 * g, g)

    def forward(self, x):
        y = self.conv2(F.relu(self.bn2(self.conv1(F.relu(self.bn1(x))))))
        return torch.cat([y, x], 1)


class Trans(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.bn, self.conv = nn.BatchNorm2d(cin), conv1(cin, cout)

    def forward(self, x):
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2)


class DenseNet(Model):
    """`stage_after`: names ('dense1', 'trans2', ...) whose outputs are stages."""

    def __init__(self, blocks, g, k, stage_after, final_hw):
        super().__init__()
        c = 2 * g
        self.stem = conv3(3, c)
        self.blocks, self.transitions = nn.ModuleList(), nn.ModuleList()
        for i, n in enumerate(blocks):
            units = []
            for _ in range(n):
                units.append(DenseUnit(c, g))
                c += g
            self.blocks.append(nn.ModuleList(units))
            if i + 1 < len(blocks):
                self.transitions.append(Trans(c, c // 2))
                c //= 2
        self.bn = nn.BatchNorm2d(c)
        self.stage_after = stage_after
        self.fc = nn.Linear(c * final_hw * final_hw, k)

    def forward(self, x):
        x, st = self.stem(x), []
        for i, units in enumerate(self.blocks):
            for u in units:
                x = u(x)
            if f"dense{i + 1}" in self.stage_after:
                st.append(x)
            if i < len(self.transitions):
                x = self.transitions[i](x)
                if f"trans{i + 1}" in self.stage_after:
                    st.append(x)
        x = F.avg_pool2d(F.relu(self.bn(x)), 4)
        return st, self.fc(x.flatten(1))


# ---------------------------------------------------------------- DPN-92
class DualPath(nn.Module):
    def __init__(self, last, mid, out, dense, stride, first):
        super().__init__()
        self.out = out
        self.conv1, self.bn1 = conv1(last, mid), nn.BatchNorm2d(mid)
        self.conv2, self.bn2 = conv3(mid, mid, stride, groups=32), nn.BatchNorm2d(mid)
        self.conv3, self.bn3 = conv1(mid, out + dense), nn.BatchNorm2d(out + dense)
        self.shortcut = CB(last, out + dense, 1, stride) if first else None

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        if self.shortcut is not None:
            x = self.shortcut(x)
        d = self.out
        return F.relu(torch.cat([x[:, :d] + y[:, :d], x[:, d:], y[:, d:]], 1))


class DPN92(Model):
    def __init__(self, k):
        super().__init__()
        mids, outs, nums, dens = (96, 192, 384, 768), (256, 512, 1024, 2048), (3, 4, 20, 3), (16, 32, 24, 128)
        self.stem = CBR(3, 64, 3)
        last, layers = 64, []
        for s in range(4):
            units = []
            for i in range(nums[s]):
                units.append(DualPath(last, mids[s], outs[s], dens[s], (1 if s == 0 else 2) if i == 0 else 1, i == 0))
                last = outs[s] + (i + 2) * dens[s]
            layers.append(nn.ModuleList(units))
        self.layers = nn.ModuleList(layers)
        self.fc = nn.Linear(last, k)

    def forward(self, x):
        st = []
        x = run_layers(self.layers, self.stem(x), st)
        return st, self.fc(F.avg_pool2d(x, 4).flatten(1))


# ---------------------------------------------------------------- GoogLeNet (CIFAR)
class Inception(nn.Module):
    def __init__(self, cin, n1, r3, n3, r5, n5, npool):
        super().__init__()
        self.b1 = CBR(cin, n1, 1, bias=True)
        self.b2 = nn.ModuleList([CBR(cin, r3, 1, bias=True), CBR(r3, n3, 3, bias=True)])
        self.b3 = nn.ModuleList([CBR(cin, r5, 1, bias=True), CBR(r5, n5, 3, bias=True), CBR(n5, n5, 3, bias=True)])
        self.b4 = CBR(cin, npool, 1, bias=True)

    def forward(self, x):
        y2, y3 = x, x
        for u in self.b2:
            y2 = u(y2)
        for u in self.b3:
            y3 = u(y3)
        return torch.cat([self.b1(x), y2, y3, self.b4(F.max_pool2d(x, 3, 1, 1))], 1)


class GoogLeNet(Model):
    def __init__(self, k):
        super().__init__()
        self.pre = CBR(3, 192, 3, bias=True)
        self.groups = nn.ModuleList([
            nn.ModuleList([Inception(192, 64, 96, 128, 16, 32, 32), Inception(256, 128, 128, 192, 32, 96, 64)]),
            nn.ModuleList([
                Inception(480, 192, 96, 208, 16, 48, 64), Inception(512, 160, 112, 224, 24, 64, 64),
                Inception(512, 128, 128, 256, 24, 64, 64), Inception(512, 112, 144, 288, 32, 64, 64),
                Inception(528, 256, 160, 320, 32, 128, 128)]),
            nn.ModuleList([Inception(832, 256, 160, 320, 32, 128, 128), Inception(832, 384, 192, 384, 48, 128, 128)]),
        ])
        self.fc = nn.Linear(1024, k)

    def forward(self, x):
        x, st = self.pre(x), []
        for g, modules in enumerate(self.groups):
            for m in modules:
                x = m(x)
            if g < 2:
                x = F.max_pool2d(x, 3, 2, 1)
                st.append(x)
        return st, self.fc(F.avg_pool2d(x, 8).flatten(1))


# ---------------------------------------------------------------- ResNeXt-29 (2x64d)
class NeXtBlock(nn.Module):
    def __init__(self, cin, card, width, stride):
        super().__init__()
        gw = card * width
        self.conv1, self.bn1 = conv1(cin, gw), nn.BatchNorm2d(gw)
        self.conv2, self.bn2 = conv3(gw, gw, stride, groups=card), nn.BatchNorm2d(gw)
        self.conv3, self.bn3 = conv1(gw, 2 * gw), nn.BatchNorm2d(2 * gw)
        self.shortcut = CB(cin, 2 * gw, 1, stride) if stride != 1 or cin != 2 * gw else None

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.shortcut is None else self.shortcut(x)))


class ResNeXt29(Model):
    def __init__(self, card, width, k):
        super().__init__()
        self.stem = CBR(3, 64, 1)
        cin, layers = 64, []
        for s in range(3):
            units = []
            for i in range(3):
                units.append(NeXtBlock(cin, card, width, 2 if s > 0 and i == 0 else 1))
                cin = 2 * card * width
            layers.append(nn.ModuleList(units))
            width *= 2
        self.layers = nn.ModuleList(layers)
        self.fc = nn.Linear(cin, k)

    def forward(self, x):
        st = []
        x = run_layers(self.layers, self.stem(x), st)
        return st, self.fc(F.avg_pool2d(x, 8).flatten(1))


# ---------------------------------------------------------------- MobileNet v1 (CIFAR)
class Separable(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.depthwise = CBR(cin, cin, 3, stride, groups=cin)
        self.pointwise = CBR(cin, cout, 1)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


class MobileNet(Model):
    CFG = [64, (128, 2), 128, (256, 2), 256, (512, 2), 512, 512, 512, 512, 512, (1024, 2), 1024]

    def __init__(self, k):
        super().__init__()
        self.stem = CBR(3, 32, 3)
        blocks, cin = [], 32
        for v in self.CFG:
            out, stride = v if isinstance(v, tuple) else (v, 1)
            blocks.append(Separable(cin, out, stride))
            cin = out
        self.blocks = nn.ModuleList(blocks)
        self.fc = nn.Linear(1024, k)

    def forward(self, x):
        a = self.stem(x)
        b = a
        for blk in self.blocks:
            b = blk(b)
        return [a, b], self.fc(F.avg_pool2d(b, 2).flatten(1))


# ---------------------------------------------------------------- ResNet-9 (Page, DAWNBench)
class ResNet9(Model):
    def __init__(self, w, k):
        super().__init__()
        self.prep = CBR(3, w, 3)
        self.layer1 = CBR(w, 2 * w, 3)
        self.res1 = nn.ModuleList([CBR(2 * w, 2 * w, 3), CBR(2 * w, 2 * w, 3)])
        self.layer2 = CBR(2 * w, 4 * w, 3)
        self.layer3 = CBR(4 * w, 8 * w, 3)
        self.res3 = nn.ModuleList([CBR(8 * w, 8 * w, 3), CBR(8 * w, 8 * w, 3)])
        self.fc = nn.Linear(8 * w, k, bias=False)

    @staticmethod
    def residual(x, pair):
        y = x
        for unit in pair:
            y = unit(y)
        return x + y

    def forward(self, x):
        x = self.prep(x)
        s1 = self.residual(F.max_pool2d(self.layer1(x), 2), self.res1)
        s2 = F.max_pool2d(self.layer2(s1), 2)
        s3 = self.residual(F.max_pool2d(self.layer3(s2), 2), self.res3)
        return [s1, s2, s3], 0.125 * self.fc(F.adaptive_max_pool2d(s3, 1).flatten(1))


ARCHS = {
    "resnet8": lambda k: ResNetCifar(8, k),
    "resnet14": lambda k: ResNetCifar(14, k),
    "resnet20": lambda k: ResNetCifar(20, k),
    "resnet32": lambda k: ResNetCifar(32, k),
    "resnet56": lambda k: ResNetCifar(56, k),
    "vgg8": lambda k: VGG(VGG8, k),
    "vgg19_bn": lambda k: VGG(VGG19, k),
    "resnet18_cifar": lambda k: ResNet18(Basic, k, preact=False),
    "preact_resnet18": lambda k: ResNet18(PreAct, k, preact=True),
    "densenet_cifar": lambda k: DenseNet([8, 24, 24], 40, k, ("trans2", "dense3"), 2),
    "densenet121": lambda k: DenseNet([6, 12, 24, 16], 32, k, ("dense1", "dense2", "dense3", "dense4"), 1),
    "dpn92": DPN92,
    "googlenet": GoogLeNet,
    "resnext29_2x64d": lambda k: ResNeXt29(2, 64, k),
    "mobilenet": MobileNet,
    "resnet9_w24": lambda k: ResNet9(24, k),
    "resnet9": lambda k: ResNet9(64, k),
}


def measure(model):
    macs = [0]

    def hook(m, inp, out):
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            macs[0] += out.shape[2] * out.shape[3] * kh * kw * (m.in_channels // m.groups) * m.out_channels
        elif isinstance(m, nn.Linear):
            macs[0] += m.in_features * m.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    model.eval()
    with torch.no_grad():
        stages, logits = model(torch.zeros(1, 3, 32, 32))
    for h in handles:
        h.remove()
    return macs[0], [list(s.shape[1:]) for s in stages], list(logits.shape)


# ---------------------------------------------------------------- deterministic fill
M64 = (1 << 64) - 1


def fnv1a(text):
    h = 0xCBF29CE484222325
    for b in text.encode():
        h = ((h ^ b) * 0x100000001B3) & M64
    return h


def uniform(key, n):
    """n values in [-1, 1): splitmix64 outputs seed + i*golden (i = 1..n), top 53 bits."""
    u = np.uint64
    i = np.arange(1, n + 1, dtype=np.uint64)
    z = u(fnv1a(key)) + i * u(0x9E3779B97F4A7C15)
    z = (z ^ (z >> u(30))) * u(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> u(27))) * u(0x94D049BB133111EB)
    z = z ^ (z >> u(31))
    return (z >> u(11)).astype(np.float64) / 2.0**53 * 2.0 - 1.0


def tensors(model):
    """(key, module, name, tensor) for every parameter and BN buffer, PyTorch layout."""
    for mod_name, m in model.named_modules():
        items = list(m.named_parameters(recurse=False)) + list(m.named_buffers(recurse=False))
        for name, t in items:
            if name != "num_batches_tracked":
                yield (f"{mod_name}.{name}" if mod_name else name), m, name, t


def fill(model):
    """weights U(+-sqrt(6/fan_in)), biases U(+-0.1); BN gamma 1+-0.1, beta +-0.1, running mean
    +-0.1, running var 1.25+-0.25 (all through the same stream)."""
    with torch.no_grad():
        for key, m, name, t in tensors(model):
            r = uniform(key, t.numel()).reshape(tuple(t.shape))
            if isinstance(m, nn.BatchNorm2d):
                v = {"weight": 1 + 0.1 * r, "bias": 0.1 * r, "running_mean": 0.1 * r,
                     "running_var": 1.25 + 0.25 * r}[name]
            elif name == "weight":
                v = r * math.sqrt(6.0 / (t.numel() // t.shape[0]))
            else:
                v = 0.1 * r
            t.copy_(torch.from_numpy(v))


def keys_digest(model):
    lines = sorted(f"{key}:{list(t.shape)}" for key, _, _, t in tensors(model))
    return f"{fnv1a(chr(10).join(lines)):016x}", len(lines)


def summary(t):
    flat = t.flatten()
    n = flat.numel()
    idx = [(j * (n - 1)) // 15 for j in range(16)]
    return {
        "shape": list(t.shape),
        "mean": flat.mean().item(),
        "mean_abs": flat.abs().mean().item(),
        "samples": [flat[i].item() for i in idx],
    }


def output_summaries(make):
    """The eval-mode output summaries `meal selftest` compares every zoo model with."""
    model = make(10).double().eval()
    fill(model)
    digest, count = keys_digest(model)
    x = torch.from_numpy(uniform("input", 2 * 3 * 32 * 32).reshape(2, 3, 32, 32))
    with torch.no_grad():
        stages, logits = model(x)
    return {
        "keys_digest": digest,
        "tensors": count,
        "stages": [summary(s) for s in stages],
        "logits": summary(logits),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", help="write the table here")
    ap.add_argument("--golden", help="write the deterministic-weight output summaries of "
                    "`meal selftest` here (tests/fixtures/models/golden_outputs.json)")
    args = ap.parse_args()
    table = {}
    print(f"{'arch':<18}{'params k=10':>14}{'params k=100':>14}{'MACs@32x32':>16}  stages [C,H,W]")
    for name, make in ARCHS.items():
        m10 = make(10)
        p10 = sum(p.numel() for p in m10.parameters() if p.requires_grad)
        p100 = sum(p.numel() for p in make(100).parameters() if p.requires_grad)
        macs, stages, logits = measure(m10)
        assert logits == [1, 10]
        macs100 = measure(make(100))[0]
        table[name] = {"params_k10": p10, "params_k100": p100, "macs": macs, "macs_k100": macs100,
                       "stages": stages}
        print(f"{name:<18}{p10:>14,}{p100:>14,}{macs:>16,}  {stages}")
    if args.golden:
        gold = {name: output_summaries(make) for name, make in ARCHS.items()}
        with open(args.golden, "w") as f:
            json.dump(gold, f, indent=1)
            f.write("\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(table, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
