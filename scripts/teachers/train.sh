#!/usr/bin/env bash
# Trains (or resumes) the shipped teachers of data/teachers/, one after another, from
# the recipes/teacher-*.toml recipes, on the full CIFAR-10. Runs are long on 2 cores (hours each),
# so every run folder is resumable: rerun this script after an interruption and each teacher
# continues from its last finished epoch.
#
# Usage: scripts/teachers/train.sh DATA_DIR RUNS_DIR [ARCH...]
#   DATA_DIR  cifar-10-batches-bin (e.g. ../shared/data/cifar-10-batches-bin)
#   RUNS_DIR  where the run folders go (RUNS_DIR/<arch>), outside the repository
#   ARCH      which teachers, in order (default: vgg8 resnet20)
# MEAL_BIN overrides the binary (default: a release build of this checkout).
set -euo pipefail
DATA=${1:?usage: scripts/teachers/train.sh DATA_DIR RUNS_DIR [ARCH...]}
RUNS=${2:?usage: scripts/teachers/train.sh DATA_DIR RUNS_DIR [ARCH...]}
shift 2
ARCHS=("$@")
[ ${#ARCHS[@]} -gt 0 ] || ARCHS=(vgg8 resnet20)
cd "$(dirname "$0")/../.."
if [ -z "${MEAL_BIN:-}" ]; then
  cargo build --release -q
  MEAL_BIN=target/release/meal
fi
mkdir -p "$RUNS"
for arch in "${ARCHS[@]}"; do
  recipe="recipes/teacher-$arch.toml"
  [ -f "$recipe" ] || { echo "train.sh: no recipe $recipe" >&2; exit 2; }
  run="$RUNS/$arch"
  if [ -f "$run/last.ckpt" ]; then
    echo "train.sh: resuming $run"
    "$MEAL_BIN" train --resume "$run" -q
  else
    echo "train.sh: starting $run ($recipe, commit $(git rev-parse --short HEAD))"
    "$MEAL_BIN" train --config "$recipe" --data "$DATA" --run-dir "$run" -q
  fi
done
