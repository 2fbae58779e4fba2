"""PyTorch definitions for meal's interop: the zoo's twins and the kuangliu-named variants.

- ``meal`` names: the twins of ``scripts/models/param_counts.py`` (their attribute names mirror
  the Rust fields, so ``model.state_dict()`` keys are meal's export names). ``model(x)`` returns
  ``(stages, logits)``.
- ``kuangliu`` names: ResNet18, PreActResNet18 and VGG('VGG19') as kuangliu/pytorch-cifar (and
  so the MEAL reference's CIFAR teachers) name their modules, written here from the well-known
  structure: ``conv1, bn1, layerN.i.{conv1,bn1,conv2,bn2,shortcut.0,shortcut.1}, linear`` and
  ``features.N`` (conv, BN, ReLU per layer, MaxPool per 'M'), ``classifier``. ``model(x)``
  returns the logits.

``build(arch, names, k)`` returns one of them; ``logits(model, x)`` the logits of either kind.
Also here: a dependency-free safetensors reader/writer and the deterministic inputs/weights the
fixtures use (splitmix64 keyed by FNV-1a, as ``param_counts.py``).
"""

import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "models"))
import param_counts  # noqa: E402  (the twins)

uniform = param_counts.uniform


# ------------------------------------------------------------------ kuangliu-named models
class KBasicBlock(nn.Module):
    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class KPreActBlock(nn.Module):
    def __init__(self, cin, planes, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        if stride != 1 or cin != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False))

    def forward(self, x):
        out = F.relu(self.bn1(x))
        sc = self.shortcut(out) if hasattr(self, "shortcut") else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + sc


class KResNet(nn.Module):
    """ResNet18 (``preact=False``) or PreActResNet18 (``preact=True``) of kuangliu."""

    def __init__(self, preact, k=10):
        super().__init__()
        block = KPreActBlock if preact else KBasicBlock
        self.preact = preact
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        if not preact:
            self.bn1 = nn.BatchNorm2d(64)
        cin = 64
        for i, planes in enumerate([64, 128, 256, 512]):
            layers = []
            for stride in [1 if i == 0 else 2, 1]:
                layers.append(block(cin, planes, stride))
                cin = planes
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
        self.linear = nn.Linear(512, k)

    def forward(self, x):
        out = self.conv1(x)
        if not self.preact:
            out = F.relu(self.bn1(out))
        for i in range(1, 5):
            out = getattr(self, f"layer{i}")(out)
        out = F.avg_pool2d(out, 4)
        return self.linear(out.view(out.size(0), -1))


class KVGG(nn.Module):
    """VGG('VGG19') of kuangliu: the BN form MEAL's ``vgg19``/``vgg19_BN`` use."""

    CFG19 = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
             512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]

    def __init__(self, k=10):
        super().__init__()
        layers, cin = [], 3
        for x in self.CFG19:
            if x == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, x, 3, padding=1), nn.BatchNorm2d(x), nn.ReLU(inplace=True)]
                cin = x
        layers.append(nn.AvgPool2d(1, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(512, k)

    def forward(self, x):
        out = self.features(x)
        return self.classifier(out.view(out.size(0), -1))


KUANGLIU = {
    "resnet18_cifar": lambda k: KResNet(False, k),
    "preact_resnet18": lambda k: KResNet(True, k),
    "vgg19_bn": lambda k: KVGG(k),
}


def build(arch, names="meal", k=10):
    if names == "meal":
        return param_counts.ARCHS[arch](k)
    if names == "kuangliu":
        return KUANGLIU[arch](k)
    raise ValueError(f"unknown names {names}")


def logits(model, x):
    out = model(x)
    return out[1] if isinstance(out, tuple) else out


# ------------------------------------------------------------------ fixed inputs and weights
def fixed_inputs(n=4):
    """n CIFAR-sized inputs, float32 values of the splitmix stream keyed "input"."""
    x = uniform("input", n * 3 * 32 * 32).astype(np.float32).reshape(n, 3, 32, 32)
    return torch.from_numpy(x)


def kind_of(model, key):
    """What a state-dict entry is, for the deterministic fill (and the Rust side's copy)."""
    mod_name, _, name = key.rpartition(".")
    m = model.get_submodule(mod_name) if mod_name else model
    if isinstance(m, nn.BatchNorm2d):
        return {"weight": "bn_weight", "bias": "bn_bias", "running_mean": "bn_mean",
                "running_var": "bn_var", "num_batches_tracked": "counter"}[name]
    return "weight" if name == "weight" else "bias"


def deterministic_value(key, kind, shape):
    """float64 values of one tensor: weights U(+-sqrt(6/fan_in)), biases U(+-0.1), BN gamma
    1+-0.1, beta and running mean +-0.1, running var 1.25+-0.25 (splitmix keyed by `key`)."""
    n = int(np.prod(shape)) if shape else 1
    r = uniform(key, n).reshape(shape)
    if kind == "bn_weight":
        return 1 + 0.1 * r
    if kind in ("bn_bias", "bn_mean", "bias"):
        return 0.1 * r
    if kind == "bn_var":
        return 1.25 + 0.25 * r
    if kind == "weight":
        return r * math.sqrt(6.0 / (n // shape[0]))
    raise ValueError(kind)


def fill_deterministic(model):
    """Fills every parameter and BN buffer (float32 values) and returns the key listing."""
    listing = []
    sd = model.state_dict()
    with torch.no_grad():
        for key, t in sd.items():
            kind = kind_of(model, key)
            listing.append([key, list(t.shape), kind])
            if kind == "counter":
                continue
            v = deterministic_value(key, kind, tuple(t.shape)).astype(np.float32)
            t.copy_(torch.from_numpy(v))
    return listing


# ------------------------------------------------------------------ safetensors (no package)
DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64}


def save_safetensors(path, tensors, metadata=None):
    header, offset, blobs = {}, 0, []
    if metadata:
        header["__metadata__"] = metadata
    for key in sorted(tensors):
        a = np.ascontiguousarray(tensors[key].detach().cpu().numpy())
        dtype = {np.dtype(v): k for k, v in DTYPES.items()}[a.dtype]
        b = a.tobytes()
        header[key] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def load_safetensors(path):
    """(OrderedDict of torch tensors, metadata dict)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for key, h in header.items():
        start, end = h["data_offsets"]
        a = np.frombuffer(data[base + start:base + end], dtype=DTYPES[h["dtype"]]).reshape(h["shape"])
        out[key] = torch.from_numpy(a.copy())
    return out, meta
