#!/bin/bash
# Supervised only on the SimCLR start (no unlabelled loss, no graph contrast,
# no fairness term), 100 and 250 typiclust labels, seed 0: what the
# semi-supervised objective adds at each budget (run_r.sh's cache).
cd /work/snap2
FLAGS="--steps=1000 --train_limit=5000 --width=16 --batch=16 --mu=2 --eval_every=0 --ema=0.99 --log_every=50 --pretrain_batch=128 --pretrain_steps=2000 --pretrain_cache=/work/exp/cache"
V="typiclust:freematch:simclr:--steps=4000:--lambda_u=0:--lambda_f=0"
BENCH_OUT=/work/exp/t-supervised SKIP_BUILD=1 BUILD_DIR=/work/bench-bin2 BUDGETS="100 250" SEEDS="0" PARALLEL=2 \
  TRAINER_FLAGS="$FLAGS" VARIANTS="$V" nice scripts/bench_labels.sh
