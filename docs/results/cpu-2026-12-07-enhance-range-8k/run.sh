#!/usr/bin/env bash
# RandAugment's enhance range at 8,000 steps: AutoAugment's 0.1-1.9 against
# the FixMatch paper's and USB's 0.05-0.95 (the default since 2b544f0), on the
# CPU's recipe (labelled mixup), seeds 3-8, 100 labels. The 4,000-step
# comparison (docs/results/cpu-2026-12-07-enhance-range) found +0.70; labelled
# mixup's gain shrank with length, so this asks whether the range's does too.
# The six SimCLR checkpoints are those of the 4,000-step experiment
# (CACHE, same pretraining flags, so the same cache keys); where CACHE lacks
# them, the first sweep makes them (two seeds at a time, 10 training steps
# each) and otherwise only reuses them. Then one sweep runs both arms of
# every seed, two trainers at a time with one thread each.
#   CACHE=/tmp/enh/cache bash docs/results/cpu-2026-12-07-enhance-range-8k/run.sh /tmp/enh8
# Run from the repository root; BUILD_DIR holds the binaries (a copy, so a
# rebuild of build/ during the sweep cannot swap them).
set -u
EXP=${1:?experiment folder}
BUILD=${BUILD_DIR:-/tmp/e8build}
CACHE=${CACHE:-$EXP/cache}
mkdir -p "$EXP"
FLAGS="--steps=1000 --train_limit=5000 --width=16 --batch=16 --mu=2 --eval_every=0 --ema=0.99 \
  --log_every=50 --pretrain_batch=128 --pretrain_steps=2000 --pretrain_cache=$CACHE"
MIX=typiclust:freematch:simclr:--steps=8000:--lambda_c=1:--contrast_memory=240:--mixup_alpha=0.75
OLD=$MIX:--strong_enhance_min=0.1:--strong_enhance_max=1.9
PAPER=$MIX:--strong_enhance_min=0.05:--strong_enhance_max=0.95
common=(SKIP_BUILD=1 BUILD_DIR="$BUILD" BUDGETS=100 SEEDS="3 4 5 6 7 8" PARALLEL=2
        TRAINER_FLAGS="$FLAGS")
env "${common[@]}" BENCH_OUT="$EXP/pretrain" \
  VARIANTS=typiclust:freematch:simclr:--steps=10 \
  scripts/bench_labels.sh > "$EXP/pretrain.log" 2>&1
echo "pretraining sweep: exit $?"
env "${common[@]}" BENCH_OUT="$EXP/arms" VARIANTS="$OLD $PAPER" \
  scripts/bench_labels.sh > "$EXP/arms.log" 2>&1
echo "arms sweep: exit $?"
