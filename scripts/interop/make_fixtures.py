#!/usr/bin/env python3
"""Fixtures of meal's PyTorch interop tests (tests/interop_*.rs).

    PYTHON scripts/interop/make_fixtures.py --out tests/fixtures/interop

Writes, from PyTorch itself:

- ``resnet8.pth``: the state dict of a randomly initialised resnet8 twin (meal names) whose
  BatchNorm affine parameters and running statistics are randomised too, ``torch.save`` zip;
- ``resnet8.t7``: the same weights as the MEAL reference saves a teacher:
  ``{'net': {'module.' + key: tensor}, 'acc': 91.25, 'epoch': 7}``, in the legacy (pre-1.6,
  non-zip) ``torch.save`` format that the reference's 2018 checkpoints use;
- ``resnet8.safetensors``: the same state dict as safetensors;
- ``expected.json``: the float64 logits of every model below on 4 fixed inputs, and for the
  models without a weight file, the state-dict listing (key, shape, kind) PyTorch produces.

Models too large for committed weight files (vgg8 with meal names; resnet18_cifar, preact_resnet18
and vgg19_bn with kuangliu names) get deterministic weights instead: every tensor is filled from
a splitmix64 stream keyed by its PyTorch key (``torch_models.deterministic_value``). The tests
rebuild the same tensors from the listing, write them as a PyTorch file and import it, so the
listing (= PyTorch's own key names and shapes) and the logits are all that needs committing.
"""

import argparse
import collections
import json
import os

import torch
import torch.nn as nn

import torch_models as tm


def randomise(model, seed):
    """PyTorch's default init plus random BN affine parameters and running statistics."""
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.reset_parameters()
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.uniform_(0.7, 1.3)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(123)
    return model


def reference_logits(model, x):
    model = model.double().eval()
    with torch.no_grad():
        return tm.logits(model, x.double()).tolist()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/interop")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    x = tm.fixed_inputs(4)
    expected = {"inputs": {"key": "input", "shape": list(x.shape)}, "models": {}}

    # resnet8 twin: real PyTorch files in three containers.
    net = randomise(tm.build("resnet8", "meal", 10), seed=0)
    sd = net.state_dict()
    torch.save(sd, os.path.join(args.out, "resnet8.pth"))
    ref = {"net": collections.OrderedDict(("module." + k, v) for k, v in sd.items()),
           "acc": 91.25, "epoch": 7}
    torch.save(ref, os.path.join(args.out, "resnet8.t7"), _use_new_zipfile_serialization=False)
    tm.save_safetensors(os.path.join(args.out, "resnet8.safetensors"), sd)
    expected["models"]["resnet8"] = {
        "arch": "resnet8", "names": "meal",
        "files": ["resnet8.pth", "resnet8.t7", "resnet8.safetensors"],
        "logits": reference_logits(net, x),
    }

    # Deterministic weights, no files.
    for name, arch, names, n in [
        ("vgg8", "vgg8", "meal", 4),
        ("kuangliu_resnet18", "resnet18_cifar", "kuangliu", 2),
        ("kuangliu_preact_resnet18", "preact_resnet18", "kuangliu", 2),
        ("kuangliu_vgg19_bn", "vgg19_bn", "kuangliu", 2),
    ]:
        net = tm.build(arch, names, 10)
        listing = tm.fill_deterministic(net)
        expected["models"][name] = {
            "arch": arch, "names": names, "listing": listing,
            "logits": reference_logits(net, x[:n]),
        }
        print(f"{name}: {len(listing)} keys, logits[0][:3] {expected['models'][name]['logits'][0][:3]}")

    with open(os.path.join(args.out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
    print(f"wrote {args.out} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
