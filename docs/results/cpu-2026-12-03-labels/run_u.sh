#!/bin/bash
# At 250 labels the objective costs shirt 8.6 points (run_t.sh): does trusting
# the pseudo-labels less protect it? FixMatch's fixed 0.95 threshold instead of
# FreeMatch's adaptive one, and --lambda_u=0.5, seed 0 (run_r.sh's cache).
cd /work/snap2
FLAGS="--steps=1000 --train_limit=5000 --width=16 --batch=16 --mu=2 --eval_every=0 --ema=0.99 --log_every=50 --pretrain_batch=128 --pretrain_steps=2000 --pretrain_cache=/work/exp/cache"
BENCH_OUT=/work/exp/u-shirt SKIP_BUILD=1 BUILD_DIR=/work/bench-bin2 BUDGETS="250" SEEDS="0" PARALLEL=2 \
  TRAINER_FLAGS="$FLAGS" VARIANTS="typiclust:fixmatch:simclr:--steps=4000:--lambda_c=1:--contrast_memory=240 typiclust:freematch:simclr:--steps=4000:--lambda_c=1:--contrast_memory=240:--lambda_u=0.5" \
  nice scripts/bench_labels.sh
