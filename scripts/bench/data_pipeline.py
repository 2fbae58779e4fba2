#!/usr/bin/env python3
"""torchvision's twin of `meal bench --data-pipeline`: ImageFolder + DataLoader over DIR/train
with RandomResizedCrop(size, interpolation), RandomHorizontalFlip, ToTensor, Normalize(ImageNet),
the same batch size and workers, timed over whole passes. Prints one JSON line.

Usage: python scripts/bench/data_pipeline.py DIR --workers N --batch B --image-size S
           [--interpolation bilinear|bicubic] [--warmup W] [--steps P]
"""

import argparse
import json
import statistics
import time

import torch
from torchvision import datasets, transforms as T
from torchvision.transforms import InterpolationMode


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--interpolation", default="bilinear", choices=["bilinear", "bicubic"])
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(1)
    mode = InterpolationMode.BICUBIC if a.interpolation == "bicubic" else InterpolationMode.BILINEAR
    tf = T.Compose(
        [
            T.RandomResizedCrop(a.image_size, interpolation=mode),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )
    ds = datasets.ImageFolder(f"{a.data}/train", transform=tf)
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=a.batch,
        shuffle=True,
        num_workers=a.workers,
        persistent_workers=a.workers > 0,
        prefetch_factor=2 if a.workers > 0 else None,
    )
    times = []
    for i in range(a.warmup + a.steps):
        t = time.perf_counter()
        n = sum(x.shape[0] for x, _ in loader)
        assert n == len(ds)
        if i >= a.warmup:
            times.append(time.perf_counter() - t)
    med = statistics.median(times)
    # Decoding alone with Pillow (libjpeg-turbo), one thread: the decoder's share.
    from PIL import Image

    t = time.perf_counter()
    for path, _ in ds.samples:
        with Image.open(path) as im:
            im.convert("RGB")
    decode_per_s = len(ds.samples) / (time.perf_counter() - t)
    print(
        json.dumps(
            {
                "bench": "torchvision-input-pipeline",
                "images": len(ds),
                "workers": a.workers,
                "images_per_s": {"median": len(ds) / med, "median_ms": med * 1e3},
                "decode_per_s": decode_per_s,
            }
        )
    )


if __name__ == "__main__":
    main()
