#!/usr/bin/env bash
# The input pipeline of meal beside torchvision's in one run: `meal bench --data-pipeline` and
# scripts/bench/data_pipeline.py on the same folder, transforms, batch and workers, for each
# worker count, then a markdown table (ratio = meal / torchvision images/s; above 1 is faster).
#
# Usage: scripts/bench/data_pipeline.sh PYTHON DIR [WORKERS...]
#   PYTHON  an interpreter with torch and torchvision; DIR an image folder with train/
#   WORKERS default: 1 2
# Env: SIZE (224), BATCH (32), INTERP (bilinear), STEPS (3 timed passes after 1 warm-up),
#   FEATURES (cargo features of meal's build, e.g. turbojpeg: libjpeg-turbo decodes the JPEGs),
#   TARGET_DIR (cargo's target dir; default target, e.g. target/tj for the turbojpeg build).
set -euo pipefail
PY=${1:?usage: scripts/bench/data_pipeline.sh PYTHON DIR [WORKERS...]}
DIR=${2:?usage: scripts/bench/data_pipeline.sh PYTHON DIR [WORKERS...]}
shift 2
WORKERS=("$@")
[ ${#WORKERS[@]} -eq 0 ] && WORKERS=(1 2)
SIZE=${SIZE:-224}; BATCH=${BATCH:-32}; INTERP=${INTERP:-bilinear}; STEPS=${STEPS:-3}
cd "$(dirname "$0")/../.."
TARGET_DIR=${TARGET_DIR:-target}
cargo build --release -q --target-dir "$TARGET_DIR" ${FEATURES:+--features "$FEATURES"}
FLAGS="--batch $BATCH --image-size $SIZE --interpolation $INTERP --warmup 1 --steps $STEPS"
DECODER=zune-jpeg
[[ ",${FEATURES:-}," == *,turbojpeg,* ]] && DECODER=libjpeg-turbo
echo "| workers | meal images/s | torchvision images/s | meal / torchvision | decode only, 1 thread: meal ($DECODER) / Pillow (libjpeg-turbo) |"
echo "| --- | --- | --- | --- | --- |"
for w in "${WORKERS[@]}"; do
  m=$("$TARGET_DIR"/release/meal bench --data-pipeline "$DIR" --workers "$w" $FLAGS --json)
  t=$("$PY" scripts/bench/data_pipeline.py "$DIR" --workers "$w" $FLAGS)
  "$PY" - "$w" "$m" "$t" <<'PYEOF'
import json, sys
w, m, t = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
a, b = m["images_per_s"]["median"], t["images_per_s"]["median"]
da, db = m["decode_per_s"], t["decode_per_s"]
print(f"| {w} | {a:.1f} | {b:.1f} | {a / b:.2f} | {da:.0f} / {db:.0f} = {da / db:.2f} |")
PYEOF
done
