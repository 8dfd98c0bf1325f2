#!/usr/bin/env bash
# Labelled mixup (alpha 0.75) at 16,000 steps on seeds 5 and 6, to set
# against the recorded 16,000-step reference runs of those seeds
# (docs/results/cpu-2026-12-05-linear-probe/steps-16000-seeds-5-6/, 83.10 %).
# Two chains side by side, one trainer each on one CPU thread (as the
# recorded runs), on the cached SimCLR checkpoints.
set -u
cd /tmp/ci2
FLAGS="--steps=1000 --train_limit=5000 --width=16 --batch=16 --mu=2 --eval_every=0 --ema=0.99 \
  --log_every=50 --pretrain_batch=128 --pretrain_steps=2000 --pretrain_cache=/work/exp/cache"
MIX=typiclust:freematch:simclr:--steps=16000:--lambda_c=1:--contrast_memory=240:--eval_every=2000:--mixup_alpha=0.75
sweep() {  # sweep OUT SEEDS VARIANTS
  env OMP_NUM_THREADS=1 SKIP_BUILD=1 BUILD_DIR=/tmp/ci2/build BUDGETS=100 PARALLEL=1 \
    TRAINER_FLAGS="$FLAGS" BENCH_OUT="$1" SEEDS="$2" VARIANTS="$3" nice scripts/bench_labels.sh
}
( sweep /work/exp/mixup16k_5 5 "$MIX" ) > /work/exp/mixup16k_5.log 2>&1 &
( sweep /work/exp/mixup16k_6 6 "$MIX" ) > /work/exp/mixup16k_6.log 2>&1 &
wait
