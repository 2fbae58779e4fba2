#!/usr/bin/env bash
# "More labelled images at the same number of steps" (RESULTS.md): how much could any
# extra information about the task add to the quickstart's resnet8 at its old 20-epoch budget?
# The labels student is retrained on 5 and 20 times more labelled images (class-balanced
# subsets of the full CIFAR-10) for proportionally fewer epochs, so every run takes the same
# SGD steps (batch 64, lr 0.05, cosine, as the quickstart), beside the quickstart's own MEAL V1
# student. Both budgets: 20 epochs on 1,000 images (20,000 images seen) and on 5,000 (100,000).
#
# Usage: scripts/experiments/more_labels.sh [CIFAR10_DIR] [OUT]
#   SEEDS ("0 1 2") and MEAL (the binary) override the defaults. Finished runs are skipped, so
#   rerun the script after an interruption. Each run's test top-1 (10,000 images) is the last
#   line of OUT/<run>.log and the last row of OUT/<run>/metrics.jsonl.
set -euo pipefail
DATA=${1:-../shared/data/cifar-10-batches-bin}
OUT=${2:-runs/more-labels}
MEAL=${MEAL:-target/release/meal}
SEEDS=${SEEDS:-0 1 2}
cd "$(dirname "$0")/../.."
mkdir -p "$OUT"
common=(--data "$DATA" --batch-size 64 --lr 0.05 --set schedule.kind=cosine -q)
labels() { # name images epochs seed
  local run="$OUT/$1-seed$4"
  [ -f "$run/done" ] && return 0
  rm -rf "$run"
  "$MEAL" train --arch resnet8 "${common[@]}" --set data.train_subset="$2" --epochs "$3" \
    --seed "$4" --run-dir "$run" > "$run.log" 2>&1
  touch "$run/done"
  tail -n 1 "$run.log"
}
meal() { # name images epochs seed
  local run="$OUT/$1-seed$4"
  [ -f "$run/done" ] && return 0
  rm -rf "$run"
  "$MEAL" distill --recipe quickstart --teacher data/teachers/resnet20.ckpt \
    data/teachers/resnet9_w24.ckpt --data "$DATA" --set data.train_subset="$2" --epochs "$3" \
    --seed "$4" --run-dir "$run" -q > "$run.log" 2>&1
  touch "$run/done"
  tail -n 1 "$run.log"
}
for seed in $SEEDS; do
  labels labels-1000x20 1000 20 "$seed"
  labels labels-5000x4 5000 4 "$seed"
  labels labels-20000x1 20000 1 "$seed"
  meal meal-1000x20 1000 20 "$seed"
done
for seed in $SEEDS; do
  labels labels-5000x20 5000 20 "$seed"
  labels labels-25000x4 25000 4 "$seed"
  labels labels-50000x2 50000 2 "$seed"
  meal meal-5000x20 5000 20 "$seed"
done
