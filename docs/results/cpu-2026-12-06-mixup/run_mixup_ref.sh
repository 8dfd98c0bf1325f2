#!/usr/bin/env bash
# The reference on seeds 4-7 on this VM, after run_mixup.sh: two chains.
set -u
while pgrep -f run_mixup.sh > /dev/null; do sleep 20; done
cd /tmp/ci2
FLAGS="--steps=1000 --train_limit=5000 --width=16 --batch=16 --mu=2 --eval_every=0 --ema=0.99 \
  --log_every=50 --pretrain_batch=128 --pretrain_steps=2000 --pretrain_cache=/work/exp/cache"
REF=typiclust:freematch:simclr:--steps=4000:--lambda_c=1:--contrast_memory=240
sweep() {  # sweep OUT SEEDS VARIANTS
  env OMP_NUM_THREADS=1 SKIP_BUILD=1 BUILD_DIR=/tmp/ci2/build BUDGETS=100 PARALLEL=1 \
    TRAINER_FLAGS="$FLAGS" BENCH_OUT="$1" SEEDS="$2" VARIANTS="$3" nice scripts/bench_labels.sh
}
( sweep /work/exp/mixup_ref46 "4 6" "$REF" ) > /work/exp/mixup_chain3.log 2>&1 &
( sweep /work/exp/mixup_ref57 "5 7" "$REF" ) > /work/exp/mixup_chain4.log 2>&1 &
wait
