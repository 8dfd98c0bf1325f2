#!/usr/bin/env bash
# End to end at 8,000 steps with labelled mixup on the lr-0.24 SimCLR
# checkpoints of the screen (cached), seeds 3 and 4 side by side, against
# "Labelled mixup at 8,000 steps" (same flags, the lr-0.06 checkpoints).
set -u
BUILD=${BUILD:-/tmp/ci4/build}
EXP=${EXP:-/work/exp}
cd "$(dirname "$BUILD")"
FLAGS="--steps=1000 --train_limit=5000 --width=16 --batch=16 --mu=2 --eval_every=0 --ema=0.99 \
  --log_every=50 --pretrain_batch=128 --pretrain_steps=2000 --pretrain_cache=$EXP/cache"
REF=typiclust:freematch:simclr:--steps=8000:--lambda_c=1:--contrast_memory=240:--eval_every=2000
ARM=$REF:--mixup_alpha=0.75:--pretrain_lr=0.24
for s in 3 4; do
  env OMP_NUM_THREADS=1 SKIP_BUILD=1 BUILD_DIR="$BUILD" BUDGETS=100 PARALLEL=1 \
    TRAINER_FLAGS="$FLAGS" BENCH_OUT="$EXP/sc/e2e_lr024_8k_s$s" SEEDS="$s" VARIANTS="$ARM" \
    nice scripts/bench_labels.sh > "$EXP/sc/e2e_lr024_8k_s$s.log" 2>&1 &
done
wait
