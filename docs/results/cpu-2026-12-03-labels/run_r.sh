#!/bin/bash
# The label curve of the reference recipe on this CPU: budgets 40, 100 and 250
# over three seeds (issue 8's sweep budgets), all at 4,000 steps with per-seed
# SimCLR checkpoints. Against all 5,000 labels (88.01 %, BENCHMARKS "How far
# from all labels").
cd /work/snap
FLAGS="--steps=1000 --train_limit=5000 --width=16 --batch=16 --mu=2 --eval_every=0 --ema=0.99 --log_every=50 --pretrain_batch=128 --pretrain_steps=2000 --pretrain_cache=/work/exp/cache"
V="typiclust:freematch:simclr:--steps=4000:--lambda_c=1:--contrast_memory=240"
BENCH_OUT=/work/exp/r-curve SKIP_BUILD=1 BUILD_DIR=/work/bench-bin BUDGETS="40 100 250" SEEDS="0 1 2" PARALLEL=2 \
  TRAINER_FLAGS="$FLAGS" VARIANTS="$V" nice scripts/bench_labels.sh
