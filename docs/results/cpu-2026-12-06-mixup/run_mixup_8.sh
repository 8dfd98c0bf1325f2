#!/usr/bin/env bash
# Seed 8: mixup and the reference side by side, after run_mixup_ref.sh.
set -u
while pgrep -f "run_mixup(_ref)?\.sh" > /dev/null; do sleep 20; done
cd /tmp/ci2
FLAGS="--steps=1000 --train_limit=5000 --width=16 --batch=16 --mu=2 --eval_every=0 --ema=0.99 \
  --log_every=50 --pretrain_batch=128 --pretrain_steps=2000 --pretrain_cache=/work/exp/cache"
REF=typiclust:freematch:simclr:--steps=4000:--lambda_c=1:--contrast_memory=240
MIX=$REF:--mixup_alpha=0.75
sweep() {  # sweep OUT SEEDS VARIANTS
  env OMP_NUM_THREADS=1 SKIP_BUILD=1 BUILD_DIR=/tmp/ci2/build BUDGETS=100 PARALLEL=1 \
    TRAINER_FLAGS="$FLAGS" BENCH_OUT="$1" SEEDS="$2" VARIANTS="$3" nice scripts/bench_labels.sh
}
( sweep /work/exp/mixup_ref8 8 "$REF" ) > /work/exp/mixup_chain5.log 2>&1 &
( sweep /work/exp/mixup_8 8 "$MIX" ) > /work/exp/mixup_chain6.log 2>&1 &
wait
