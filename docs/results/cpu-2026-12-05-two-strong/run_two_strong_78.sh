#!/usr/bin/env bash
# Seeds 7-8 of the reference recipe with CoMatch's two strong views.
set -u
cd /work/exp/snap
FLAGS="--steps=1000 --train_limit=5000 --width=16 --batch=16 --mu=2 --eval_every=0 --ema=0.99 \
  --log_every=50 --pretrain_batch=128 --pretrain_steps=2000 --pretrain_cache=/work/exp/cache"
BENCH_OUT=/work/exp/two_strong_78 SKIP_BUILD=1 BUILD_DIR=/work/exp/bld BUDGETS=100 SEEDS="7 8" PARALLEL=2 \
  TRAINER_FLAGS="$FLAGS" \
  VARIANTS=typiclust:freematch:simclr:--steps=4000:--lambda_c=1:--contrast_memory=240:--contrast_two_strong \
  nice scripts/bench_labels.sh
