#!/usr/bin/env python3
"""Checks ONNX files written by `meal export --format onnx` with the `onnx` checker and runs
them in ONNX Runtime (CPU) on given inputs (used by tests/interop_onnx.rs; also a usage
example).

    python scripts/interop/check_onnx.py jobs.json

``jobs.json``: ``{"input": "x.f32", "shape": [n, c, h, w], "models": [{"path", "batches"}]}``:
``input`` holds ``n`` float32 images (little-endian, NCHW); each model runs on the first ``b``
of them for every ``b`` in ``batches``. Prints one JSON object:
``{"versions": {...}, "results": [{"opset", "ir_version", "input", "output", "metadata",
"logits": {"b": [[...]]}}, ...]}``. Needs ``onnx``, ``onnxruntime`` and ``numpy``, not torch.
"""

import json
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort


def dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def main():
    with open(sys.argv[1]) as f:
        jobs = json.load(f)
    x = np.fromfile(jobs["input"], dtype="<f4").reshape(jobs["shape"])
    results = []
    for job in jobs["models"]:
        start = time.time()
        model = onnx.load(job["path"])
        # full_check: also runs strict shape inference over the whole graph.
        onnx.checker.check_model(model, full_check=True)
        opset = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
        session = ort.InferenceSession(job["path"], providers=["CPUExecutionProvider"])
        (inp,) = session.get_inputs()
        logits = {}
        for b in job["batches"]:
            outputs = session.run(None, {inp.name: x[:b]})
            assert len(outputs) == 1, f"{job['path']}: {len(outputs)} outputs"
            if not np.all(np.isfinite(outputs[0])):
                sys.exit(f"{job['path']} at batch {b}: ONNX Runtime gave non-finite logits")
            logits[str(b)] = outputs[0].astype(np.float64).tolist()
        results.append(
            {
                "opset": opset,
                "ir_version": model.ir_version,
                "input": {"name": inp.name, "dims": dims(model.graph.input[0])},
                "output": {"name": session.get_outputs()[0].name,
                           "dims": dims(model.graph.output[0])},
                # What a deployer reads through ONNX Runtime's API.
                "metadata": session.get_modelmeta().custom_metadata_map,
                "logits": logits,
            }
        )
        print(f"{job['path']}: {time.time() - start:.2f}s", file=sys.stderr)
    versions = {"onnx": onnx.__version__, "onnxruntime": ort.__version__}
    print(json.dumps({"versions": versions, "results": results}))


if __name__ == "__main__":
    main()
