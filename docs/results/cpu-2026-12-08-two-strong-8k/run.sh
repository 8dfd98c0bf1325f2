#!/usr/bin/env bash
# CoMatch's graph contrast between two strong views (--contrast_two_strong,
# USB's CoMatch) instead of the strong view with the weak one, on the CPU's
# recipe (labelled mixup, contrast memory 240) at 8,000 steps, seeds 3-8, 100
# labels. On the reference recipe at 4,000 steps it tied at +0.49 (standard
# error 0.52) for 1.4x the compute; with mixup the contrast and its memory
# are worth 1.5 points at 8,000 steps (cpu-2026-12-07-no-contrast-8k). Runs
# this arm only: the recipe's own arm on the same SimCLR checkpoints is the
# 0.05-0.95 arm of cpu-2026-12-07-enhance-range-8k (now the defaults), and
# CPU runs repeat exactly on the same checkpoints. The checkpoints come from
# CACHE (same pretraining flags, same keys), two trainers at a time with one
# thread each.
#   CACHE=/tmp/enh/cache bash docs/results/cpu-2026-12-08-two-strong-8k/run.sh /tmp/two8
# Run from the repository root; BUILD_DIR holds the binaries (a copy, so a
# rebuild of build/ during the sweep cannot swap them).
set -u
EXP=${1:?experiment folder}
BUILD=${BUILD_DIR:-/tmp/graybuild}
CACHE=${CACHE:-$EXP/cache}
mkdir -p "$EXP"
FLAGS="--steps=1000 --train_limit=5000 --width=16 --batch=16 --mu=2 --eval_every=0 --ema=0.99 \
  --log_every=50 --pretrain_batch=128 --pretrain_steps=2000 --pretrain_cache=$CACHE"
ARM=typiclust:freematch:simclr:--steps=8000:--lambda_c=1:--contrast_memory=240:--contrast_two_strong:--mixup_alpha=0.75:--strong_enhance_min=0.05:--strong_enhance_max=0.95
env SKIP_BUILD=1 BUILD_DIR="$BUILD" BUDGETS=100 SEEDS="3 4 5 6 7 8" PARALLEL=2 \
  TRAINER_FLAGS="$FLAGS" BENCH_OUT="$EXP/arms" VARIANTS="$ARM" \
  scripts/bench_labels.sh > "$EXP/arms.log" 2>&1
echo "two-strong sweep: exit $?"
