#!/usr/bin/env bash
# The label sweep on the lent GPU machine in one device call
# (docs/GPU_RUNS.md): scripts/bench_labels.sh, which sets up the machine
# (scripts/gpu_env.sh: the carried .gpu bundle, the Python torch's CUDA
# LibTorch), builds, runs the sweep against one oracle and writes its table,
# with defaults sized for the lease; then copies the results into $OUT.
#
#   scripts/gpu_run.sh                                  # device machine, .gpu carried
#   BUDGETS=100 SEEDS="0 1 2" STEPS=8000 scripts/gpu_run.sh
#
# PLAN picks what to run (variables set by hand still win):
#   sweep     (default) bench_labels.sh's budgets x seeds x variants
#   headline  the target itself: 100 labels, seeds 0 1 2, the best recipe
#             known (the default combination with CoMatch's graph contrast
#             and its memory of five steps of images, and mixup of the
#             labelled batch, alpha 0.75), as many steps as the
#             call holds (STEPS 16000, the reference FixMatch's length;
#             the deadline fits them)
#   ablation  issue 8's ablation at 100 labels, seeds 0 1: the default
#             combination typiclust:freematch:simclr, then one change each:
#             no pretraining, random labels, class-balanced typiclust,
#             FixMatch's fixed threshold, round restarts, the separate no-grad
#             weak forward, test-time flip, twice the SimCLR steps,
#             CoMatch's graph contrast alone and with its memory of five
#             steps of images, and that with half of its STEPS moved into
#             a distillation stage (--distill_steps; the same steps in
#             all), and pseudo-labels averaged over two weak views
#             (--pseudo_label_views=2), and mixup of the labelled batch
#             (--mixup_alpha=0.75) (28 runs; BN re-estimation is in the
#             calibration call;
#             distribution alignment, -0.8 on the CPU, left out:
#             VARIANTS=... to run it)
#   capacity  the default combination at 100 labels, seeds 0 1, with the
#             default model (cnn, width 64), WideResNet-28-2 and the cnn at
#             width 96 (each pretrains its own SimCLR checkpoint; a
#             WideResNet FixMatch step took 2.2x the default's on the H200,
#             and width 96 has 2.25x its multiply-adds, so the plan has 6
#             runs)
#   order     the default combination at 100 labels, seeds 0 1, on the data
#             set shuffled with SHUFFLE_SEED (default 1): compare with a sweep
#             on the original order
#
# With CUDA the defaults are SWEEP_SECONDS=480 (the whole call, build
# included, ends by then: trainers fit their steps to their share of it,
# --max_train_seconds), PARALLEL=6, STEPS=3000 (2000 for PLAN=ablation:
# its 28 runs at 3000 would need about 50 % more than the 480 s at the
# estimated 180 steps/s; 16000 for PLAN=headline), PRETRAIN_STEPS=4000;
# every bench_labels.sh variable (BUDGETS, SEEDS, VARIANTS, TRAINER_FLAGS,
# ...) passes through. Without CUDA
# bench_labels.sh's tiny CPU sizes apply (tests run it so, SKIP_BUILD=1).
#
# Writes to OUT (default $OUT, else out/gpu), at most 5 files, as the device
# tool returns at most 8: table.md, table.csv, runs.csv, sweep.log and
# bench.tar.gz (the whole sweep folder without checkpoints: reports, logs,
# the oracle's database). The sweep folder itself is BENCH_OUT (default a
# fresh /tmp/fewlabels-bench-<pid>).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-out/gpu}
mkdir -p "$OUT" || exit 1
OUT=$(cd "$OUT" && pwd)
export BENCH_OUT=${BENCH_OUT:-/tmp/fewlabels-bench-$$}
# shellcheck source=build_lib.sh
source scripts/build_lib.sh
if fewlabels_cuda_python_torch >/dev/null; then
  export SWEEP_SECONDS=${SWEEP_SECONDS:-480} PARALLEL=${PARALLEL:-6}
  # SimCLR: 4,000 steps of 256 images are 17 epochs of the pool (2,000 x
  # 128 on the CPU's 5,000 images, 51 epochs, beat 300 steps by 2.8 points).
  default_steps=3000
  [[ ${PLAN:-sweep} == ablation ]] && default_steps=2000
  [[ ${PLAN:-sweep} == headline ]] && default_steps=16000
  export STEPS=${STEPS:-$default_steps} PRETRAIN_STEPS=${PRETRAIN_STEPS:-4000}
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch;print('torch', torch.__version__, 'cuda', torch.version.cuda)"
else
  export STEPS=${STEPS:-60}  # bench_labels.sh's CPU default
fi
BEST=typiclust:freematch:simclr
case ${PLAN:=sweep} in
  sweep) ;;
  headline)
    export BUDGETS=${BUDGETS:-100} SEEDS=${SEEDS:-"0 1 2"}
    export VARIANTS=${VARIANTS:-"$BEST:--lambda_c=1:--contrast_memory=2560:--mixup_alpha=0.75"} ;;
  ablation)
    export BUDGETS=${BUDGETS:-100} SEEDS=${SEEDS:-"0 1"}
    export VARIANTS=${VARIANTS:-"$BEST typiclust:freematch:none random:freematch:simclr \
typiclust_balanced:freematch:simclr typiclust:fixmatch:simclr $BEST:--restart_rounds \
$BEST:--weak_forward=separate $BEST:--eval_flip $BEST:--pretrain_steps=8000 \
$BEST:--lambda_c=1 $BEST:--lambda_c=1:--contrast_memory=2560 \
$BEST:--lambda_c=1:--contrast_memory=2560:--steps=$((STEPS / 2)):--distill_steps=$((STEPS / 2)) \
$BEST:--pseudo_label_views=2 $BEST:--mixup_alpha=0.75"} ;;
  capacity)
    export BUDGETS=${BUDGETS:-100} SEEDS=${SEEDS:-"0 1"}
    export VARIANTS=${VARIANTS:-"$BEST $BEST:--arch=wrn28_2 $BEST:--width=96"} ;;
  order)
    export BUDGETS=${BUDGETS:-100} SEEDS=${SEEDS:-"0 1"} VARIANTS=${VARIANTS:-$BEST}
    export SHUFFLE_SEED=${SHUFFLE_SEED:-1} ;;
  *) echo "gpu_run: PLAN=$PLAN is not sweep, headline, ablation, capacity or order" >&2; exit 2 ;;
esac
echo "gpu_run: plan $PLAN"
TARBALL=$OUT/bench.tar.gz scripts/bench_labels.sh
status=$?
for f in table.md table.csv runs.csv sweep.log; do
  [[ -f $BENCH_OUT/$f ]] && cp "$BENCH_OUT/$f" "$OUT/"
done
echo "gpu_run: exit $status; results in $OUT"
exit $status
