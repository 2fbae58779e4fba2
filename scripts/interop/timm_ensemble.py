# Used by tests/imagenet_distill.rs: PYTHON scripts/interop/timm_ensemble.py OUT_DIR CLASSES
"""Writes a small MEAL V2 ensemble as timm files with seeded random weights: the student
tf_mobilenetv3_small_075 as a hub `model.safetensors`, the teachers resnet18 as a
`pytorch_model.bin` and tf_mobilenetv3_small_100 as a MEAL V2 (`module.`-prefixed) file, each
with CLASSES classes, BatchNorm statistics randomised so eval mode differs from identity.
"""

import os
import sys

import timm
import torch
from safetensors.torch import save_file

FILES = [
    ("tf_mobilenetv3_small_075", "student.safetensors", "safetensors"),
    ("resnet18", "teacher_resnet18.bin", "bin"),
    ("tf_mobilenetv3_small_100", "teacher_mnv3.pth", "module"),
]


def main():
    out, classes = sys.argv[1], int(sys.argv[2])
    for seed, (arch, name, kind) in enumerate(FILES):
        torch.manual_seed(seed)
        model = timm.create_model(arch, pretrained=False, num_classes=classes)
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.1, 0.1)
                    m.running_var.uniform_(0.8, 1.5)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        path = os.path.join(out, name)
        if kind == "safetensors":
            save_file(state, path)
        elif kind == "bin":
            torch.save(state, path)
        else:
            torch.save({f"module.{k}": v for k, v in state.items()}, path)


if __name__ == "__main__":
    main()
