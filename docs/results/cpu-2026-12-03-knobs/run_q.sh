#!/bin/bash
# The other direction of run_o.sh (weight decay 1e-3 and lambda_u 2 both lost):
# weight decay 2.5e-4 and lambda_u 0.5, against the 4,000-step reference
# (82.88 %), three seeds, cached SimCLR.
cd /work/snap7
FLAGS="--steps=1000 --train_limit=5000 --width=16 --batch=16 --mu=2 --eval_every=0 --ema=0.99 --log_every=50 --pretrain_batch=128 --pretrain_steps=2000 --pretrain_cache=/work/exp/cache"
BENCH_OUT=/work/exp/q-wd-lu-down SKIP_BUILD=1 BUILD_DIR=/work/bench-bin10 BUDGETS=100 SEEDS="0 1 2" PARALLEL=2 \
  TRAINER_FLAGS="$FLAGS" VARIANTS="typiclust:freematch:simclr:--steps=4000:--lambda_c=1:--contrast_memory=240:--weight_decay=0.00025 typiclust:freematch:simclr:--steps=4000:--lambda_c=1:--contrast_memory=240:--lambda_u=0.5" \
  nice scripts/bench_labels.sh
