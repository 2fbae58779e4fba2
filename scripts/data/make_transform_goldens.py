#!/usr/bin/env python3
"""Writes tests/fixtures/imagenet_transforms.json: reference values of torchvision's ImageNet
transforms (on PIL images), which tests/data_imagenet_transforms.rs compares meal against.

* RandomResizedCrop(scale=(0.08, 1), ratio=(3/4, 4/3)).get_params: for seeded torch draws, the
  (scale, aspect) pair of every try as torch drew them, and the (height, width) torchvision
  accepted, or its centre-crop fallback box when all 10 tries fail.
* Resize(floor(size / crop_pct)) + CenterCrop(size), bilinear and bicubic, on small random RGB
  images (stored in the file): the uint8 output (PIL's fixed-point resampling).
* resized_crop of a given box to size×size (the resize step of RandomResizedCrop).

Usage: python scripts/data/make_transform_goldens.py tests/fixtures/imagenet_transforms.json
Needs torch, torchvision, numpy and Pillow.
"""

import json
import math
import sys

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as F

SCALE = (0.08, 1.0)
RATIO = (3.0 / 4.0, 4.0 / 3.0)


def traced_params(height, width, seed):
    """torchvision's get_params, replayed draw by draw with the same generator state."""
    torch.manual_seed(seed)
    expected = T.RandomResizedCrop.get_params(torch.empty(3, height, width), SCALE, RATIO)
    torch.manual_seed(seed)
    area = height * width
    log_ratio = torch.log(torch.tensor(RATIO))
    tries = []
    for _ in range(10):
        scale = torch.empty(1).uniform_(SCALE[0], SCALE[1]).item()
        aspect = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1])).item()
        target_area = area * scale
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        tries.append([scale, aspect])
        if 0 < w <= width and 0 < h <= height:
            i = torch.randint(0, height - h + 1, size=(1,)).item()
            j = torch.randint(0, width - w + 1, size=(1,)).item()
            assert (i, j, h, w) == expected, (height, width, seed)
            return {"height": height, "width": width, "tries": tries, "accepted": [h, w]}
    assert expected[2:] != (None,)
    return {
        "height": height,
        "width": width,
        "tries": tries,
        "fallback": list(expected),
    }


def random_image(rng, h, w):
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def main():
    out_path = sys.argv[1]
    crops = []
    for height, width in [(224, 224), (375, 500), (500, 333), (32, 32), (7, 5)]:
        for seed in range(4):
            crops.append(traced_params(height, width, seed))
    # Extreme aspect ratios: every try fails and the centre-crop fallback clamps the ratio.
    for height, width in [(3, 400), (400, 3), (10, 1000), (1, 1)]:
        crops.append(traced_params(height, width, 0))
    assert any("fallback" in c for c in crops)

    rng = np.random.default_rng(23)
    evals = []
    for (h, w), size, crop_pct in [
        ((37, 53), 24, 0.875),
        ((61, 40), 32, 0.95),
        ((20, 30), 24, 0.875),  # upscaling
        ((48, 48), 16, 0.922),
    ]:
        pixels = random_image(rng, h, w)
        img = Image.fromarray(pixels, "RGB")
        for name, mode in [("bilinear", InterpolationMode.BILINEAR), ("bicubic", InterpolationMode.BICUBIC)]:
            scale_size = math.floor(size / crop_pct)
            t = T.Compose([T.Resize(scale_size, interpolation=mode), T.CenterCrop(size)])
            out = np.asarray(t(img))
            evals.append(
                {
                    "height": h,
                    "width": w,
                    "pixels": pixels.reshape(-1).tolist(),
                    "size": size,
                    "crop_pct": crop_pct,
                    "interpolation": name,
                    "resize_to": scale_size,
                    "output": out.reshape(-1).tolist(),
                }
            )

    resized = []
    for (h, w), box, size in [((50, 70), (5, 9, 30, 41), 24), ((40, 40), (0, 0, 12, 9), 32)]:
        pixels = random_image(rng, h, w)
        img = Image.fromarray(pixels, "RGB")
        for name, mode in [("bilinear", InterpolationMode.BILINEAR), ("bicubic", InterpolationMode.BICUBIC)]:
            out = np.asarray(F.resized_crop(img, *box, [size, size], interpolation=mode))
            resized.append(
                {
                    "height": h,
                    "width": w,
                    "pixels": pixels.reshape(-1).tolist(),
                    "box": list(box),
                    "size": size,
                    "interpolation": name,
                    "output": out.reshape(-1).tolist(),
                }
            )

    doc = {
        "generator": f"scripts/data/make_transform_goldens.py, torch {torch.__version__}, "
        f"torchvision {torchvision.__version__}, Pillow {Image.__version__}",
        "random_resized_crop": crops,
        "eval_resize_center_crop": evals,
        "resized_crop": resized,
    }
    with open(out_path, "w") as f:
        json.dump(doc, f, separators=(",", ":"))


if __name__ == "__main__":
    main()
