#!/usr/bin/env bash
# Runs the linear_probe diagnostic (it reads the label files: never part of a
# product result) on every finished run of a bench_labels.sh sweep folder and
# on the SimCLR checkpoint each run started from, here or on the GPU machine:
#
#   bash docs/results/cpu-2026-12-05-linear-probe/probe_runs.sh SWEEP_DIR [TSV]
#   bash docs/results/cpu-2026-12-05-linear-probe/probe_runs.sh --build   # build only
#
# On the device machine, in the calibration, headline and capacity calls
# (docs/GPU_RUNS.md), the build runs beside the sweep and the probes after
# it, e.g. for the capacity plan:
#   source scripts/gpu_env.sh; P=docs/results/cpu-2026-12-05-linear-probe/probe_runs.sh; \
#   bash $P --build & \
#   BENCH_OUT=/tmp/cap SWEEP_SECONDS=420 PLAN=capacity MPS=1 scripts/gpu_run.sh; \
#   wait; bash $P /tmp/cap "$OUT/probes.tsv"
#
# Builds the probe with this folder's CMakeLists.txt into PROBE_BUILD (default
# /tmp/linear-probe-build): against the CUDA Python torch and the carried
# bundle (scripts/gpu_env.sh) where there is one, else Debian's LibTorch.
# Reads each run's command.txt for --arch, --width and --train_limit (the
# last one given wins, as for the trainer's flags; defaults cnn, 64, all
# 60,000). Output: TSV lines as linear_probe prints them, name
# "<run folder>" for the run's EMA weights and "simclr:<run folder>" for its
# SimCLR start (each checkpoint probed once), to TSV (default stdout).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
SWEEP=${1:?usage: probe_runs.sh SWEEP_DIR [TSV] | --build}
TSV=${2:-/dev/stdout}
BUILD=${PROBE_BUILD:-/tmp/linear-probe-build}
cd "$ROOT" || exit 1
# shellcheck source=../../../scripts/build_lib.sh
source scripts/build_lib.sh
DEVICE=cpu
CMAKE_ARGS=()
if fewlabels_cuda_python_torch >/dev/null; then
  # shellcheck source=../../../scripts/gpu_env.sh
  source scripts/gpu_env.sh || exit 1
  CMAKE_ARGS=("${GPU_CMAKE_ARGS[@]}")
  DEVICE=cuda
fi
DATA_DIR=${DATA_DIR:-/usr/share/datasets/fashion-mnist}
echo "[probe] building into $BUILD (device $DEVICE)" >&2
cmake -S "$HERE" -B "$BUILD" "${CMAKE_ARGS[@]}" >"$BUILD.cmake.log" 2>&1 &&
  cmake --build "$BUILD" -j "$(nproc)" >>"$BUILD.cmake.log" 2>&1 ||
  { echo "[probe] build failed: see $BUILD.cmake.log" >&2; tail -20 "$BUILD.cmake.log" >&2; exit 1; }
[[ $SWEEP == --build ]] && exit 0
[[ -d $SWEEP ]] || { echo "[probe] no folder $SWEEP" >&2; exit 2; }

# The last value of --NAME=... in a command line, or DEFAULT.
flag() { grep -o -- "--$1=[^ ]*" <<<"$2" | tail -1 | cut -d= -f2- | grep . || echo "$3"; }

declare -A seen=()
status=0
for run in "$SWEEP"/b*-s*/; do
  run=${run%/}; name=$(basename "$run")
  [[ -f $run/checkpoint.pt && -f $run/command.txt ]] || continue
  cmd=$(cat "$run/command.txt")
  arch=$(flag arch "$cmd" cnn); width=$(flag width "$cmd" 64)
  pool=$(flag train_limit "$cmd" 0); [[ $pool == 0 ]] && pool=60000
  common=(--arch="$arch" --width="$width" --pool="$pool" --device="$DEVICE" --data_dir="$DATA_DIR")
  echo "[probe] $name ($arch, width $width, pool $pool)" >&2
  "$BUILD/linear_probe" --checkpoint="$run/checkpoint.pt" --purchases="$run/purchases.log" \
    --name="$name" "${common[@]}" >>"$TSV" || status=1
  start=$(grep -o '[^ ]*simclr-[0-9a-f]*\.pt' "$run/trainer.log" 2>/dev/null | head -1)
  if [[ -n $start && -f $start && -z ${seen[$start]:-} ]]; then
    seen[$start]=1
    "$BUILD/linear_probe" --checkpoint="$start" --weights=model --purchases="$run/purchases.log" \
      --name="simclr:$name" "${common[@]}" >>"$TSV" || status=1
  fi
done
exit $status
