#!/usr/bin/env python3
"""Builds data/cifar10-mini from the official CIFAR-10 binary release (stdlib only).

Selection rule: the first 500 images of each class from the training batches, read in file
order (data_batch_1.bin, then 2, ... 5), written as data_batch_1.bin (5,000 records); and the
first 100 images of each class from test_batch.bin, written as test_batch.bin (1,000 records).
Selected records keep their file order. batches.meta.txt is copied unchanged.

Usage: python3 scripts/data/make_cifar10_mini.py SOURCE_DIR OUT_DIR
  e.g. python3 scripts/data/make_cifar10_mini.py ../shared/data/cifar-10-batches-bin data/cifar10-mini
"""

import hashlib
import os
import shutil
import sys

RECORD = 1 + 3072
CLASSES = 10


def select(paths, per_class):
    counts = [0] * CLASSES
    out = bytearray()
    for path in paths:
        with open(path, "rb") as f:
            data = f.read()
        if len(data) % RECORD:
            sys.exit(f"{path}: size {len(data)} is not a multiple of {RECORD}")
        for off in range(0, len(data), RECORD):
            label = data[off]
            if label >= CLASSES:
                sys.exit(f"{path}: record {off // RECORD}: label {label} out of range")
            if counts[label] < per_class:
                counts[label] += 1
                out += data[off:off + RECORD]
    if counts != [per_class] * CLASSES:
        sys.exit(f"not enough images per class: {counts}")
    return bytes(out)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    train = select([os.path.join(src, f"data_batch_{i}.bin") for i in range(1, 6)], 500)
    test = select([os.path.join(src, "test_batch.bin")], 100)
    with open(os.path.join(out, "data_batch_1.bin"), "wb") as f:
        f.write(train)
    with open(os.path.join(out, "test_batch.bin"), "wb") as f:
        f.write(test)
    shutil.copyfile(os.path.join(src, "batches.meta.txt"), os.path.join(out, "batches.meta.txt"))
    for name in ("data_batch_1.bin", "test_batch.bin", "batches.meta.txt"):
        with open(os.path.join(out, name), "rb") as f:
            print(hashlib.sha256(f.read()).hexdigest(), name)


if __name__ == "__main__":
    main()
