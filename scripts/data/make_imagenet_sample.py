#!/usr/bin/env python3
"""Writes a small ImageNet-layout sample for the tests and the input-pipeline bench.

    OUT/train/<wnid>/*.JPEG      3 classes x 6 images: CIFAR-10 training images scaled up to
                                 several sizes, saved as RGB, greyscale and CMYK JPEGs, and one
                                 PNG named .JPEG (decoders must sniff the content)
    OUT/val/*.JPEG               flat, 2 CIFAR-10 test images per class ...
    OUT/LOC_val_solution.csv     ... labelled in Kaggle's form (ImageId,PredictionString)
    OUT/webdataset/*.tar         the same train and val images as WebDataset shards
                                 (train-00000{0,1}.tar, val-000000.tar; <key>.jpg + <key>.cls)
    OUT/pil_rgb.json             Pillow's RGB decoding of the greyscale, CMYK and PNG images of
                                 the first class (the decoder test's reference; the `turbojpeg`
                                 build's, OUT/pil_jpeg.json, is scripts/data/make_jpeg_goldens.py's)
    OUT/photos/*.JPEG            real ImageNet validation photos shipped in PyPI's foolbox 3.3.4
                                 wheel (`pip download`ed by this script), with photos/labels.txt
                                 ("<file> <imagenet index>")

Usage: python scripts/data/make_imagenet_sample.py CIFAR10_BIN_DIR OUT [--photos N]
  e.g. python scripts/data/make_imagenet_sample.py ../shared/data/cifar-10-batches-bin \\
           tests/fixtures/imagenet-sample --photos 6
N (default 20) photos are kept, smallest files first. --bench-copies K also writes OUT/bench, the
photos copied K times each into train/<label>/ (for scripts/bench/data_pipeline.sh), and
OUT/bench-baseline, the same with every photo re-encoded as a baseline JPEG (Pillow, quality 90,
4:2:0): foolbox ships its photos as progressive JPEGs, whose decoding costs about twice as much,
while camera and web photos are mostly baseline. Needs numpy and Pillow; pip for the wheel.
"""

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

import numpy as np
from PIL import Image

RECORD = 1 + 3072
# CIFAR-10 class -> the wnid it stands in for.
CLASSES = {0: "n02690373", 1: "n02814533", 2: "n01530575"}
# (width, height, mode, format) of the training images of each class, in file order.
TRAIN_FORMS = [
    (64, 48, "RGB", "JPEG"),
    (40, 72, "RGB", "JPEG"),
    (56, 56, "L", "JPEG"),
    (80, 50, "CMYK", "JPEG"),
    (36, 36, "RGB", "PNG"),
    (100, 75, "RGB", "JPEG"),
]
VAL_FORMS = [(60, 45, "RGB", "JPEG"), (45, 60, "L", "JPEG")]


def cifar_images(path, wanted, per_class):
    with open(path, "rb") as f:
        data = f.read()
    got = {c: [] for c in wanted}
    for off in range(0, len(data), RECORD):
        label = data[off]
        if label in got and len(got[label]) < per_class:
            chw = np.frombuffer(data[off + 1 : off + RECORD], dtype=np.uint8).reshape(3, 32, 32)
            got[label].append(chw.transpose(1, 2, 0).copy())
    return got


def save(pixels, path, form):
    w, h, mode, fmt = form
    img = Image.fromarray(pixels, "RGB").resize((w, h), Image.BICUBIC).convert(mode)
    if fmt == "JPEG":
        img.save(path, "JPEG", quality=90)
    else:
        img.save(path, "PNG")


def photos(out, n):
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "foolbox==3.3.4", "--no-deps", "-d", tmp],
            check=True,
        )
        wheel = next(os.path.join(tmp, f) for f in os.listdir(tmp) if f.endswith(".whl"))
        with zipfile.ZipFile(wheel) as z:
            names = [i for i in z.infolist() if i.filename.startswith("foolbox/data/imagenet_")]
            names.sort(key=lambda i: (i.file_size, i.filename))
            os.makedirs(out, exist_ok=True)
            lines = []
            for info in sorted(names[:n], key=lambda i: i.filename):
                stem = os.path.basename(info.filename)[: -len(".jpg")]
                label = int(stem.split("_")[2])
                name = f"{stem}.JPEG"
                with open(os.path.join(out, name), "wb") as f:
                    f.write(z.read(info))
                lines.append(f"{name} {label}\n")
    with open(os.path.join(out, "labels.txt"), "w") as f:
        f.writelines(lines)


def shards(out):
    """OUT/webdataset: train-00000{0,1}.tar (the training images, 9 a shard) and val-000000.tar,
    members <key>.jpg (or .png for the PNG) and <key>.cls (the class index)."""
    d = os.path.join(out, "webdataset")
    os.makedirs(d)
    wnids = sorted(CLASSES.values())
    train = sorted(
        (os.path.join(out, "train", w, f), wnids.index(w))
        for w in wnids
        for f in os.listdir(os.path.join(out, "train", w))
    )
    with open(os.path.join(out, "LOC_val_solution.csv")) as f:
        rows = [line.strip().split(",") for line in f][1:]
    val = [(os.path.join(out, "val", i + ".JPEG"), wnids.index(p.split()[0])) for i, p in rows]
    for name, items in (("train-000000.tar", train[:9]), ("train-000001.tar", train[9:]), ("val-000000.tar", val)):
        with tarfile.open(os.path.join(d, name), "w", format=tarfile.USTAR_FORMAT) as t:
            for path, label in items:
                key = os.path.basename(path)[: -len(".JPEG")]
                with open(path, "rb") as f:
                    data = f.read()
                ext = "png" if data[:4] == b"\x89PNG" else "jpg"
                for member, payload in ((f"{key}.{ext}", data), (f"{key}.cls", str(label).encode())):
                    info = tarfile.TarInfo(member)
                    info.size = len(payload)
                    info.mtime = 0
                    t.addfile(info, io.BytesIO(payload))


def bench(photo_dir, out, copies, baseline=False):
    with open(os.path.join(photo_dir, "labels.txt")) as f:
        entries = [line.split() for line in f if line.strip()]
    for name, label in entries:
        src = os.path.join(photo_dir, name)
        if baseline:
            buf = io.BytesIO()
            Image.open(src).convert("RGB").save(buf, "JPEG", quality=90, progressive=False)
        for split, k_max in (("train", copies), ("val", 1)):
            d = os.path.join(out, split, f"{int(label):04d}")
            os.makedirs(d, exist_ok=True)
            for k in range(k_max):
                dst = os.path.join(d, f"{k}_{name}")
                if baseline:
                    with open(dst, "wb") as f:
                        f.write(buf.getvalue())
                else:
                    shutil.copy(src, dst)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cifar")
    ap.add_argument("out")
    ap.add_argument("--photos", type=int, default=20)
    ap.add_argument(
        "--bench-copies",
        type=int,
        default=0,
        help="also write OUT/bench and OUT/bench-baseline: train/<label>/ (and val/) with K "
        "copies of every photo, as shipped and re-encoded as baseline JPEG, the folders of "
        "scripts/bench/data_pipeline.sh",
    )
    a = ap.parse_args()
    if os.path.exists(a.out):
        shutil.rmtree(a.out)
    train = cifar_images(os.path.join(a.cifar, "data_batch_1.bin"), CLASSES, len(TRAIN_FORMS))
    test = cifar_images(os.path.join(a.cifar, "test_batch.bin"), CLASSES, len(VAL_FORMS))
    for c, wnid in CLASSES.items():
        d = os.path.join(a.out, "train", wnid)
        os.makedirs(d)
        for k, (pixels, form) in enumerate(zip(train[c], TRAIN_FORMS)):
            save(pixels, os.path.join(d, f"{wnid}_{k}.JPEG"), form)
    os.makedirs(os.path.join(a.out, "val"))
    rows = ["ImageId,PredictionString\n"]
    k = 0
    for c, wnid in CLASSES.items():
        for pixels, form in zip(test[c], VAL_FORMS):
            k += 1
            image_id = f"ILSVRC2012_val_{k:08d}"
            save(pixels, os.path.join(a.out, "val", f"{image_id}.JPEG"), form)
            rows.append(f"{image_id},{wnid} 1 2 30 40 {wnid} 3 4 20 25\n")
    with open(os.path.join(a.out, "LOC_val_solution.csv"), "w") as f:
        f.writelines(rows)
    if a.photos:
        photos(os.path.join(a.out, "photos"), a.photos)
    shards(a.out)
    if a.bench_copies:
        photo_dir = os.path.join(a.out, "photos")
        bench(photo_dir, os.path.join(a.out, "bench"), a.bench_copies)
        bench(photo_dir, os.path.join(a.out, "bench-baseline"), a.bench_copies, baseline=True)
    # Pillow's RGB of the greyscale, CMYK and PNG-named-.JPEG images of the first class, for the
    # decoder test (tests/data_imagenet.rs).
    wnid = CLASSES[0]
    ref = {}
    for k in (2, 3, 4):
        name = f"train/{wnid}/{wnid}_{k}.JPEG"
        img = Image.open(os.path.join(a.out, name))
        ref[name] = {"mode": img.mode, "rgb": np.asarray(img.convert("RGB")).reshape(-1).tolist()}
    with open(os.path.join(a.out, "pil_rgb.json"), "w") as f:
        json.dump(ref, f, separators=(",", ":"))


if __name__ == "__main__":
    main()
