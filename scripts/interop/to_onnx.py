#!/usr/bin/env python3
"""ONNX from a `meal export --format safetensors` file, through PyTorch (burn 0.22 has no ONNX
exporter, so meal cannot write ONNX itself).

    python scripts/interop/to_onnx.py --weights student.safetensors --out student.onnx

The safetensors metadata written by meal names the architecture, class count, key names and
input size; the weights are loaded strictly into the matching model of torch_models.py and
exported with the logits as the only output (`input`: N×3×H×W, normalised with the mean/std in
the metadata; `logits`: N×classes; N dynamic). Needs torch (and whatever its ONNX exporter needs:
recent versions want the `onnx` package, the dynamo exporter also `onnxscript`).
"""

import argparse

import torch
import torch.nn as nn

import torch_models as tm


class Logits(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return tm.logits(self.net, x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True, help="a .safetensors file written by meal export")
    ap.add_argument("--out", required=True)
    ap.add_argument("--opset", type=int, default=17)
    args = ap.parse_args()
    sd, meta = tm.load_safetensors(args.weights)
    if "arch" not in meta:
        raise SystemExit(f"{args.weights}: no meal metadata (arch); was it written by meal export?")
    net = tm.build(meta["arch"], meta.get("names", "meal"), int(meta["num_classes"]))
    net.load_state_dict(sd, strict=True)
    model = Logits(net).eval()
    c, h, w = (int(v) for v in meta.get("input_shape", "3,32,32").split(","))
    x = torch.zeros(1, c, h, w)
    torch.onnx.export(model, (x,), args.out, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=args.opset, dynamo=False)
    print(f"wrote {args.out} ({meta['arch']}, {meta['num_classes']} classes, input {c}x{h}x{w}, "
          f"normalise with mean {meta.get('mean')} std {meta.get('std')})")


if __name__ == "__main__":
    main()
