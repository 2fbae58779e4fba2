#!/usr/bin/env bash
# The BENCHMARKS.md table: training and inference images/second of resnet20 and resnet18 at batch
# 128 on random CIFAR-sized input, meal (burn-flex) and PyTorch (CPU, 2 threads) side by side.
# Usage: scripts/bench/run_all.sh [PYTHON_WITH_TORCH]   (run on an otherwise idle machine)
set -euo pipefail
PY=${1:-python3}
cargo build --release --example bench -q
for arch in resnet20 resnet18; do
  steps=5; [ "$arch" = resnet18 ] && steps=3
  target/release/examples/bench "$arch" 128 "$steps"
  "$PY" scripts/bench/torch_bench.py "$arch" 128 "$steps"
done
