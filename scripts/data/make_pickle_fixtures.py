#!/usr/bin/env python3
"""Writes the tiny CIFAR "python version" fixtures under tests/fixtures/data/.

The files are pickled exactly as the official cifar-10-batches-py / cifar-100-python files:
a dict with byte-string keys, `pickle.dump(d, f, protocol=2)`, `b'data'` a C-ordered uint8
numpy array of shape (N, 3072) (1024 R, 1024 G, 1024 B per row). The official files were
written by Python 2, whose `str` pickles as SHORT_BINSTRING/BINSTRING; the `*-py2` fixtures
reproduce that with a pickler that writes bytes and ASCII str the Python 2 way. Python 3's
protocol 2 writes bytes as `_codecs.encode(str, 'latin1')`, which the `*-py3` fixtures cover.

Pixel values are known: image i of batch `seed` has pixel p = (seed*53 + i*31 + p*7) % 256.

Run from the repository root:  PYTHON scripts/data/make_pickle_fixtures.py
"""

import os
import pickle
import struct
import sys

import numpy as np

OUT = os.path.join("tests", "fixtures", "data")


def pixels(seed, n):
    i = np.arange(n, dtype=np.int64)[:, None]
    p = np.arange(3072, dtype=np.int64)[None, :]
    return ((seed * 53 + i * 31 + p * 7) % 256).astype(np.uint8)


class Py2Pickler(pickle._Pickler):
    """Protocol 2 as Python 2's cPickle wrote it: bytes and ASCII str as (SHORT_)BINSTRING,
    numpy's _reconstruct under its Python 2 era module name."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _binstring(self, data):
        n = len(data)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + data)

    def save_bytes(self, obj):
        self._binstring(obj)
        self.memoize(obj)

    def save_str(self, obj):
        if obj.isascii():
            self._binstring(obj.encode("ascii"))
            self.memoize(obj)
        else:
            pickle._Pickler.save_str(self, obj)

    def save_global(self, obj, name=None):
        if getattr(obj, "__name__", None) == "_reconstruct":
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
        else:
            pickle._Pickler.save_global(self, obj, name)

    dispatch[bytes] = save_bytes
    dispatch[str] = save_str


def dump(obj, path, style="py3", protocol=2):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        if style == "py2":
            Py2Pickler(f, protocol=2).dump(obj)
        else:
            pickle.dump(obj, f, protocol=protocol)


def cifar10_batch(name, seed, labels, data=None):
    n = len(labels)
    return {
        b"batch_label": name.encode(),
        b"labels": list(labels),
        b"data": pixels(seed, n) if data is None else data,
        b"filenames": [f"img_{seed}_{i}.png".encode() for i in range(n)],
    }


CIFAR10_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer",
                 b"dog", b"frog", b"horse", b"ship", b"truck"]
TRAIN1 = [3, 8, 8, 0, 6]
TRAIN2 = [1, 9, 2, 5]
TEST = [7, 4, 1]


def cifar10_dir(d, style, protocol=2, meta=True, fortran=False):
    b1 = cifar10_batch("training batch 1 of 5", 1, TRAIN1)
    if fortran:
        b1[b"data"] = np.asfortranarray(b1[b"data"])
    dump(b1, f"{d}/data_batch_1", style, protocol)
    dump(cifar10_batch("training batch 2 of 5", 2, TRAIN2), f"{d}/data_batch_2", style, protocol)
    dump(cifar10_batch("testing batch 1 of 1", 9, TEST), f"{d}/test_batch", style, protocol)
    if meta:
        dump({b"num_cases_per_batch": 10000, b"label_names": CIFAR10_NAMES, b"num_vis": 3072},
             f"{d}/batches.meta", style, protocol)


def cifar100_dir(d, style):
    fine_train, coarse_train = [19, 29, 0, 11, 1, 86], [11, 15, 4, 14, 1, 5]
    fine_test, coarse_test = [49, 33, 72], [10, 10, 0]
    for name, seed, fine, coarse in [("train", 3, fine_train, coarse_train),
                                     ("test", 4, fine_test, coarse_test)]:
        n = len(fine)
        dump({
            b"filenames": [f"f{seed}_{i}.png".encode() for i in range(n)],
            b"batch_label": f"{name}ing batch 1 of 1".encode(),
            b"fine_labels": fine,
            b"coarse_labels": coarse,
            b"data": pixels(seed, n),
        }, f"{d}/{name}", style)
    dump({
        b"fine_label_names": [f"fine{i:02d}".encode() for i in range(100)],
        b"coarse_label_names": [f"coarse{i:02d}".encode() for i in range(20)],
    }, f"{d}/meta", style)


class Evil:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def bad_dirs():
    good_test = cifar10_batch("testing batch 1 of 1", 9, TEST)
    cases = {
        "bad-shape": cifar10_batch("b", 1, [1, 2], data=np.zeros((2, 3000), np.uint8)),
        "bad-count": cifar10_batch("b", 1, [1, 2, 3], data=pixels(1, 2)),
        "bad-label": cifar10_batch("b", 1, [1, 10, 2]),
        "bad-dtype": cifar10_batch("b", 1, [1, 2], data=np.zeros((2, 3072), np.float32)),
        "bad-evil": {b"labels": [1], b"data": Evil()},
    }
    for name, batch in cases.items():
        d = f"{OUT}/{name}"
        dump(batch, f"{d}/data_batch_1")
        dump(good_test, f"{d}/test_batch")


def long_memo_dir(d):
    """More than 256 memoised objects (LONG_BINPUT) and a repeated one (LONG_BINGET), as in the
    official files whose 10,000 filenames overflow the one-byte memo."""
    names = [f"long_name_{i}.png".encode() for i in range(300)]
    names.append(names[299])
    batch = cifar10_batch("training batch 1 of 1", 5, [4, 2])
    batch[b"filenames"] = names
    dump(batch, f"{d}/data_batch_1", "py2")
    dump(cifar10_batch("testing batch 1 of 1", 6, [0]), f"{d}/test_batch", "py2")


def main():
    if len(sys.argv) > 1:
        global OUT
        OUT = sys.argv[1]
    cifar10_dir(f"{OUT}/cifar10-py3", "py3")
    cifar10_dir(f"{OUT}/cifar10-py2", "py2")
    # Protocol 4 (FRAME, SHORT_BINUNICODE, MEMOIZE, BINBYTES), a Fortran-ordered array, no meta.
    cifar10_dir(f"{OUT}/cifar10-p4", "py3", protocol=4, meta=False, fortran=True)
    cifar100_dir(f"{OUT}/cifar100-py3", "py3")
    cifar100_dir(f"{OUT}/cifar100-py2", "py2")
    long_memo_dir(f"{OUT}/cifar10-longmemo")
    bad_dirs()


if __name__ == "__main__":
    main()
