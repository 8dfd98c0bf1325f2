#!/usr/bin/env bash
# CoMatch's graph contrast without its memory smoothing (no
# --contrast_memory: each image's pseudo-label is its own weak view's) on the
# CPU's recipe (labelled mixup) at 8,000 steps, seeds 3-8, 100 labels. The
# contrast with its memory is worth about 1.5 points at this length
# (cpu-2026-12-07-no-contrast-8k); how much of that is the memory? Runs this
# arm only: the recipe's own arm on the same SimCLR checkpoints is the
# 0.05-0.95 arm of cpu-2026-12-07-enhance-range-8k (now the defaults), and
# CPU runs repeat exactly on the same checkpoints. The checkpoints come from
# CACHE (same pretraining flags, same keys), two trainers at a time with one
# thread each.
#   CACHE=/tmp/enh/cache bash docs/results/cpu-2026-12-08-contrast-memory-8k/run.sh /tmp/nomem
# Run from the repository root; BUILD_DIR holds the binaries (a copy, so a
# rebuild of build/ during the sweep cannot swap them).
set -u
EXP=${1:?experiment folder}
BUILD=${BUILD_DIR:-/tmp/graybuild}
CACHE=${CACHE:-$EXP/cache}
mkdir -p "$EXP"
FLAGS="--steps=1000 --train_limit=5000 --width=16 --batch=16 --mu=2 --eval_every=0 --ema=0.99 \
  --log_every=50 --pretrain_batch=128 --pretrain_steps=2000 --pretrain_cache=$CACHE"
ARM=typiclust:freematch:simclr:--steps=8000:--lambda_c=1:--mixup_alpha=0.75:--strong_enhance_min=0.05:--strong_enhance_max=0.95
env SKIP_BUILD=1 BUILD_DIR="$BUILD" BUDGETS=100 SEEDS="3 4 5 6 7 8" PARALLEL=2 \
  TRAINER_FLAGS="$FLAGS" BENCH_OUT="$EXP/arms" VARIANTS="$ARM" \
  scripts/bench_labels.sh > "$EXP/arms.log" 2>&1
echo "contrast-memory sweep: exit $?"
