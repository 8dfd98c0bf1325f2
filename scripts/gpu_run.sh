#!/usr/bin/env bash
# Builds the trainer against the GPU machine's own CUDA LibTorch, starts an
# oracle there, measures FixMatch steps/s and runs 100-label trainings side by
# side (see shared/GPU.md for the machine and docs/BENCHMARKS.md for results).
#
# On the device machine (after scripts/make_gpu_bundle.sh here; carry .gpu):
#   scripts/gpu_run.sh
# Here on CPU with tiny settings, to check the script itself:
#   GPU_RUN_LOCAL=1 TRAIN_SECONDS=60 scripts/gpu_run.sh
#
# Environment knobs: TRAIN_SECONDS (wall time the trainings may take, default
# 330), DEADLINE (seconds after the script starts by which it must be done;
# TRAIN_SECONDS shrinks to fit, e.g. when the build was slow; default none),
# STRATEGIES (default "random typiclust"), SEEDS (one run per strategy and
# seed; default one run with seed 0), BUDGET (100), SCHEDULE (40,30,30),
# BENCH_RATE (steps/s measured before: skips the bench),
# OUT (results folder, default $OUT or out/gpu), FIRST_EXTRA (flags for the
# first start of each trainer only; a bad one checks the retry path), WORK
# (scratch folder, default /tmp/fewlabels-gpu). CPU mode only: GPU_RUN_BUILT
# (a build folder to use instead of building), DATA_DIR, LOCAL_TRAINER_FLAGS
# (the tiny model and pool).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${OUT:-$ROOT/out/gpu}
mkdir -p "$OUT"
LOG=$OUT/gpu_run.log
exec > >(tee -a "$LOG") 2>&1
T0=$(date +%s)
stamp() { echo "[gpu_run +$(( $(date +%s) - T0 ))s] $*"; }

TRAIN_SECONDS=${TRAIN_SECONDS:-330}
STRATEGIES=${STRATEGIES:-"random typiclust"}
BUDGET=${BUDGET:-100}
SCHEDULE=${SCHEDULE:-40,30,30}
WORK=${WORK:-/tmp/fewlabels-gpu}
rm -rf "$WORK" && mkdir -p "$WORK"

if [[ -z "${GPU_RUN_LOCAL:-}" ]]; then
  stamp "unpacking deps"
  mkdir -p /opt/deps && tar xJf .gpu/deps.tar.xz -C /opt/deps || exit 1
  export PATH=/opt/deps/usr/bin:$PATH
  export LD_LIBRARY_PATH=/opt/deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
  DATA_DIR=$ROOT/.gpu/data
  TORCH_DIR=$(python3 -c "import torch;print(torch.utils.cmake_prefix_path)")
  TORCH_LIB=$(python3 -c "import torch,os;print(os.path.join(os.path.dirname(torch.__file__),'lib'))")
  export LD_LIBRARY_PATH=$TORCH_LIB:$LD_LIBRARY_PATH
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch;print('torch', torch.__version__, 'cuda', torch.version.cuda)"
  D=/opt/deps/usr
  CMAKE_ARGS=(
    -DCMAKE_PREFIX_PATH="$TORCH_DIR;$D"
    -DCMAKE_POLICY_VERSION_MINIMUM=3.5
    -DOPENSSL_ROOT_DIR=$D -DZLIB_ROOT=$D
    -DPKG_CONFIG_EXECUTABLE=$D/bin/pkgconf
    -DProtobuf_PROTOC_EXECUTABLE=$D/bin/protoc
    -DProtobuf_INCLUDE_DIR=$D/include
    -DProtobuf_LIBRARY=$D/lib/x86_64-linux-gnu/libprotobuf.so
    -DGRPC_CPP_PLUGIN=$D/bin/grpc_cpp_plugin
    -DSQLite3_INCLUDE_DIR=$D/include
    -DSQLite3_LIBRARY=$D/lib/x86_64-linux-gnu/libsqlite3.so
    -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc -DCUDAToolkit_ROOT=/usr/local/cuda
    -DTORCH_CUDA_ARCH_LIST=9.0
  )
  DEVICE=cuda
else
  DATA_DIR=${DATA_DIR:-/usr/share/datasets/fashion-mnist}
  CMAKE_ARGS=()
  DEVICE=cpu
fi

if [[ -n "${GPU_RUN_BUILT:-}" ]]; then
  # A build folder that already holds the four binaries (tests use theirs).
  BUILD=$GPU_RUN_BUILT
  stamp "using the binaries in $BUILD"
else
  BUILD=$ROOT/build-gpu
  stamp "configuring"
  cmake -S . -B "$BUILD" -G "$(command -v ninja >/dev/null && echo Ninja || echo 'Unix Makefiles')" \
    -DCMAKE_BUILD_TYPE=Release -DFEWLABELS_BUILD_TESTS=OFF "${CMAKE_ARGS[@]}" \
    > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
  stamp "building"
  cmake --build "$BUILD" -j "$(nproc)" --target trainer oracle_server_main oraclectl fixmatch_bench \
    >> "$OUT/build.log" 2>&1 || { grep -E "error|Error" -A3 "$OUT/build.log" | head -60; exit 1; }
  stamp "built"
fi

ORACLE=$BUILD/oracle_server/oracle_server
"$ORACLE" --host=127.0.0.1 --port=0 --port_file="$WORK/port" --db="$WORK/oracle.db" \
  --train_labels="$DATA_DIR/train-labels-idx1-ubyte.gz" \
  --test_labels="$DATA_DIR/t10k-labels-idx1-ubyte.gz" > "$WORK/oracle.log" 2>&1 &
ORACLE_PID=$!
trap 'kill $ORACLE_PID 2>/dev/null' EXIT
for _ in $(seq 100); do [[ -s "$WORK/port" ]] && break; sleep 0.1; done
PORT=$(cat "$WORK/port") || { cat "$WORK/oracle.log"; exit 1; }
stamp "oracle on port $PORT: $(cat "$WORK/oracle.log")"

EXTRA=()
if [[ -n "${BENCH_RATE:-}" ]]; then
  # Throughput already measured on this kind of device: skip the bench.
  RATE=$BENCH_RATE
  echo "bench skipped: BENCH_RATE=$RATE" > "$OUT/bench.txt"
else
  # Throughput of the default model, one process alone on the device.
  if [[ "$DEVICE" == cuda ]]; then BENCH=(--steps=300 --warmup=30 --cuda_graph=true); else BENCH=(--steps=2 --warmup=1 --width=16); fi
  "$BUILD/trainer/learn/fixmatch_bench" --device=$DEVICE --batch=64 --mu=7 "${BENCH[@]}" > "$OUT/bench.txt" 2>&1
  if [[ $? -ne 0 ]]; then
    cat "$OUT/bench.txt"
    stamp "bench failed; retrying without CUDA graphs and bf16 autocast"
    "$BUILD/trainer/learn/fixmatch_bench" --device=$DEVICE --batch=64 --mu=7 "${BENCH[@]}" \
      --mixed_precision=false --cuda_graph=false > "$OUT/bench.txt" 2>&1 ||
      { cat "$OUT/bench.txt"; exit 1; }
    EXTRA+=(--bf16=false --cuda_graph=false)
  fi
  cat "$OUT/bench.txt"
  RATE=$(grep -oE '[0-9.]+ steps/s' "$OUT/bench.txt" | head -1 | cut -d' ' -f1)
  RATE=${RATE:-1}
fi
# One run per strategy and seed, named after the strategy (and the seed when
# SEEDS is given).
RUNS=()
declare -A RUN_STRATEGY RUN_SEED PID RETRIED
for s in $STRATEGIES; do
  for seed in ${SEEDS:-0}; do
    name=$s${SEEDS:+-s$seed}
    RUNS+=("$name"); RUN_STRATEGY[$name]=$s; RUN_SEED[$name]=$seed
  done
done
NPROC=${#RUNS[@]}
if [[ -n "${DEADLINE:-}" ]]; then
  # Leave 60 s after training for the final evaluation, reports and summary.
  LEFT=$(( DEADLINE - ($(date +%s) - T0) - 60 ))
  if (( LEFT < TRAIN_SECONDS )); then
    stamp "only $LEFT s left before the deadline: TRAIN_SECONDS $TRAIN_SECONDS -> $LEFT"
    TRAIN_SECONDS=$(( LEFT > 30 ? LEFT : 30 ))
  fi
fi
# Processes share the device (assume no gain from sharing); keep a margin for
# start-up, selection and evaluation so the cosine schedule runs to its end.
STEPS=$(python3 -c "print(max(60, int($RATE / $NPROC * $TRAIN_SECONDS * 0.85)))")
stamp "bench $RATE steps/s alone; $NPROC runs of $STEPS steps each"

if [[ "$DEVICE" == cpu ]]; then
  read -ra LOCAL_FLAGS <<<"${LOCAL_TRAINER_FLAGS:---train_limit=3000 --width=16 --batch=16 --mu=2}"
  EXTRA+=("${LOCAL_FLAGS[@]}")
fi
TRAIN_T0=$(date +%s)
# launch RUN EXPERIMENT_NAME STEPS [FLAGS...]: starts one trainer in the
# background with whatever is left of TRAIN_SECONDS.
launch() {
  local run=$1 name=$2 steps=$3; shift 3
  local secs=$(( TRAIN_SECONDS - ($(date +%s) - TRAIN_T0) ))
  "$BUILD/trainer/trainer" --oracle=127.0.0.1:$PORT --strategy=${RUN_STRATEGY[$run]} \
    --seed=${RUN_SEED[$run]} --budget=$BUDGET \
    --experiment="fmnist-$name-$BUDGET" --schedule=$SCHEDULE --steps=$steps \
    --eval_every=$(( steps / 8 + 1 )) --device=$DEVICE --data_dir="$DATA_DIR" \
    --out_dir="$WORK/runs/$name" --checkpoint_every=0 \
    --max_train_seconds=$(( secs > 30 ? secs : 30 )) "${EXTRA[@]}" "$@" \
    > "$WORK/trainer-$name.log" 2>&1 &
  PID[$run]=$!
}
for r in "${RUNS[@]}"; do launch $r $r $STEPS ${FIRST_EXTRA:-}; done
# Wait for the trainers. One that fails is started once more, as a new
# experiment, without CUDA graphs and bf16 (the fallback the bench uses),
# for the time that is left. At the hard stop a trainer still running gets
# SIGTERM: it checkpoints and stops.
HARD_STOP=$(( TRAIN_T0 + TRAIN_SECONDS + 45 ))
while :; do
  running=0
  for s in "${RUNS[@]}"; do
    p=${PID[$s]:-}; [[ -z "$p" ]] && continue
    if kill -0 "$p" 2>/dev/null; then
      running=1
      (( $(date +%s) > HARD_STOP )) && kill -TERM "$p" 2>/dev/null
      continue
    fi
    wait "$p"; rc=$?; PID[$s]=""
    [[ $rc -eq 0 ]] && { stamp "trainer $s finished"; continue; }
    stamp "trainer $s failed (exit $rc): $(tail -2 "$WORK/trainer-$s.log" | tr '\n' ' ')"
    left=$(( TRAIN_SECONDS - ($(date +%s) - TRAIN_T0) ))
    if [[ -z "${RETRIED[$s]:-}" && $left -gt 60 ]]; then
      RETRIED[$s]=1
      steps=$(python3 -c "print(max(60, int($STEPS * $left / $TRAIN_SECONDS * 0.7)))")
      stamp "retrying $s as fmnist-$s-eager-$BUDGET: $steps steps in $left s, eager fp32"
      launch $s $s-eager $steps --cuda_graph=false --bf16=false
      running=1
    fi
  done
  (( running )) || break
  sleep 2
done
stamp "trainings done"

{
  for log in "$WORK"/trainer-*.log; do
    s=$(basename "$log" .log); s=${s#trainer-}
    echo "== $s"; tail -3 "$log"; cat "$WORK/runs/$s/rounds.csv" 2>/dev/null
    python3 - "$WORK/runs/$s/report.json" <<'PY' 2>/dev/null || echo "(no report.json)"
import json, sys
r = json.load(open(sys.argv[1]))
print("report: labels_spent=%d accuracy=%.4f steps=%d steps_per_s=%.1f wall_time_s=%.0f device=%s"
      % (r["labels_spent"], r["accuracy"], r["steps"], r["steps_per_s"], r["wall_time_s"], r["device"]))
PY
  done
  echo "== oraclectl summary"
  "$BUILD/oracle_server/oraclectl" summary --db="$WORK/oracle.db"
  "$BUILD/oracle_server/oraclectl" verify --db="$WORK/oracle.db"
} 2>&1 | tee "$OUT/summary.txt"
kill -TERM $ORACLE_PID; wait $ORACLE_PID 2>/dev/null
# Reports, metrics, journals, logs and the oracle's database; no checkpoints.
tar czf "$OUT/runs.tar.gz" -C "$WORK" --exclude='*.pt' runs oracle.log \
  $(cd "$WORK" && ls trainer-*.log) oracle.db 2>/dev/null
stamp "done; results in $OUT"
