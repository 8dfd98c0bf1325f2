#!/usr/bin/env bash
# Seeds 7 and 8 of run_mixu.sh, side by side, after it.
set -u
while pgrep -f "run_mixu\.sh" > /dev/null; do sleep 20; done
cd /tmp/ci
FLAGS="--steps=1000 --train_limit=5000 --width=16 --batch=16 --mu=2 --eval_every=0 --ema=0.99 \
  --log_every=50 --pretrain_batch=128 --pretrain_steps=2000 --pretrain_cache=/work/exp/cache"
MIXU=typiclust:freematch:simclr:--steps=4000:--lambda_c=1:--contrast_memory=240:--mixup_alpha=0.75:--mixup_unlabelled
sweep() {  # sweep OUT SEEDS VARIANTS
  env OMP_NUM_THREADS=1 SKIP_BUILD=1 BUILD_DIR=/tmp/ci/build BUDGETS=100 PARALLEL=1 \
    TRAINER_FLAGS="$FLAGS" BENCH_OUT="$1" SEEDS="$2" VARIANTS="$3" nice scripts/bench_labels.sh
}
( sweep /work/exp/mixu_7 7 "$MIXU" ) > /work/exp/mixu_7.log 2>&1 &
( sweep /work/exp/mixu_8 8 "$MIXU" ) > /work/exp/mixu_8.log 2>&1 &
wait
