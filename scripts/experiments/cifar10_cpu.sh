#!/usr/bin/env bash
# The CPU experiment of RESULTS.md: three teachers of different architectures, their ensemble,
# a resnet8 trained on labels alone, and resnet8 distilled with MEAL V1 in joint and grl modes.
# Real CIFAR-10, 10,000 training images (1,000 per class), the full 10,000-image test set,
# 12 epochs each with cosine lr. Usage: scripts/experiments/cifar10_cpu.sh [CIFAR10_DIR] [OUT]
set -euo pipefail
DATA=${1:-../shared/data/cifar-10-batches-bin}
OUT=${2:-runs/cpu-cifar10}
MEAL=${MEAL:-target/release/meal}
EPOCHS=${EPOCHS:-12}
common=(--data "$DATA" --epochs "$EPOCHS" --set data.train_subset=10000 --set schedule.kind=cosine --seed 1 -q)
mkdir -p "$OUT"
for arch in resnet20 vgg8 resnet14; do
  [ -f "$OUT/teacher-$arch/best.ckpt" ] && [ "$(wc -l < "$OUT/teacher-$arch/metrics.jsonl")" -ge "$EPOCHS" ] && continue
  /usr/bin/time -f "teacher-$arch %e s" "$MEAL" train --arch "$arch" "${common[@]}" --run-dir "$OUT/teacher-$arch"
done
/usr/bin/time -f "baseline-resnet8 %e s" "$MEAL" train --arch resnet8 "${common[@]}" --run-dir "$OUT/baseline-resnet8"
for mode in joint grl; do
  /usr/bin/time -f "meal-$mode %e s" "$MEAL" distill --recipe "cpu-cifar10-$mode" --data "$DATA" --epochs "$EPOCHS" \
    --teacher "$OUT/teacher-resnet20" "$OUT/teacher-vgg8" "$OUT/teacher-resnet14" -q --run-dir "$OUT/meal-$mode"
done
"$MEAL" eval --checkpoint "$OUT/teacher-resnet20" "$OUT/teacher-vgg8" "$OUT/teacher-resnet14" --data "$DATA"
"$MEAL" eval --checkpoint "$OUT/baseline-resnet8" "$OUT/meal-joint" "$OUT/meal-grl" --data "$DATA"
