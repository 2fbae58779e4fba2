#!/usr/bin/env python3
"""Writes SAMPLE/pil_jpeg.json: Pillow's RGB decoding of every JPEG of the ImageNet sample
(train/, val/, photos/; scripts/data/make_imagenet_sample.py), as the SHA-256 of the
height x width x 3 bytes beside their sum, for tests/data_jpeg.rs: the `turbojpeg` build decodes
with libjpeg-turbo, as Pillow does, and must give the same bytes. CMYK files are listed with
their mode only (libjpeg-turbo does not convert them to RGB; the image crate does).

Usage: python scripts/data/make_jpeg_goldens.py tests/fixtures/imagenet-sample
Needs Pillow built with libjpeg-turbo (PyPI's wheels are).
"""

import hashlib
import json
import os
import sys

import numpy as np
from PIL import Image, features


def main():
    root = sys.argv[1]
    files = {}
    for sub in ("train", "val", "photos"):
        for dirpath, _, names in os.walk(os.path.join(root, sub)):
            for n in sorted(names):
                path = os.path.join(dirpath, n)
                with open(path, "rb") as f:
                    if f.read(3) != b"\xff\xd8\xff":
                        continue
                with Image.open(path) as img:
                    rel = os.path.relpath(path, root).replace(os.sep, "/")
                    entry = {"mode": img.mode, "progressive": bool(img.info.get("progressive"))}
                    if img.mode != "CMYK":
                        rgb = np.asarray(img.convert("RGB"))
                        entry.update(
                            width=rgb.shape[1],
                            height=rgb.shape[0],
                            sum=int(rgb.sum(dtype=np.uint64)),
                            sha256=hashlib.sha256(rgb.tobytes()).hexdigest(),
                        )
                    files[rel] = entry
    out = {
        "libjpeg_turbo": features.version("libjpeg_turbo"),
        "files": dict(sorted(files.items())),
    }
    with open(os.path.join(root, "pil_jpeg.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
