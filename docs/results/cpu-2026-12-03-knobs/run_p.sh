#!/bin/bash
# More rounds of typiclust picks (the first 40 as in the reference), against
# the 4,000-step reference (82.88 %), three seeds, cached SimCLR:
# 40/20/20/20 and 40/15/15/15/15 instead of 40/30/30.
cd /work/snap7
FLAGS="--steps=1000 --train_limit=5000 --width=16 --batch=16 --mu=2 --eval_every=0 --ema=0.99 --log_every=50 --pretrain_batch=128 --pretrain_steps=2000 --pretrain_cache=/work/exp/cache"
BENCH_OUT=/work/exp/p-rounds SKIP_BUILD=1 BUILD_DIR=/work/bench-bin10 BUDGETS=100 SEEDS="0 1 2" PARALLEL=2 \
  TRAINER_FLAGS="$FLAGS" VARIANTS="typiclust:freematch:simclr:--steps=4000:--lambda_c=1:--contrast_memory=240:--schedule=40,20,20,20 typiclust:freematch:simclr:--steps=4000:--lambda_c=1:--contrast_memory=240:--schedule=40,15,15,15,15" \
  nice scripts/bench_labels.sh
