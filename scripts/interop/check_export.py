#!/usr/bin/env python3
"""Loads weights written by `meal export` into the matching PyTorch model, strictly, and prints
its logits on the fixed inputs (used by tests/interop_roundtrip.rs; also a usage example).

    python scripts/interop/check_export.py jobs.json

``jobs.json``: a list of ``{"arch", "names", "weights", "classes", "n"}``; ``weights`` is a
``.safetensors`` file or a ``torch.save`` file (loaded with ``weights_only=True``). Prints one
JSON object: ``{"results": [{"logits": [[...]], "keys": count, "container": type}, ...]}``.
"""

import json
import sys
import time

import torch

import torch_models as tm


def load(path):
    if path.endswith(".safetensors"):
        sd, _ = tm.load_safetensors(path)
        return sd
    return torch.load(path, map_location="cpu", weights_only=True)


def main():
    with open(sys.argv[1]) as f:
        jobs = json.load(f)
    results = []
    x = tm.fixed_inputs(max(j["n"] for j in jobs))
    for job in jobs:
        start = time.time()
        sd = load(job["weights"])
        model = tm.build(job["arch"], job["names"], job["classes"])
        model.load_state_dict(sd, strict=True)  # raises on any missing/unexpected/misshaped key
        model = model.double().eval()
        with torch.no_grad():
            out = tm.logits(model, x[: job["n"]].double())
        results.append({"logits": out.tolist(), "keys": len(sd), "container": type(sd).__name__})
        print(f"{job['weights']}: {time.time() - start:.2f}s", file=sys.stderr)
    print(json.dumps({"results": results}))


if __name__ == "__main__":
    main()
