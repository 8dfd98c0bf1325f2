#!/usr/bin/env bash
# BIN=<build dir> [SEEDS=..] [CACHE=..] bash run_tb2.sh OUT VARIANT...
set -euo pipefail
OUT=$1; shift
FLAGS="--steps=1000 --train_limit=5000 --width=16 --batch=16 --mu=2 --eval_every=0 --ema=0.99 --log_every=50 --pretrain_batch=128 --pretrain_steps=2000 --pretrain_cache=${CACHE:-/work/exp/cache}"
cd /work/exp/snap
BENCH_OUT=$OUT SKIP_BUILD=1 BUILD_DIR=${BIN:-/work/main/build} BUDGETS=${BUDGETS:-100} SEEDS="${SEEDS:-0 1 2}" \
  PARALLEL=${PARALLEL:-2} TRAINER_FLAGS="$FLAGS" VARIANTS="$*" nice scripts/bench_labels.sh
