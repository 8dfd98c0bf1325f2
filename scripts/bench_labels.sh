#!/usr/bin/env bash
# One sweep of label budgets x seeds x variants against one label oracle, the
# same command on this CPU (tiny sizes) and on a GPU (full sizes), ending in
# a table: accuracy over seeds, labels spent as the oracle counts them,
# feature quality, time and speed per run.
#
#   scripts/bench_labels.sh                               # the default sweep
#   BUDGETS="40 100" SEEDS="0 1" PARALLEL=2 scripts/bench_labels.sh
#
# It builds trainer, oracle_server and oraclectl (scripts/build_lib.sh: a
# CUDA Python torch when there is one, the GPU dependency bundle where the
# Debian packages are missing), starts ONE oracle_server on a fresh database
# in BENCH_OUT, then runs one trainer per budget, seed and variant, each as
# its own oracle experiment ("bench-<run>"), all sharing one pretraining
# cache (BENCH_OUT/pretrain-cache): the first run of each seed that
# pretrains goes first, and the others of that seed wait for it and reuse
# its checkpoint. At the end it stops the oracle and writes
#   BENCH_OUT/<run>/      each run's report.json/html, rounds.csv, trainer.log,
#                         command.txt (the trainer's command line), rc
#   BENCH_OUT/summary.txt `oraclectl summary`; verify.txt: `oraclectl verify`
#   BENCH_OUT/table.md    one row per budget and variant, then per class the
#                         test accuracy and labels bought (also table.csv and
#                         per_class.csv; runs.csv has one line per trainer
#                         start)
#   BENCH_OUT/sweep.log   everything printed
# Exit status 0 when every run produced a report (none skipped at the
# SWEEP_SECONDS deadline) and the audit log verified.
#
# Environment:
#   BUDGETS    label budgets (default "40 100 250")
#   SEEDS      seeds (default "0 1 2")
#   VARIANTS   space-separated strategy:objective:pretrain[:FLAG...]
#              (default "random:fixmatch:none typiclust:freematch:simclr");
#              each FLAG goes to that variant's trainers, e.g.
#              "typiclust:freematch:simclr:--restart_rounds:--lambda_f=0.01"
#   PARALLEL   trainers at once, a positive integer (default 1; on a GPU
#              several share it)
#   GOMP_SPINCOUNT  on the CPU, how often an idle OpenMP thread spins before
#              it sleeps (default 1000 there, unless OMP_WAIT_POLICY is set;
#              libgomp's own default, 300,000, ran the CPU recipe 1.3x slower)
#   OMP_NUM_THREADS  threads each trainer gives LibTorch's CPU work (default:
#              the CPUs (nproc) divided among the PARALLEL trainers, at least
#              1, so that they do not oversubscribe the cores)
#   TRAINER_FLAGS  flags added to every run (after the defaults: they win)
#   STEPS, PRETRAIN_STEPS  training / pretraining steps per run (defaults:
#              16000 / 4000 with CUDA, 60 / 20 on the CPU, where the model,
#              pool and batches are tiny as well)
#   SCHEDULE   labels bought per round, for every budget: "N%" items are
#              percentages of the run's budget (the last takes the rest), e.g.
#              "100%" (one round) or "50%,50%" (default: the trainer's
#              40 %/30 %/30 %)
#   SWEEP_SECONDS  deadline for the sweep, counted from the script's start:
#              every trainer gets --max_train_seconds, an equal part of the
#              time left until 45 s before it for each run not started yet
#              (ceil(waiting / PARALLEL) waves share it; a run that
#              pretrains for its seed gets all of it), and fits its steps to
#              that (the trainer's --fit_to_time), then evaluates and
#              reports; runs not started 60 s before the deadline are
#              skipped (default: none)
#   BENCH_OUT  sweep folder (default runs/bench-<time>; must not hold an
#              oracle.db yet)
#   BUILD_DIR  (default build); SKIP_BUILD=1 uses its binaries as they are
#   DATA_DIR   folder of the Fashion-MNIST .gz files (default: the trainer's
#              and oracle's own default; the GPU bundle's when it is used)
#   SHUFFLE_SEED  if set, the sweep runs on a copy of the data set whose
#              training images and labels are permuted together with this
#              seed (shuffle_dataset, written to BENCH_OUT/data), for the
#              oracle and every trainer: the same data in another file order
#              (results must agree within noise)
#   SHUFFLE_PREFIX  with SHUFFLE_SEED: permute only the first N training
#              items (shuffle_dataset --prefix); with --train_limit=N in
#              TRAINER_FLAGS the pool keeps the same images and only their
#              order changes (default: all items, which on a limited pool
#              also redraws the pool)
#   DRY_RUN    1: print the plan (one "plan:" line per run, in start order,
#              ending "checkpoint own" for a run that pretrains, "checkpoint
#              <run>" for one that reuses <run>'s, "checkpoint none") and exit
#              without starting the oracle or any trainer
#   MPS        1: run the trainers under the CUDA Multi-Process Service
#              (nvidia-cuda-mps-control -d, its pipes and logs in
#              BENCH_OUT/mps; stopped at the end); the footer says whether it
#              was on. Default 0; ignored without CUDA
#   TARBALL    if set, BENCH_OUT without checkpoints (*.pt) and the shuffled
#              data is packed there
#   RETRY      1 (default): a run that fails is started once more as
#              "<run>-eager" (a new experiment) with --cuda_graph=false
#              --bf16=false; 0: no retry
#   FIRST_EXTRA  flags for the first start of every run only (tests use a
#              bad one to exercise the retry)
set -uo pipefail
shopt -s extglob
cd "$(dirname "$0")/.." || exit 1

T0=$(date +%s)
stamp() { echo "[bench +$(( $(date +%s) - T0 ))s] $*"; }
die() { stamp "error: $*" >&2; exit 1; }
# note LINE: printed, and kept for the table's footer (BENCH_OUT/notes.txt).
note() { stamp "$*"; echo "$*" >>"$BENCH_OUT/notes.txt"; }
PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3

BUDGETS=${BUDGETS:-"40 100 250"}
SEEDS=${SEEDS:-"0 1 2"}
VARIANTS=${VARIANTS:-"random:fixmatch:none typiclust:freematch:simclr"}
PARALLEL=${PARALLEL:-1}
RETRY=${RETRY:-1}
[[ $PARALLEL =~ ^[1-9][0-9]*$ ]] || die "PARALLEL '$PARALLEL' is not a positive integer"
if [[ -z ${OMP_NUM_THREADS:-} ]]; then
  OMP_NUM_THREADS=$(( $(nproc) / PARALLEL ))
  (( OMP_NUM_THREADS > 0 )) || OMP_NUM_THREADS=1
  export OMP_NUM_THREADS
fi
[[ $RETRY == [01] ]] || die "RETRY '$RETRY' is not 0 or 1"
BUILD_DIR=${BUILD_DIR:-build}
BENCH_OUT=${BENCH_OUT:-runs/bench-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$BENCH_OUT" || exit 1
BENCH_OUT=$(cd "$BENCH_OUT" && pwd)
[[ -e $BENCH_OUT/oracle.db ]] && die "$BENCH_OUT already holds an oracle.db; choose a new BENCH_OUT"
# tee ignores Ctrl-C and TERM (it shares the terminal's process group):
# killed first, it would take the INT trap's message and the EXIT
# cleanup down with a broken pipe. It ends when this script does.
exec > >(trap '' INT TERM; exec tee -a "$BENCH_OUT/sweep.log") 2>&1

# shellcheck source=build_lib.sh
source scripts/build_lib.sh
if [[ "${SKIP_BUILD:-}" == 1 ]]; then
  fewlabels_env --no_install >/dev/null || die "no environment for $BUILD_DIR"
  stamp "using the binaries in $BUILD_DIR"
else
  fewlabels_build "$BUILD_DIR" || die "build failed"
  stamp "built"
fi
BUILD_DIR=$(cd "$BUILD_DIR" && pwd)
TRAINER=$BUILD_DIR/trainer/trainer
ORACLE=$BUILD_DIR/oracle_server/oracle_server
ORACLECTL=$BUILD_DIR/oracle_server/oraclectl
for b in "$TRAINER" "$ORACLE" "$ORACLECTL"; do [[ -x $b ]] || die "missing $b"; done
if [[ -n "${SHUFFLE_SEED:-}" && "${DRY_RUN:-0}" != 1 ]]; then
  [[ $SHUFFLE_SEED =~ ^[0-9]+$ ]] || die "SHUFFLE_SEED '$SHUFFLE_SEED' is not a number"
  SHUFFLER=$BUILD_DIR/common/shuffle_dataset
  [[ -x $SHUFFLER ]] || die "missing $SHUFFLER"
  [[ ${SHUFFLE_PREFIX:-0} =~ ^[0-9]+$ ]] || die "SHUFFLE_PREFIX '$SHUFFLE_PREFIX' is not a number"
  "$SHUFFLER" ${DATA_DIR:+--data_dir="$DATA_DIR"} --out_dir="$BENCH_OUT/data" \
    --seed="$SHUFFLE_SEED" --prefix="${SHUFFLE_PREFIX:-0}" || die "shuffle_dataset failed"
  SHUFFLED_ITEMS="training images and labels"
  [[ ${SHUFFLE_PREFIX:-0} != 0 ]] && SHUFFLED_ITEMS="the first $SHUFFLE_PREFIX training images and labels"
  note "Data: $SHUFFLED_ITEMS permuted together with seed $SHUFFLE_SEED" \
       "(shuffle_dataset; from ${DATA_DIR:-the default data folder})"
  DATA_DIR=$BENCH_OUT/data
fi

DEVICE=$("$TRAINER" --print_device) || die "trainer --print_device failed"
GPU_NAME=cpu
if [[ "$DEVICE" == cuda* ]]; then
  GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
  GPU_NAME=${GPU_NAME:-cuda}
  STEPS=${STEPS:-16000}
  PRETRAIN_STEPS=${PRETRAIN_STEPS:-4000}
  DEFAULT_FLAGS=(--steps="$STEPS" --pretrain_steps="$PRETRAIN_STEPS"
                 --eval_every=$(( STEPS / 4 > 0 ? STEPS / 4 : 1 )) --log_every=200)
else
  STEPS=${STEPS:-60}
  PRETRAIN_STEPS=${PRETRAIN_STEPS:-20}
  fewlabels_cpu_thread_waiting  # GOMP_SPINCOUNT=1000 unless set (build_lib.sh)
  DEFAULT_FLAGS=(--train_limit=2000 --width=8 --batch=8 --mu=2 --steps="$STEPS"
                 --pretrain_steps="$PRETRAIN_STEPS" --pretrain_batch=32
                 --eval_every=0 --log_every=10)
fi
DEFAULT_FLAGS+=(--checkpoint_every=0 --pretrain_cache="$BENCH_OUT/pretrain-cache")
ORACLE_DATA=()
if [[ -n "${DATA_DIR:-}" ]]; then
  DEFAULT_FLAGS+=(--data_dir="$DATA_DIR")
  ORACLE_DATA=(--train_labels="$DATA_DIR/train-labels-idx1-ubyte.gz"
               --test_labels="$DATA_DIR/t10k-labels-idx1-ubyte.gz")
fi
# schedule_for BUDGET: SCHEDULE with each "N%" item as N % of BUDGET (the
# last item takes what is left), e.g. "40%,30%,30%" -> 40,30,30 for 100.
schedule_for() {
  local budget=$1 out=() item n left=$1 i=0
  IFS=, read -ra items <<<"$SCHEDULE"
  for item in "${items[@]}"; do
    i=$(( i + 1 ))
    if [[ $item == *% ]]; then
      n=$(( budget * ${item%\%} / 100 ))
      (( i == ${#items[@]} )) && n=$left
    else
      n=$item
    fi
    left=$(( left - n )); out+=("$n")
  done
  (IFS=,; echo "${out[*]}")
}
read -ra USER_FLAGS <<<"${TRAINER_FLAGS:-}"
read -ra FIRST_FLAGS <<<"${FIRST_EXTRA:-}"
stamp "device $DEVICE ($GPU_NAME); budgets [$BUDGETS] seeds [$SEEDS] parallel $PARALLEL, $OMP_NUM_THREADS CPU threads each"
stamp "flags of every run: ${DEFAULT_FLAGS[*]} ${USER_FLAGS[*]}"

# The oracle takes experiment names of at most 128 characters, and a run's
# experiment is "bench-<run>" ("bench-<run>-eager" for its retry), with
# <run> = b<budget>-<variant id>-s<seed>. A variant id too long to fit
# beside the longest budget and seed keeps its first characters and ends in
# 8 hex digits of a hash of the whole id (the same for all its runs,
# different for different ids); runs.tsv and command.txt keep the flags.
longest() { local m=0 w; for w in "$@"; do (( ${#w} > m )) && m=${#w}; done; echo "$m"; }
# 128 less "bench-", "-eager" and the 4 characters of "b", "-" and "-s":
MAX_VID=$(( 128 - 6 - 6 - 4 - $(longest $BUDGETS) - $(longest $SEEDS) ))
(( MAX_VID >= 32 )) || die "budgets or seeds too long for the oracle's 128-character experiment names"

# The plan. Per run: budget, seed, strategy, objective, pretrain, extra flags.
declare -A R_BUDGET=() R_SEED=() R_STRATEGY=() R_OBJECTIVE=() R_PRETRAIN=() R_EXTRA=() R_KEY=()
declare -A KEY_OWNER=() FINISHED_RUN=() PID_RUN=() RETRY_OF=()
ORDER=()
for budget in $BUDGETS; do
  [[ $budget =~ ^[0-9]+$ ]] || die "budget '$budget' is not a number"
  for variant in $VARIANTS; do
    [[ $variant =~ ^(grpc://[^:]+:[0-9]+|[^:]+):([^:]+):([^:]+)(:(.*))?$ ]] ||
      die "variant '$variant' is not strategy:objective:pretrain[:FLAG...]"
    strategy=${BASH_REMATCH[1]} objective=${BASH_REMATCH[2]} pretrain=${BASH_REMATCH[3]}
    extra=${BASH_REMATCH[5]//:/ }
    # A name of letters, digits, '.', '_' and '-' only: the flags without
    # their dashes, e.g. "typiclust-freematch-simclr-restart_rounds".
    vid=$strategy-$objective-$pretrain
    for flag in $extra; do vid+=-${flag##*(-)}; done
    vid=$(sed -e 's/[^A-Za-z0-9._-]\+/_/g' <<<"$vid")
    if (( ${#vid} > MAX_VID )); then
      vid=${vid:0:MAX_VID-9}-$(printf '%s' "$vid" | sha1sum | cut -c1-8)
    fi
    for seed in $SEEDS; do
      run=b$budget-$vid-s$seed
      [[ -n "${R_BUDGET[$run]:-}" ]] && die "run $run twice in the plan"
      R_BUDGET[$run]=$budget R_SEED[$run]=$seed R_STRATEGY[$run]=$strategy
      R_OBJECTIVE[$run]=$objective R_PRETRAIN[$run]=$pretrain R_EXTRA[$run]=$extra
      key=""
      if [[ $pretrain != none ]]; then
        # Runs with the same key share one pretrained checkpoint: the seed,
        # the method and the variant's flags that change the trainer's cache
        # key (pretraining, model, pool; TRAINER_FLAGS are the same for all).
        key="$seed|$pretrain|$(tr ' ' '\n' <<<"$extra" |
          grep -E -- '^--(pretrain|arch|width|train_limit)' | sort | tr '\n' ' ')"
        [[ -z "${KEY_OWNER[$key]:-}" ]] && KEY_OWNER[$key]=$run
      fi
      R_KEY[$run]=$key
      ORDER+=("$run")
    done
  done
done
# pretrains RUN: true when RUN pretrains the checkpoint of its key (the
# key's first run, or the retry that took over from it).
pretrains() { [[ -n "${R_KEY[$1]}" && "${KEY_OWNER[${R_KEY[$1]}]}" == "$1" ]]; }
# The queue: each key's first run first, then the rest in plan order.
QUEUE=()
for run in "${ORDER[@]}"; do
  pretrains "$run" && QUEUE+=("$run")
done
for run in "${ORDER[@]}"; do
  pretrains "$run" || QUEUE+=("$run")
done
TOTAL=${#QUEUE[@]}
stamp "$TOTAL runs planned"
if [[ "${DRY_RUN:-0}" == 1 ]]; then
  for run in "${QUEUE[@]}"; do
    checkpoint=none
    if pretrains "$run"; then
      checkpoint=own
    elif [[ -n "${R_KEY[$run]}" ]]; then
      checkpoint=${KEY_OWNER[${R_KEY[$run]}]}
    fi
    echo "plan: $run budget ${R_BUDGET[$run]} seed ${R_SEED[$run]} strategy ${R_STRATEGY[$run]}" \
         "objective ${R_OBJECTIVE[$run]} pretrain ${R_PRETRAIN[$run]} flags [${R_EXTRA[$run]}]" \
         "checkpoint $checkpoint"
  done
  stamp "dry run: nothing started"
  exit 0
fi
printf 'run\tbudget\tseed\tstrategy\tobjective\tpretrain\textra\texperiment\n' > "$BENCH_OUT/runs.tsv"

ORACLE_PID=""
MPS_ON=0
cleanup() {
  local p
  for p in "${!PID_RUN[@]}"; do kill -TERM "$p" 2>/dev/null; done
  [[ -n "$ORACLE_PID" ]] && kill -TERM "$ORACLE_PID" 2>/dev/null
  # Only these: a bare `wait` would also wait for the log's tee (forever).
  local pids=(${ORACLE_PID:+"$ORACLE_PID"} "${!PID_RUN[@]}")
  (( ${#pids[@]} == 0 )) || wait "${pids[@]}" 2>/dev/null
  if (( MPS_ON )); then echo quit | nvidia-cuda-mps-control >/dev/null 2>&1; fi
}
trap cleanup EXIT
trap 'stamp "interrupted"; exit 130' INT TERM

if [[ "${MPS:-0}" == 1 ]]; then
  if [[ "$DEVICE" != cuda* ]]; then
    stamp "MPS=1 ignored: no CUDA"
  elif ! command -v nvidia-cuda-mps-control >/dev/null; then
    note "MPS: requested but not on this machine (no nvidia-cuda-mps-control)"
  else
    export CUDA_MPS_PIPE_DIRECTORY=$BENCH_OUT/mps/pipe CUDA_MPS_LOG_DIRECTORY=$BENCH_OUT/mps/log
    mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
    if nvidia-cuda-mps-control -d; then
      MPS_ON=1
      # A client must get a CUDA device through the daemon; else run without.
      if [[ "$("$TRAINER" --print_device 2>/dev/null)" == cuda* ]]; then
        note "MPS: on (the trainers shared the GPU through the CUDA Multi-Process Service)"
      else
        echo quit | nvidia-cuda-mps-control >/dev/null 2>&1
        MPS_ON=0
        unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
        note "MPS: started, but a trainer found no CUDA device through it; stopped, trainers time-sliced"
      fi
    else
      unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
      note "MPS: requested, but nvidia-cuda-mps-control -d failed; trainers time-sliced"
    fi
  fi
fi

DB=$BENCH_OUT/oracle.db
"$ORACLE" --host=127.0.0.1 --port=0 --port_file="$BENCH_OUT/oracle.port" --db="$DB" \
  "${ORACLE_DATA[@]}" > "$BENCH_OUT/oracle.log" 2>&1 &
ORACLE_PID=$!
for _ in $(seq 300); do
  [[ -s $BENCH_OUT/oracle.port ]] && break
  kill -0 "$ORACLE_PID" 2>/dev/null || { cat "$BENCH_OUT/oracle.log"; die "oracle_server did not start"; }
  sleep 0.1
done
[[ -s $BENCH_OUT/oracle.port ]] || die "oracle_server wrote no port"
PORT=$(cat "$BENCH_OUT/oracle.port")
stamp "oracle_server on 127.0.0.1:$PORT, database $DB"

STARTED=0
# launch RUN [FLAGS...]: starts RUN's trainer in the background.
launch() {
  local run=$1; shift
  local flags=() extra
  read -ra extra <<<"${R_EXTRA[$run]}"
  [[ -n "${SCHEDULE:-}" ]] && flags+=(--schedule="$(schedule_for "${R_BUDGET[$run]}")")
  if [[ -n "${SWEEP_SECONDS:-}" ]]; then
    # An equal part of the time left for each run not started yet (this one
    # included): they fill ceil(waiting / PARALLEL) more waves. Given all of
    # it, the first runs would train their full steps and squeeze (or
    # crowd out) the last ones; shared, runs of equal cost fit to equal
    # steps and stay comparable. A key's first run (queued first) pretrains
    # inside its limit, so it gets all the time left, and the runs after
    # it share what its pretraining leaves.
    local left=$(( SWEEP_SECONDS - ($(date +%s) - T0) - 45 ))
    local share=$left
    if ! pretrains "$run"; then
      local waiting=$(( TOTAL - STARTED ))
      share=$(( left / ((waiting + PARALLEL - 1) / PARALLEL) ))
    fi
    flags+=(--max_train_seconds=$(( share > 30 ? share : 30 )))
  fi
  mkdir -p "$BENCH_OUT/$run"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "${R_BUDGET[$run]}" "${R_SEED[$run]}" \
    "${R_STRATEGY[$run]}" "${R_OBJECTIVE[$run]}" "${R_PRETRAIN[$run]}" "${R_EXTRA[$run]}" \
    "bench-$run" >> "$BENCH_OUT/runs.tsv"
  local cmd=("$TRAINER" --oracle="127.0.0.1:$PORT" --experiment="bench-$run"
    --budget="${R_BUDGET[$run]}" --seed="${R_SEED[$run]}"
    --strategy="${R_STRATEGY[$run]}" --objective="${R_OBJECTIVE[$run]}"
    --pretrain="${R_PRETRAIN[$run]}" --out_dir="$BENCH_OUT/$run"
    "${DEFAULT_FLAGS[@]}" "${USER_FLAGS[@]}" "${extra[@]}" "${flags[@]}" "$@")
  printf '%q ' "${cmd[@]}" > "$BENCH_OUT/$run/command.txt"
  echo >> "$BENCH_OUT/$run/command.txt"
  "${cmd[@]}" > "$BENCH_OUT/$run/trainer.log" 2>&1 &
  PID_RUN[$!]=$run
  STARTED=$(( STARTED + 1 ))
  stamp "start $run ($STARTED/$TOTAL, ${#PID_RUN[@]} running)"
}

# ready RUN: whether RUN may start (its key's first run has finished).
ready() {
  local key=${R_KEY[$1]} owner
  [[ -z "$key" ]] && return 0
  owner=${KEY_OWNER[$key]}
  [[ "$owner" == "$1" || -n "${FINISHED_RUN[$owner]:-}" ]]
}

# finished RUN RC: records the result, retries a failed run once.
finished() {
  local run=$1 rc=$2
  echo "$rc" > "$BENCH_OUT/$run/rc"
  FINISHED_RUN[$run]=1
  if [[ $rc -eq 0 && -f $BENCH_OUT/$run/report.json ]]; then
    stamp "done $run: $("$PY" - "$BENCH_OUT/$run/report.json" <<'PY' 2>&1
import json, sys
r = json.load(open(sys.argv[1]))
p = r.get("pretrain", {})
pre = "none" if p.get("method", "none") == "none" else (
    "reused" if p.get("reused") else "trained %d steps" % p.get("steps", 0))
print("accuracy %.2f %%, %d labels (report), %d steps at %.1f/s, %.0f s, pretrain %s, %s"
      % (100 * r["accuracy"], r["labels_spent"], r["steps"], r["steps_per_s"],
         r["wall_time_s"], pre, r["device"]))
PY
)"
    return
  fi
  stamp "FAILED $run (exit $rc): $(tail -2 "$BENCH_OUT/$run/trainer.log" | tr '\n' ' ')"
  if [[ "$RETRY" == 1 && -z "${RETRY_OF[$run]:-}" ]]; then
    local again=$run-eager
    R_BUDGET[$again]=${R_BUDGET[$run]} R_SEED[$again]=${R_SEED[$run]}
    R_STRATEGY[$again]=${R_STRATEGY[$run]} R_OBJECTIVE[$again]=${R_OBJECTIVE[$run]}
    R_PRETRAIN[$again]=${R_PRETRAIN[$run]} R_EXTRA[$again]=${R_EXTRA[$run]}
    R_KEY[$again]=${R_KEY[$run]} RETRY_OF[$again]=$run
    # The retry takes over the pretraining for the runs waiting on this one.
    if pretrains "$run"; then
      KEY_OWNER[${R_KEY[$run]}]=$again
    fi
    TOTAL=$(( TOTAL + 1 ))
    QUEUE=("$again" "${QUEUE[@]}")
    stamp "retrying $run as $again (experiment bench-$again) with --cuda_graph=false --bf16=false"
  fi
}

while (( ${#QUEUE[@]} > 0 || ${#PID_RUN[@]} > 0 )); do
  rest=()
  for run in "${QUEUE[@]}"; do
    if (( ${#PID_RUN[@]} >= PARALLEL )) || ! ready "$run"; then
      rest+=("$run"); continue
    fi
    if [[ -n "${SWEEP_SECONDS:-}" ]] &&
       (( SWEEP_SECONDS - ($(date +%s) - T0) < 60 )); then
      stamp "skipped $run: less than 60 s left before SWEEP_SECONDS=$SWEEP_SECONDS"
      echo "$run" >> "$BENCH_OUT/skipped.txt"
      FINISHED_RUN[$run]=1
      continue
    fi
    if [[ -n "${RETRY_OF[$run]:-}" ]]; then
      launch "$run" --cuda_graph=false --bf16=false
    else
      launch "$run" "${FIRST_FLAGS[@]}"
    fi
  done
  if (( ${#PID_RUN[@]} == 0 )); then
    # Nothing running: every queued run waits on one that never ran.
    (( ${#rest[@]} == 0 )) || die "runs wait on nothing: ${rest[*]}"
    QUEUE=(); continue
  fi
  QUEUE=("${rest[@]}")
  wait -n -p done_pid "${!PID_RUN[@]}"
  rc=$?
  [[ -n "${done_pid:-}" ]] || continue
  run=${PID_RUN[$done_pid]}
  unset "PID_RUN[$done_pid]"
  finished "$run" "$rc"
done
stamp "all runs finished"

kill -TERM "$ORACLE_PID" 2>/dev/null
wait "$ORACLE_PID" 2>/dev/null
ORACLE_PID=""
"$ORACLECTL" summary --db="$DB" > "$BENCH_OUT/summary.txt" 2>&1
"$ORACLECTL" verify --db="$DB" > "$BENCH_OUT/verify.txt" 2>&1
VERIFY_RC=$?
echo "== oraclectl summary"; cat "$BENCH_OUT/summary.txt"
echo "== oraclectl verify"; cat "$BENCH_OUT/verify.txt"
echo "== $BENCH_OUT/table.md"
STATUS=0
"$PY" scripts/bench_table.py "$BENCH_OUT" --gpu_name="$GPU_NAME"
case $? in
  0) ;;
  3) stamp "some runs have no result (see the table's footer)"; STATUS=1 ;;
  *) stamp "bench_table.py failed"; STATUS=1 ;;
esac
echo
[[ $VERIFY_RC -eq 0 ]] || { stamp "the audit log did not verify"; STATUS=1; }
[[ -s $BENCH_OUT/skipped.txt ]] &&
  { stamp "$(wc -l < "$BENCH_OUT/skipped.txt") runs skipped at the deadline (skipped.txt)"; STATUS=1; }
if [[ -n "${TARBALL:-}" ]]; then
  mkdir -p "$(dirname "$TARBALL")"
  tar czf "$TARBALL" -C "$(dirname "$BENCH_OUT")" --exclude='*.pt' \
    --exclude="$(basename "$BENCH_OUT")/data" --exclude="$(basename "$BENCH_OUT")/mps/pipe" \
    --exclude="$(basename "$TARBALL")" "$(basename "$BENCH_OUT")" ||
    { stamp "packing $TARBALL failed"; STATUS=1; }
  stamp "packed $TARBALL ($(du -h "$TARBALL" | cut -f1))"
fi
stamp "done (status $STATUS); results in $BENCH_OUT"
exit $STATUS
