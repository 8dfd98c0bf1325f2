#!/usr/bin/env bash
# RandAugment's op list: all 13 ops (the default) against USB's list without
# colour ops (RandAugment's exclude_color_aug, which USB's loader for the
# 28x28 MedMNIST sets uses, there with 3 ops): without autocontrast,
# contrast, posterize and solarize (USB's Color has no counterpart here), so
# 2 of 9 ops per strong view. On the CPU's recipe (labelled
# mixup, the 0.05-0.95 enhance range), 4,000 steps, seeds 3-8, 100 labels.
# The six SimCLR checkpoints are those of the enhance-range experiments
# (CACHE, same pretraining flags, so the same cache keys); where CACHE lacks
# them, the first sweep makes them (two seeds at a time, 10 training steps
# each) and otherwise only reuses them. Then one sweep runs both arms of
# every seed, two trainers at a time with one thread each.
#   CACHE=/tmp/enh/cache bash docs/results/cpu-2026-12-07-grayscale-ops/run.sh /tmp/gray
# Run from the repository root; BUILD_DIR holds the binaries (a copy, so a
# rebuild of build/ during the sweep cannot swap them).
set -u
EXP=${1:?experiment folder}
BUILD=${BUILD_DIR:-/tmp/graybuild}
CACHE=${CACHE:-$EXP/cache}
mkdir -p "$EXP"
FLAGS="--steps=1000 --train_limit=5000 --width=16 --batch=16 --mu=2 --eval_every=0 --ema=0.99 \
  --log_every=50 --pretrain_batch=128 --pretrain_steps=2000 --pretrain_cache=$CACHE"
MIX=typiclust:freematch:simclr:--steps=4000:--lambda_c=1:--contrast_memory=240:--mixup_alpha=0.75
ALL=$MIX:--strong_op_list=all
GRAY=$MIX:--strong_op_list=identity,equalize,brightness,sharpness,rotate,shear_x,shear_y,translate_x,translate_y
common=(SKIP_BUILD=1 BUILD_DIR="$BUILD" BUDGETS=100 SEEDS="3 4 5 6 7 8" PARALLEL=2
        TRAINER_FLAGS="$FLAGS")
env "${common[@]}" BENCH_OUT="$EXP/pretrain" \
  VARIANTS=typiclust:freematch:simclr:--steps=10 \
  scripts/bench_labels.sh > "$EXP/pretrain.log" 2>&1
echo "pretraining sweep: exit $?"
env "${common[@]}" BENCH_OUT="$EXP/arms" VARIANTS="$ALL $GRAY" \
  scripts/bench_labels.sh > "$EXP/arms.log" 2>&1
echo "arms sweep: exit $?"
