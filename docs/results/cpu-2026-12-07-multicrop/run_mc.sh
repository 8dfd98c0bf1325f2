#!/usr/bin/env bash
# Multi-crop SimCLR (4 local 16-px views) under labelled mixup at 8,000 steps,
# two chains of seeds; the SimCLR checkpoints are new (own cache key), so
# the first labels differ from the reference runs of the seed.
set -u
BUILD=${BUILD:-/tmp/ci4/build}
EXP=${EXP:-/work/exp}
cd "$(dirname "$BUILD")"
FLAGS="--steps=1000 --train_limit=5000 --width=16 --batch=16 --mu=2 --eval_every=0 --ema=0.99 \
  --log_every=50 --pretrain_batch=128 --pretrain_steps=2000 --pretrain_cache=$EXP/cache"
REF=typiclust:freematch:simclr:--steps=8000:--lambda_c=1:--contrast_memory=240:--eval_every=2000
ARM=${ARM:-$REF:--mixup_alpha=0.75:--pretrain_local_crops=4}
NAME=${NAME:-mc4_8k}
sweep() {  # sweep OUT SEED VARIANTS
  env OMP_NUM_THREADS=1 SKIP_BUILD=1 BUILD_DIR="$BUILD" BUDGETS=100 PARALLEL=1 \
    TRAINER_FLAGS="$FLAGS" BENCH_OUT="$1" SEEDS="$2" VARIANTS="$3" nice scripts/bench_labels.sh
}
chain() { for s in "$@"; do sweep "$EXP/${NAME}_s$s" "$s" "$ARM" > "$EXP/${NAME}_s$s.log" 2>&1; done; }
chain ${CHAIN_A:-3 5 7} &
chain ${CHAIN_B:-4 6 8} &
wait
