# Regenerate with: PYTHON scripts/models/make_golden_timm.py [NAME ...]  (from the repo root)
"""Golden outputs of meal's ImageNet-form models for `tests/models_timm.rs`, from timm itself.

Each model is `timm.create_model(name, pretrained=False, num_classes=10, drop_rate=0,
drop_path_rate=0)` in float64, filled with param_counts.py's deterministic stream keyed by timm's
state-dict keys (meal's tensor names are the same keys, so `meal::selftest::fill` gives the
same weights), run on the batch of 2 images `uniform("input", 2*3*97*97)`: 97 is not a multiple
of 32, so every strided layer sees an odd side (and TensorFlow "same" padding its asymmetric
case). The stages are timm's `feature_info` entries of reduction >= 4, captured with forward
hooks.

Passes as make_golden_models.py (whose Blob, loss and fixture layout this shares): eval for every
model, train (forward + backward) for those in TRAIN, each quantity with its float32 "spread"
(how far PyTorch's own float32 result is from its float64 one), which widens the test's
tolerance. The spread is below 1e-4 everywhere except senet154's eval from layer3 on: with these
weights its 36 SE-ResNeXt blocks of layer3 amplify rounding chaotically (PyTorch float32 lands
15-40% off float64), so its layer3, layer4 and logits are held to that, and its stem, layer1 and
layer2 (deep stem, grouped convs, SE, 3x3 shortcuts) to 1e-4. One
fixture per model, tests/fixtures/models/timm/<name>.{json,bin}, each in the layout of
tests/fixtures/models/golden.{json,bin} with a single model, plus "input_size" and "classes".
"""

import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import timm  # noqa: E402

from make_golden_models import BATCH, FULL, SAMPLES, Blob, train_entry, with_spread  # noqa: E402
from param_counts import fill, keys_digest, uniform  # noqa: E402

OUT = os.path.join(HERE, "..", "..", "tests", "fixtures", "models", "timm")
SIZE = 97
CLASSES = 10
MODELS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnet152s", "senet154",
          "tf_mobilenetv3_small_075", "tf_mobilenetv3_small_100", "tf_mobilenetv3_large_100",
          "tf_efficientnet_b0", "tf_efficientnet_b4"]
TRAIN = {"resnet50", "tf_mobilenetv3_large_100", "tf_efficientnet_b0"}


class Staged(torch.nn.Module):
    """A timm model returning (stages, logits) like the twins of param_counts.py."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        wanted = [f["module"] for f in model.feature_info if f["reduction"] >= 4]
        self.outputs = []
        modules = dict(model.named_modules())
        for name in wanted:
            modules[name].register_forward_hook(lambda m, i, o: self.outputs.append(o))

    def forward(self, x):
        self.outputs = []
        logits = self.model(x)
        return list(self.outputs), logits


def make(name):
    model = timm.create_model(name, pretrained=False, num_classes=CLASSES, drop_rate=0.0,
                              drop_path_rate=0.0)
    return model.double()


def golden(name, blob):
    x = torch.from_numpy(uniform("input", BATCH * 3 * SIZE * SIZE).reshape(BATCH, 3, SIZE, SIZE))
    model = make(name).eval()
    fill(model)
    digest, count = keys_digest(model)
    with torch.no_grad():
        stages, logits = Staged(model)(x)
        m32 = make(name).eval()
        fill(m32)
        stages32, logits32 = Staged(m32.float())(x.float())
    entry = {
        "keys_digest": digest,
        "tensors": count,
        "eval": {
            "stages": [with_spread(blob.stage(s, FULL), s, s32) for s, s32 in zip(stages, stages32)],
            "logits": with_spread(blob.full(logits), logits, logits32),
        },
    }
    if name not in TRAIN:
        return entry
    entry["train"] = train_entry(name, blob, lambda: make(name), lambda m, x: Staged(m)(x), x, FULL)
    return entry


def main():
    torch.set_num_threads(2)
    os.makedirs(OUT, exist_ok=True)
    for name in sys.argv[1:] or MODELS:
        blob = Blob()
        gold = {"batch": BATCH, "samples": SAMPLES, "input_size": SIZE, "classes": CLASSES,
                "timm": timm.__version__, "models": {name: golden(name, blob)}}
        with open(os.path.join(OUT, f"{name}.bin"), "wb") as f:
            for a in blob.parts:
                f.write(a.tobytes())
        with open(os.path.join(OUT, f"{name}.json"), "w") as f:
            json.dump(gold, f, indent=1)
            f.write("\n")
        print(f"{name}: {blob.size * 4 / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
