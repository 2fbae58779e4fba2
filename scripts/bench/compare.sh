#!/usr/bin/env bash
# meal beside PyTorch on the same machine in one run: `meal bench` and its PyTorch twin
# (scripts/bench/torch_bench.py) on each benchmark, then a markdown table of both and their ratio
# (meal / PyTorch: above 1 means meal is faster, or for memory, uses more).
#
# Usage: scripts/bench/compare.sh PYTHON [quick|full|imagenet]
#   PYTHON  an interpreter with torch (a virtual environment's bin/python)
#   quick   few steps (a smoke run: minutes); full (default) the numbers for BENCHMARKS.md
#   imagenet  the ImageNet models at 224×224 instead: resnet50, tf_mobilenetv3_large_100 and
#           tf_efficientnet_b0 (batch 32) and the MEAL V2 step (meal-v2-resnet50, batch 8),
#           1 warm-up and 3 timed steps; PYTHON needs timm too
# ROUNDS (default 1) repeats every meal/PyTorch pair that many times, each pair back to back;
# the table then gives the median over the rounds and the range of the per-round ratios, which
# is what to quote on a shared host whose speed drifts by tens of percent within minutes.
# BASELINE=path/to/an/older/meal also runs that binary in every round, just before the current
# one, and adds a before/after table (meal against itself, same rounds).
# ONLY=NAME keeps the benchmarks whose flags contain NAME (e.g. ONLY=meal-v1-resnet18), for more
# rounds of one comparison in the same time.
# PyTorch runs with torch.set_num_threads(2), matching the 2-core development machine; set
# TORCH_THREADS to change it. Measure on an otherwise idle machine: both sides suffer from
# contention, PyTorch's OpenMP pool (which spins while waiting) the more.
set -euo pipefail
PY=${1:?usage: scripts/bench/compare.sh PYTHON [quick|full|imagenet]}
MODE=${2:-full}
THREADS=${TORCH_THREADS:-2}
ROUNDS=${ROUNDS:-1}
cd "$(dirname "$0")/../.."
case "$MODE" in
  quick) WARMUP=1; STEPS_SMALL=3; STEPS_BIG=2 ;;
  full) WARMUP=2; STEPS_SMALL=10; STEPS_BIG=5 ;;
  imagenet) WARMUP=1; STEPS_BIG=3 ;;
  *) echo "compare.sh: mode must be quick, full or imagenet, got '$MODE'" >&2; exit 2 ;;
esac
"$PY" -c "import torch" 2>/dev/null || { echo "compare.sh: $PY cannot import torch" >&2; exit 2; }
cargo build --release -q
OUT=$(mktemp)
BASE_OUT=$(mktemp)
trap 'rm -f "$OUT" "$BASE_OUT"' EXIT
# name | flags shared by both sides
if [ "$MODE" = imagenet ]; then
  "$PY" -c "import timm" 2>/dev/null || { echo "compare.sh: $PY cannot import timm" >&2; exit 2; }
  BENCHES=(
    "--arch resnet50 --image-size 224 --batch 32 --steps $STEPS_BIG"
    "--arch tf_mobilenetv3_large_100 --image-size 224 --batch 32 --steps $STEPS_BIG"
    "--arch tf_efficientnet_b0 --image-size 224 --batch 32 --steps $STEPS_BIG"
    "--workload meal-v2-resnet50 --batch 8 --steps $STEPS_BIG"
  )
else
  BENCHES=(
    "--arch resnet20 --batch 128 --steps $STEPS_SMALL"
    "--arch resnet18_cifar --batch 128 --steps $STEPS_BIG"
    "--workload meal-v1-resnet18 --batch 64 --steps $STEPS_BIG"
    "--workload meal-v1-cifar-small --batch 64 --steps $((STEPS_SMALL / 3 * 3))"
  )
fi
if [ -n "${ONLY:-}" ]; then
  kept=()
  for b in "${BENCHES[@]}"; do
    [[ "$b" == *"$ONLY"* ]] && kept+=("$b")
  done
  [ ${#kept[@]} -gt 0 ] || { echo "compare.sh: no benchmark matches ONLY=$ONLY" >&2; exit 2; }
  BENCHES=("${kept[@]}")
fi
for round in $(seq "$ROUNDS"); do
  for b in "${BENCHES[@]}"; do
    echo "compare.sh: round $round/$ROUNDS: $b" >&2
    if [ -n "${BASELINE:-}" ]; then
      # shellcheck disable=SC2086
      "$BASELINE" bench $b --warmup "$WARMUP" --json >> "$BASE_OUT"
    fi
    # shellcheck disable=SC2086
    target/release/meal bench $b --warmup "$WARMUP" --json >> "$OUT"
    # shellcheck disable=SC2086
    "$PY" scripts/bench/torch_bench.py $b --warmup "$WARMUP" --threads "$THREADS" --json >> "$OUT"
  done
done
if [ -n "${BASELINE:-}" ]; then
  "$PY" scripts/bench/table.py "$OUT" --baseline "$BASE_OUT"
else
  "$PY" scripts/bench/table.py "$OUT"
fi
