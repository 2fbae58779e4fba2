#!/usr/bin/env bash
# Inference latency of meal beside PyTorch eager and ONNX Runtime, in one run on one machine:
# `meal bench --arch A --latency` times the eval forward at batch 1 and 8 and saves the timed
# weights; `meal export` writes them as safetensors and ONNX; scripts/bench/latency.py times the
# same weights in PyTorch and ONNX Runtime with the same threads and batch sizes; then a markdown
# table of ms per image (median and p90) and the ratios.
#
# Usage: scripts/bench/latency.sh PYTHON [quick|full]
#   PYTHON  an interpreter with torch, onnxruntime and numpy (a virtual environment's bin/python)
#   quick   10 timed runs per batch (a smoke run); full (default) 100
# ARCHS (default "resnet20 resnet18_cifar") are timed at their own image side (32 for the CIFAR
# forms, 224 for the ImageNet ones, e.g. ARCHS="resnet50 tf_mobilenetv3_large_100").
# THREADS (default 2) is given to all three: RAYON_NUM_THREADS for meal,
# torch.set_num_threads and ONNX Runtime's intra_op_num_threads. Measure on an otherwise idle
# machine: a p90 on a shared host measures the neighbours.
set -euo pipefail
PY=${1:?usage: scripts/bench/latency.sh PYTHON [quick|full]}
MODE=${2:-full}
THREADS=${THREADS:-2}
ARCHS=${ARCHS:-resnet20 resnet18_cifar}
cd "$(dirname "$0")/../.."
case "$MODE" in
  quick) WARMUP=2; STEPS=10 ;;
  full) WARMUP=5; STEPS=100 ;;
  *) echo "latency.sh: mode must be quick or full, got '$MODE'" >&2; exit 2 ;;
esac
"$PY" -c "import torch, onnxruntime, numpy" 2>/dev/null \
  || { echo "latency.sh: $PY cannot import torch, onnxruntime and numpy" >&2; exit 2; }
# MEAL=path times another build of meal (an older one, for a before/after in the same run).
if [ -z "${MEAL:-}" ]; then
  cargo build --release -q
  MEAL=target/release/meal
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
for arch in $ARCHS; do
  echo "latency.sh: $arch" >&2
  RAYON_NUM_THREADS=$THREADS "$MEAL" bench --arch "$arch" --latency \
    --steps "$STEPS" --warmup "$WARMUP" --save-model "$TMP/$arch.ckpt" --json >> "$TMP/results.jsonl"
  "$MEAL" export --checkpoint "$TMP/$arch.ckpt" --format safetensors \
    --out "$TMP/$arch.safetensors" > /dev/null
  "$MEAL" export --checkpoint "$TMP/$arch.ckpt" --format onnx \
    --out "$TMP/$arch.onnx" > /dev/null
  "$PY" scripts/bench/latency.py --arch "$arch" --safetensors "$TMP/$arch.safetensors" \
    --onnx "$TMP/$arch.onnx" --steps "$STEPS" --warmup "$WARMUP" --threads "$THREADS" \
    >> "$TMP/results.jsonl"
done
"$PY" scripts/bench/latency.py --table "$TMP/results.jsonl"
