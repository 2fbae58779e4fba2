#!/usr/bin/env python3
"""Hostile PyTorch files of meal's reader fuzzing tests (tests/fuzz_readers.rs).

    PYTHON scripts/interop/make_hostile_fixtures.py --out tests/fixtures/interop/hostile

Writes ``expanded.pth`` (``torch.save`` zip) and ``expanded_legacy.pth`` (pre-1.6 format): a
state dict whose one tensor is a zero-stride view (``expand``) of a single float, 50000 x 50000
elements. PyTorch stores the one-element storage and the view's shape and strides, so a file of
a few hundred bytes describes a 10 GB tensor: a reader that materialises it allocates 10 GB.
"""

import argparse
import os

import torch


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    out = parser.parse_args().out
    os.makedirs(out, exist_ok=True)
    state = {"conv1.weight": torch.zeros(1).expand(50000, 50000)}
    torch.save(state, os.path.join(out, "expanded.pth"))
    torch.save(
        state,
        os.path.join(out, "expanded_legacy.pth"),
        _use_new_zipfile_serialization=False,
    )


if __name__ == "__main__":
    main()
