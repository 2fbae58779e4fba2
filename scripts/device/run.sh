#!/usr/bin/env bash
# The one prepared script for the GPU host (CUDA, PyTorch and timm; no cargo, no network; it
# receives the repository's tracked files plus the binary built by scripts/device/build.sh).
# From that `meal` binary it
#   1. runs `meal selftest` (golden comparisons with PyTorch + a tiny train/distill/resume round),
#   2. runs `meal bench` (train and inference of resnet20 and resnet18_cifar at batch 128 and 512,
#      the meal-v1-resnet18 MEAL step; after step 3, resnet50 and the meal-v2-resnet50 step at
#      224x224, batch 64) and the PyTorch twin (scripts/bench/torch_bench.py) on the
#      same device,
#   3. trains two teachers, distils a MEAL student, evaluates all three and resumes the student,
#      on the embedded data/cifar10-mini,
#   4. writes $OUT/summary.json and $OUT/summary.md (plus every log and raw result).
#
# Usage: OUT=/path scripts/device/run.sh [path/to/meal or meal.xz]   (default: carry/meal.xz)
# Environment:
#   OUT          results folder (required)
#   MEAL_DEVICE  device for meal and PyTorch: cuda (default), cuda:N, or for rehearsals flex
#                (the CPU) or wgpu[:N] (a wgpu build, e.g. on lavapipe; PyTorch on the CPU)
#   SMALL=1      tiny sizes (batch 8, one step, one epoch): a rehearsal of every step on a CPU
#   PYTHON       Python with torch (default python3)
#   STEP_TIMEOUT seconds any one step may take before it is killed and marked failed (300)
#   BUDGET       seconds for the whole script (540: a GPU lease allows 600 per command); a step
#                gets at most what is left, and steps that no longer fit are skipped (exit 124)
#   EPOCHS       epochs of the end-to-end teachers and student (5; 1 with SMALL=1)
# A failing step is recorded and the script goes on; it exits non-zero if any step failed.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)

: "${OUT:?set OUT to the results folder}"
BIN_IN=${1:-carry/meal.xz}
DEVICE=${MEAL_DEVICE:-cuda}
SMALL=${SMALL:-0}
PYTHON=${PYTHON:-python3}
STEP_TIMEOUT=${STEP_TIMEOUT:-300}
BUDGET=${BUDGET:-540}
DEADLINE=$(($(date +%s) + BUDGET))
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/meal-device.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
STEPS_FILE="$OUT/steps.tsv"
: >"$STEPS_FILE"

log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUT/run.log"; }

# step NAME CMD...: runs CMD with a timeout, stdout+stderr to $OUT/NAME.log; records rc and time.
FAILED=0
step() {
  local name=$1
  shift
  log "step $name: $*"
  local t0 t1 rc limit left
  left=$((DEADLINE - $(date +%s)))
  limit=$((left < STEP_TIMEOUT ? left : STEP_TIMEOUT))
  t0=$(date +%s.%N)
  if [ "$limit" -lt 10 ]; then
    echo "skipped: the script's BUDGET of ${BUDGET}s is spent" >"$OUT/$name.log"
    rc=124
  else
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    rc=$?
  fi
  t1=$(date +%s.%N)
  local secs
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
  printf '%s\t%s\t%s\n' "$name" "$rc" "$secs" >>"$STEPS_FILE"
  if [ "$limit" -lt 10 ]; then
    FAILED=$((FAILED + 1))
    log "step $name skipped: the budget of ${BUDGET}s is spent"
  elif [ "$rc" -ne 0 ]; then
    FAILED=$((FAILED + 1))
    log "step $name FAILED (exit $rc after ${secs}s); last lines:"
    tail -n 5 "$OUT/$name.log" | sed 's/^/    /' | tee -a "$OUT/run.log"
  else
    log "step $name ok (${secs}s)"
  fi
  return "$rc"
}

# --- the binary -----------------------------------------------------------------------------
case "$BIN_IN" in
  *.xz) xz -dc "$BIN_IN" >"$WORK/meal" || { log "cannot decompress $BIN_IN"; exit 1; } ;;
  *) cp "$BIN_IN" "$WORK/meal" || { log "cannot copy $BIN_IN"; exit 1; } ;;
esac
chmod +x "$WORK/meal"
MEAL="$WORK/meal"

# The CUDA backend loads libcuda (driver) and libnvrtc (runtime compiler) at run time. PyTorch
# wheels ship libnvrtc under site-packages/nvidia/*/lib; a toolkit under /usr/local/cuda.
if [[ "$DEVICE" == cuda* ]]; then
  extra=$("$PYTHON" - <<'EOF' 2>/dev/null
import glob, os, site
dirs = []
for base in site.getsitepackages() + [site.getusersitepackages()]:
    dirs += sorted(glob.glob(os.path.join(base, "nvidia", "*", "lib")))
    dirs += sorted(glob.glob(os.path.join(base, "torch", "lib")))
print(":".join(d for d in dirs if os.path.isdir(d)))
EOF
  )
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -d "$d" ] && extra="$extra:$d"
  done
  export LD_LIBRARY_PATH="${extra#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(uname -srm)"
  echo "meal: $("$MEAL" --version 2>&1)"
  echo "device: $DEVICE"
  echo "small: $SMALL"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ //')"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | sed 's/^/gpu: /'
  "$PYTHON" -c 'import torch; print("torch:", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1
} >"$OUT/environment.txt"
log "environment: $(tr '\n' ';' <"$OUT/environment.txt")"

# --- 1. selftest ----------------------------------------------------------------------------
step selftest "$MEAL" --device "$DEVICE" selftest --json "$OUT/selftest.json" --work-dir "$WORK/selftest"

# --- 2. benchmarks --------------------------------------------------------------------------
if [ "$SMALL" = 1 ]; then
  ARCHS="resnet20 resnet18_cifar"; BATCHES="8"; STEPS=1; WARMUP=1; WBATCH=4
else
  ARCHS="resnet20 resnet18_cifar"; BATCHES="128 512"; STEPS=10; WARMUP=3; WBATCH=64
fi
# The PyTorch twin's command line: flags if it has them, else the older positional form.
TORCH_BENCH=scripts/bench/torch_bench.py
torch_help=$("$PYTHON" "$TORCH_BENCH" --help 2>&1 || true)
torch_flags=0
case "$torch_help" in *--arch*) torch_flags=1 ;; esac
torch_device=$DEVICE
[[ "$DEVICE" == cuda* ]] || torch_device=cpu

: >"$OUT/bench-meal.jsonl"
: >"$OUT/bench-torch.jsonl"
for arch in $ARCHS; do
  for batch in $BATCHES; do
    tag="$arch-b$batch"
    step "bench-meal-$tag" "$MEAL" --device "$DEVICE" bench --arch "$arch" --batch "$batch" \
      --steps "$STEPS" --warmup "$WARMUP" --json &&
      grep '^{' "$OUT/bench-meal-$tag.log" | tail -n 1 >>"$OUT/bench-meal.jsonl"
    if [ "$torch_flags" = 1 ]; then
      step "bench-torch-$tag" "$PYTHON" "$TORCH_BENCH" --arch "$arch" --batch "$batch" \
        --steps "$STEPS" --device "$torch_device" --json
    else
      step "bench-torch-$tag" "$PYTHON" "$TORCH_BENCH" "$arch" "$batch" "$STEPS"
    fi && grep '^{' "$OUT/bench-torch-$tag.log" | tail -n 1 >>"$OUT/bench-torch.jsonl"
  done
done
step bench-meal-meal-v1-resnet18 "$MEAL" --device "$DEVICE" bench --workload meal-v1-resnet18 \
  --batch "$WBATCH" --steps "$STEPS" --warmup "$WARMUP" --json &&
  grep '^{' "$OUT/bench-meal-meal-v1-resnet18.log" | tail -n 1 >>"$OUT/bench-meal.jsonl"
case "$torch_help" in
  *--workload*)
    step bench-torch-meal-v1-resnet18 "$PYTHON" "$TORCH_BENCH" --workload meal-v1-resnet18 \
      --batch "$WBATCH" --steps "$STEPS" --device "$torch_device" --json &&
      grep '^{' "$OUT/bench-torch-meal-v1-resnet18.log" | tail -n 1 >>"$OUT/bench-torch.jsonl"
    ;;
  *) log "torch_bench.py has no --workload: no PyTorch twin of meal-v1-resnet18 in this run" ;;
esac

# --- 3. end to end on data/cifar10-mini -----------------------------------------------------
if [ "$SMALL" = 1 ]; then
  EPOCHS=1; SUBSET=(--set data.train_subset=200 --set data.test_subset=100)
else
  EPOCHS=${EPOCHS:-5}; SUBSET=()
fi
E2E="$WORK/e2e"
DATA=data/cifar10-mini
step e2e-teacher-resnet20 "$MEAL" --device "$DEVICE" train --arch resnet20 --data "$DATA" \
  --epochs "$EPOCHS" --run-dir "$E2E/teacher-resnet20" "${SUBSET[@]}"
step e2e-teacher-vgg8 "$MEAL" --device "$DEVICE" train --arch vgg8 --data "$DATA" \
  --epochs "$EPOCHS" --run-dir "$E2E/teacher-vgg8" "${SUBSET[@]}"
step e2e-distill "$MEAL" --device "$DEVICE" distill --recipe quickstart \
  --teacher "$E2E/teacher-resnet20" --teacher "$E2E/teacher-vgg8" --data "$DATA" \
  --epochs "$EPOCHS" --run-dir "$E2E/student" "${SUBSET[@]}"
step e2e-resume "$MEAL" --device "$DEVICE" distill --resume "$E2E/student" \
  --set "epochs=$((EPOCHS + 1))"
eval_subset=()
[ "$SMALL" = 1 ] && eval_subset=(--test-subset 100)
step e2e-eval "$MEAL" --device "$DEVICE" eval --data "$DATA" "${eval_subset[@]}" \
  --checkpoint "$E2E/teacher-resnet20" --checkpoint "$E2E/teacher-vgg8" \
  --checkpoint "$E2E/student"
# The run folders' records (small text files) come back with the results.
for run in teacher-resnet20 teacher-vgg8 student; do
  mkdir -p "$OUT/e2e/$run"
  cp "$E2E/$run"/*.txt "$E2E/$run"/*.toml "$E2E/$run"/*.json "$E2E/$run"/*.csv "$OUT/e2e/$run/" 2>/dev/null
done

# --- 2b. ImageNet-form models at 224x224 (after the end-to-end run, which must not be starved of
# the budget by them): timm's resnet50 and the MEAL V2 step (senet154 + resnet152s teachers ->
# resnet50), twins with timm's models on the same device.
if [ "$SMALL" = 1 ]; then
  IN_BATCH=2; IN_SIZE=64
else
  IN_BATCH=64; IN_SIZE=224
fi
for spec in "--arch resnet50" "--workload meal-v2-resnet50"; do
  tag="$(echo "$spec" | awk '{print $2}')-b$IN_BATCH-$IN_SIZE"
  # shellcheck disable=SC2086 # spec is two words on purpose
  step "bench-meal-$tag" "$MEAL" --device "$DEVICE" bench $spec --batch "$IN_BATCH" \
    --image-size "$IN_SIZE" --steps "$STEPS" --warmup "$WARMUP" --json &&
    grep '^{' "$OUT/bench-meal-$tag.log" | tail -n 1 >>"$OUT/bench-meal.jsonl"
  case "$torch_help" in
    *--image-size*)
      # shellcheck disable=SC2086
      step "bench-torch-$tag" "$PYTHON" "$TORCH_BENCH" $spec --batch "$IN_BATCH" \
        --image-size "$IN_SIZE" --steps "$STEPS" --device "$torch_device" --json &&
        grep '^{' "$OUT/bench-torch-$tag.log" | tail -n 1 >>"$OUT/bench-torch.jsonl"
      ;;
    *) log "torch_bench.py has no --image-size: no PyTorch twin of $tag in this run" ;;
  esac
done

# --- 4. summary -----------------------------------------------------------------------------
"$PYTHON" scripts/device/summarize.py "$OUT" || { log "summarize.py failed"; FAILED=$((FAILED + 1)); }
log "done: $FAILED failed step(s); summary in $OUT/summary.md"
[ "$FAILED" -eq 0 ]
