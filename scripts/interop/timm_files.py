# Used by tests/interop_timm.rs: PYTHON scripts/interop/timm_files.py OUT_DIR
"""Writes one timm model with seeded random weights in each format users download, and its logits.

resnet18 with 7 classes (so the importer must read the class count from the head), every
BatchNorm given random statistics and affine parameters, saved as:
- model.safetensors (the Hugging Face hub's file),
- pytorch_model.bin (torch.save of the state dict, zip format),
- resnet18-torchvision.pth (the same weights loaded strictly into torchvision's resnet18 and
  saved from there: torchvision's keys are timm's),
- meal_v2.pth (MEAL V2's checkpoints: every key under DataParallel's `module.`).
Then input.f32 (a batch of 2 at 64x64, float32 little-endian) and logits.json (timm's eval
logits on it, float64).
"""

import json
import os
import sys

import numpy as np
import timm
import torch
import torchvision
from safetensors.torch import save_file

SIZE = 64
CLASSES = 7


def main():
    out = sys.argv[1]
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=CLASSES)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.8, 1.2)
                m.bias.uniform_(-0.1, 0.1)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.8, 1.5)
    model.eval()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(out, "model.safetensors"))
    torch.save(state, os.path.join(out, "pytorch_model.bin"))
    tv = torchvision.models.resnet18(num_classes=CLASSES)
    tv.load_state_dict(state, strict=True)
    torch.save(tv.state_dict(), os.path.join(out, "resnet18-torchvision.pth"))
    torch.save({f"module.{k}": v for k, v in state.items()}, os.path.join(out, "meal_v2.pth"))

    x = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1)) * 2 - 1
    x.numpy().astype("<f4").tofile(os.path.join(out, "input.f32"))
    with torch.no_grad():
        logits = model.double()(x.double())
    with open(os.path.join(out, "logits.json"), "w") as f:
        json.dump({"size": SIZE, "classes": CLASSES, "logits": logits.tolist(),
                   "versions": {"timm": timm.__version__, "torch": torch.__version__}}, f)


if __name__ == "__main__":
    main()
