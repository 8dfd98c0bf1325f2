#!/usr/bin/env bash
# The weak views' shift fill: reflections of the image (the default) against
# background (--weak_fill=zeros, FixMatch's and USB's padding), on the CPU's
# recipe (labelled mixup, the 0.05-0.95 enhance range), 4,000 steps, seeds
# 3-8, 100 labels. Runs the zeros arm only: the reflect arm is the recipe
# itself, which the two sweeps before it (cpu-2026-12-07-enhance-range's
# 0.05-0.95 arm, cpu-2026-12-07-grayscale-ops' "all" arm) reproduced bit for
# bit on the same SimCLR checkpoints, so its six results are known. The six
# SimCLR checkpoints come from CACHE (same pretraining flags, same keys),
# two trainers at a time with one thread each.
#   CACHE=/tmp/enh/cache bash docs/results/cpu-2026-12-07-weak-fill/run.sh /tmp/fill
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
ZEROS=$MIX:--weak_fill=zeros
env SKIP_BUILD=1 BUILD_DIR="$BUILD" BUDGETS=100 SEEDS="3 4 5 6 7 8" PARALLEL=2 \
  TRAINER_FLAGS="$FLAGS" BENCH_OUT="$EXP/arms" VARIANTS="$ZEROS" \
  scripts/bench_labels.sh > "$EXP/arms.log" 2>&1
echo "zeros sweep: exit $?"
