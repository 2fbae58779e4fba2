#!/usr/bin/env bash
# The multi-seed comparison of RESULTS.md: a resnet8 student trained five ways on the
# same budget from the teachers shipped in data/teachers/, with three seeds each:
#   labels      `meal train`, cross-entropy
#   joint       MEAL V1 as the reference runs it (recipe cpu-cifar10-joint)
#   grl         MEAL V1 with the min-max via gradient reversal (recipe cpu-cifar10-grl)
#   v2          MEAL V2-style: the teachers' mean softmax on running statistics, joint discriminator
#   kd          plain Hinton KD: 0.9·T²·KL at T = 4 + 0.1·CE, no discriminator
# Every run folder is resumable: rerun the script after an interruption and it continues where
# each run stopped, skipping finished ones. Summarise with
#   python3 scripts/experiments/summarize_seeds.py OUT
#
# Usage: scripts/experiments/multiseed.sh [CIFAR10_DIR] [OUT]
#   SUBSET (default 5000 training images, class-balanced), EPOCHS (default 20), SEEDS ("1 2 3"),
#   METHODS ("labels joint grl v2 kd"), TEACHERS (checkpoints, space-separated; default every
#   data/teachers/*.ckpt) and MEAL (the binary) override the defaults. The 5,000-image subset is
#   exactly what `data.train_holdout = 5000` leaves out, so with teachers trained that way
#   (teachers.toml: train_holdout) every student image is new to the teachers.
set -euo pipefail
DATA=${1:-../shared/data/cifar-10-batches-bin}
OUT=${2:-runs/multiseed}
MEAL=${MEAL:-target/release/meal}
SUBSET=${SUBSET:-5000}
EPOCHS=${EPOCHS:-20}
SEEDS=${SEEDS:-1 2 3}
METHODS=${METHODS:-labels joint grl v2 kd}
cd "$(dirname "$0")/../.."
if [ -n "${TEACHERS:-}" ]; then
  read -r -a TEACHERS <<< "$TEACHERS"
else
  mapfile -t TEACHERS < <(ls data/teachers/*.ckpt)
fi
[ ${#TEACHERS[@]} -gt 0 ] || { echo "multiseed.sh: no teachers in data/teachers" >&2; exit 2; }
budget=(--data "$DATA" --epochs "$EPOCHS" --set data.train_subset="$SUBSET" -q)
mkdir -p "$OUT"
finished() { [ -f "$1/metrics.jsonl" ] && [ "$(wc -l < "$1/metrics.jsonl")" -ge "$EPOCHS" ]; }
for seed in $SEEDS; do
  for method in $METHODS; do
    run="$OUT/$method-seed$seed"
    finished "$run" && continue
    if [ -f "$run/last.ckpt" ]; then
      case $method in
        labels) "$MEAL" train --resume "$run" -q ;;
        *) "$MEAL" distill --resume "$run" -q ;;
      esac
      continue
    fi
    case $method in
      labels)
        "$MEAL" train --arch resnet8 "${budget[@]}" --seed "$seed" --lr 0.1 --batch-size 128 \
          --set schedule.kind=cosine --run-dir "$run" ;;
      joint|grl)
        "$MEAL" distill --recipe "cpu-cifar10-$method" "${budget[@]}" --seed "$seed" \
          --teacher "${TEACHERS[@]}" --run-dir "$run" ;;
      v2)
        "$MEAL" distill --recipe cpu-cifar10-joint "${budget[@]}" --seed "$seed" \
          --set meal.combine=mean-softmax --set meal.teacher_bn=eval \
          --teacher "${TEACHERS[@]}" --run-dir "$run" ;;
      kd)
        "$MEAL" distill --recipe cpu-cifar10-joint "${budget[@]}" --seed "$seed" \
          --set meal.combine=mean-softmax --set meal.teacher_bn=eval --set meal.adversarial=none \
          --set meal.similarity=kl --set meal.temperature=4 --set meal.alpha=0.1 \
          --set 'meal.stages=[{ index = -1, gamma = 0.9 }]' \
          --teacher "${TEACHERS[@]}" --run-dir "$run" ;;
      *) echo "multiseed.sh: unknown method $method" >&2; exit 2 ;;
    esac
  done
done
