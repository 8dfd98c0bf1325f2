#!/bin/bash
# The label curve continued: 500 and 1,000 labels on seed 0 (run_r.sh's cache).
cd /work/snap
FLAGS="--steps=1000 --train_limit=5000 --width=16 --batch=16 --mu=2 --eval_every=0 --ema=0.99 --log_every=50 --pretrain_batch=128 --pretrain_steps=2000 --pretrain_cache=/work/exp/cache"
V="typiclust:freematch:simclr:--steps=4000:--lambda_c=1:--contrast_memory=240"
BENCH_OUT=/work/exp/r-curve-big SKIP_BUILD=1 BUILD_DIR=/work/bench-bin BUDGETS="500 1000" SEEDS="0" PARALLEL=2 \
  TRAINER_FLAGS="$FLAGS" VARIANTS="$V" nice scripts/bench_labels.sh
