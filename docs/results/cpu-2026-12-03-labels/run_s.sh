#!/bin/bash
# Typiclust on the initial (SimCLR) embedding in every round, as the TypiClust
# paper does, against the reference recipe that selects rounds 2-3 on the
# current model's embedding (r-curve's 100-label runs, same cache), three seeds.
cd /work/snap2
FLAGS="--steps=1000 --train_limit=5000 --width=16 --batch=16 --mu=2 --eval_every=0 --ema=0.99 --log_every=50 --pretrain_batch=128 --pretrain_steps=2000 --pretrain_cache=/work/exp/cache"
V="typiclust:freematch:simclr:--steps=4000:--lambda_c=1:--contrast_memory=240:--select_on_initial_embedding"
BENCH_OUT=/work/exp/s-initial-emb SKIP_BUILD=1 BUILD_DIR=/work/bench-bin2 BUDGETS="100" SEEDS="0 1 2" PARALLEL=2 \
  TRAINER_FLAGS="$FLAGS" VARIANTS="$V" nice scripts/bench_labels.sh
