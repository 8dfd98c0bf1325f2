#!/usr/bin/env bash
# Labelled mixup (alpha 0.75) on the reference recipe, seeds 3-7, and the
# reference itself on seed 3 (does this VM reproduce the recorded 82.43?).
# Two chains side by side, one trainer each on one CPU thread (as the
# recorded reference runs), on the cached SimCLR checkpoints of seeds 3-8.
set -u
cd /tmp/ci2
FLAGS="--steps=1000 --train_limit=5000 --width=16 --batch=16 --mu=2 --eval_every=0 --ema=0.99 \
  --log_every=50 --pretrain_batch=128 --pretrain_steps=2000 --pretrain_cache=/work/exp/cache"
REF=typiclust:freematch:simclr:--steps=4000:--lambda_c=1:--contrast_memory=240
MIX=$REF:--mixup_alpha=0.75
sweep() {  # sweep OUT SEEDS VARIANTS
  env OMP_NUM_THREADS=1 SKIP_BUILD=1 BUILD_DIR=/tmp/ci2/build BUDGETS=100 PARALLEL=1 \
    TRAINER_FLAGS="$FLAGS" BENCH_OUT="$1" SEEDS="$2" VARIANTS="$3" nice scripts/bench_labels.sh
}
( sweep /work/exp/mixup_ref3 3 "$REF"; sweep /work/exp/mixup_46 "4 6" "$MIX" ) > /work/exp/mixup_chain1.log 2>&1 &
( sweep /work/exp/mixup_357 "3 5 7" "$MIX" ) > /work/exp/mixup_chain2.log 2>&1 &
wait
