#!/usr/bin/env bash
# The reference recipe with CoMatch's two strong views, as run on 2026-12-05:
#   SEEDS="3 4 5" SWEEP=two_strong    bash run_two_strong.sh   # -> sweep/ (seed 5 stopped)
#   SEEDS="5 6"   SWEEP=two_strong_56 bash run_two_strong.sh   # -> seeds-5-6/
#   SEEDS="7 8"   SWEEP=two_strong_78 bash run_two_strong.sh   # -> seeds-7-8/
set -u
cd /work/exp/snap   # a worktree of c394e99 (the scripts); binaries of 6788f27 in /work/exp/bld
FLAGS="--steps=1000 --train_limit=5000 --width=16 --batch=16 --mu=2 --eval_every=0 --ema=0.99 \
  --log_every=50 --pretrain_batch=128 --pretrain_steps=2000 --pretrain_cache=/work/exp/cache"
BENCH_OUT=/work/exp/${SWEEP:?} SKIP_BUILD=1 BUILD_DIR=/work/exp/bld BUDGETS=100 SEEDS="${SEEDS:?}" PARALLEL=2 \
  TRAINER_FLAGS="$FLAGS" \
  VARIANTS=typiclust:freematch:simclr:--steps=4000:--lambda_c=1:--contrast_memory=240:--contrast_two_strong \
  nice scripts/bench_labels.sh
