#!/usr/bin/env bash
# Builds the `meal` binary that scripts/device/run.sh takes to the GPU host: the `cuda` feature
# (LLVM set up offline by scripts/setup-gpu-build.sh), stripped and xz-compressed into carry/
# (git-ignored; the GPU host receives at most 64 MiB of untracked files, and the stripped
# binary is ~170 MB, ~36 MB compressed). A first build takes about 30 minutes on 2 cores.
# Usage: scripts/device/build.sh        -> carry/meal.xz (+ carry/meal.xz.sha256)
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/setup-gpu-build.sh
start=$(date +%s)
# A target dir of its own, so that the CPU build in target/release stays as it is.
cargo build --release --features cuda --bin meal --target-dir target/cuda
echo "build: $(($(date +%s) - start))s"
mkdir -p carry
cp target/cuda/release/meal carry/meal
strip carry/meal
xz -6 -T0 -f carry/meal
sha256sum carry/meal.xz >carry/meal.xz.sha256
size=$(stat -c %s carry/meal.xz)
echo "carry/meal.xz: $((size / 1048576)) MiB (stripped binary compressed with xz -6)"
[ "$size" -lt $((60 * 1048576)) ] || echo "warning: over 60 MiB: it may not fit the 64 MiB transfer" >&2
