#!/usr/bin/env bash
# The strong views' enhance-factor range: AutoAugment's 0.1-1.9 (the
# default) against the FixMatch paper's and USB's 0.05-0.95, on the CPU's
# current recipe (labelled mixup) at 4,000 steps, seeds 3-8, 100 labels.
# First one short sweep makes the six seeds' SimCLR checkpoints (two seeds
# at a time, 10 training steps each), then one sweep runs both arms of every
# seed on them, two trainers at a time with one thread each.
#   bash docs/results/cpu-2026-12-07-enhance-range/run.sh /tmp/enh
# Run from the repository root; BUILD_DIR holds the binaries (a copy, so a
# rebuild of build/ during the sweep cannot swap them).
set -u
EXP=${1:?experiment folder}
BUILD=${BUILD_DIR:-/tmp/enhbuild}
mkdir -p "$EXP"
FLAGS="--steps=1000 --train_limit=5000 --width=16 --batch=16 --mu=2 --eval_every=0 --ema=0.99 \
  --log_every=50 --pretrain_batch=128 --pretrain_steps=2000 --pretrain_cache=$EXP/cache"
# When these runs were made (trainer of 3c73dce) 0.1-1.9 was the default and
# the first arm ran without the two flags (its folder names say so); since
# 2b544f0 the default is 0.05-0.95, so the first arm now names its range.
MIX=typiclust:freematch:simclr:--steps=4000:--lambda_c=1:--contrast_memory=240:--mixup_alpha=0.75
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
