#!/usr/bin/env bash
# Ships a finished teacher run into data/teachers/: copies its final model, measures it
# on the embedded data/cifar10-mini test images and on the full CIFAR-10 test set with `meal eval`,
# and prints the [[teacher]] entry for data/teachers/teachers.toml (tests/shipped_teachers.rs
# checks every number of it). The run must have finished all its epochs, and its best.ckpt must
# be the final epoch's model (with a cosine schedule it is; otherwise the script refuses, so
# that no teacher is picked by its test accuracy).
#
# Usage: scripts/teachers/ship.sh RUN_DIR CIFAR10_DIR MACHINE
#   RUN_DIR      a `meal train` run folder (e.g. runs/vgg8)
#   CIFAR10_DIR  cifar-10-batches-bin (e.g. ../shared/data/cifar-10-batches-bin)
#   MACHINE      a description of the machine it was trained on, for the record
# MEAL_BIN overrides the binary (default: a release build of this checkout).
set -euo pipefail
RUN=${1:?usage: scripts/teachers/ship.sh RUN_DIR CIFAR10_DIR MACHINE}
DATA=${2:?usage: scripts/teachers/ship.sh RUN_DIR CIFAR10_DIR MACHINE}
MACHINE=${3:?usage: scripts/teachers/ship.sh RUN_DIR CIFAR10_DIR MACHINE}
cd "$(dirname "$0")/../.."
if [ -z "${MEAL_BIN:-}" ]; then
  cargo build --release -q
  MEAL_BIN=target/release/meal
fi
python3 - "$RUN" "$DATA" "$MACHINE" "$MEAL_BIN" <<'PY'
import hashlib, json, re, shutil, subprocess, sys, tomllib
from pathlib import Path

run, data, machine, meal = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
config = tomllib.loads((run / "config.toml").read_text())
metrics = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if l.strip()]
epochs = config["epochs"]
if len(metrics) != epochs:
    sys.exit(f"ship.sh: {run} has {len(metrics)} of {epochs} epochs; finish it first")
best = max(range(len(metrics)), key=lambda i: metrics[i]["test_top1"])
if best != len(metrics) - 1:
    sys.exit(f"ship.sh: {run}'s best.ckpt is epoch {best + 1}, not the final epoch {epochs}; "
             "ship the final model instead of one picked by test accuracy")
arch = config["arch"]
dest = Path("data/teachers") / f"{arch}.ckpt"
dest.parent.mkdir(parents=True, exist_ok=True)
shutil.copyfile(run / "best.ckpt", dest)

def evaluate(data_dir):
    out = subprocess.run([meal, "eval", "-q", "--checkpoint", str(dest), "--data", data_dir],
                         check=True, capture_output=True, text=True).stdout
    m = re.search(r"\((\w+)\)\s+([\d.]+)%\s+([\d.]+)%", out)
    return float(m.group(2)), float(m.group(3))

mini = evaluate("data/cifar10-mini")
full = evaluate(data)
if abs(full[0] - metrics[-1]["test_top1"]) > 0.05:
    sys.exit(f"ship.sh: meal eval gives {full[0]}% but the run logged {metrics[-1]['test_top1']}%")
log = (run / "run.txt").read_text()
commits = re.findall(r"meal-bin-([0-9a-f]+)", log)
command = re.search(r"^command: (.*)$", log, re.M).group(1)
command = re.sub(r"\S*meal-bin-[0-9a-f]+", "meal", command)
wall = sum(m["epoch_seconds"] for m in metrics)
print(f"""
[[teacher]]
file = "{dest.name}"
arch = "{arch}"
sha256 = "{hashlib.sha256(dest.read_bytes()).hexdigest()}"
mini_top1 = {mini[0]:.2f}
mini_top5 = {mini[1]:.2f}
cifar10_top1 = {full[0]:.2f}
cifar10_top5 = {full[1]:.2f}
command = "{command}"
seed = {config.get("seed", 0)}
commit = "{' then '.join(dict.fromkeys(commits)) or 'unknown'}"
epochs = {epochs}
wall_seconds = {wall:.0f}
machine = "{machine}"
train_holdout = {config.get("data", {}).get("train_holdout", 0)}
""")
PY
