#!/usr/bin/env bash
# DIAGNOSTIC: two oracle-informed balanced selectors in one sweep.
set -euo pipefail
OUT=$1 SEEDS=${2:-"0 1 2"}
D=/work/exp/diag
declare -A P
PIDS=()
for MODE in random typical; do
  rm -f $D/port.$MODE
  /usr/bin/python3 $D/selector_oracle_balanced.py --mode=$MODE --port_file=$D/port.$MODE \
    --stubs_dir=$D/stubs > $D/selector.$MODE.log 2>&1 &
  PIDS+=($!)
done
trap 'kill ${PIDS[*]} 2>/dev/null' EXIT
for MODE in random typical; do
  for i in $(seq 50); do [[ -s $D/port.$MODE ]] && break; sleep 0.2; done
  P[$MODE]=$(cat $D/port.$MODE)
done
R="freematch:simclr:--steps=4000:--lambda_c=1:--contrast_memory=240"
FLAGS=${FLAGS:-"--steps=1000 --train_limit=5000 --width=16 --batch=16 --mu=2 --eval_every=0 --ema=0.99 --log_every=50 --pretrain_batch=128 --pretrain_steps=2000 --pretrain_cache=/work/exp/cache"}
cd /work/exp/snap
BENCH_OUT=$OUT SKIP_BUILD=1 BUILD_DIR=/work/main/build BUDGETS=${BUDGETS:-100} SEEDS="$SEEDS" \
  PARALLEL=${PARALLEL:-2} TRAINER_FLAGS="$FLAGS" \
  VARIANTS="grpc://127.0.0.1:${P[random]}:$R grpc://127.0.0.1:${P[typical]}:$R" nice scripts/bench_labels.sh
