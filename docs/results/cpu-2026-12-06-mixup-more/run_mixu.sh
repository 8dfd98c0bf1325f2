#!/usr/bin/env bash
# Mixup of the pseudo-labelled batch too (--mixup_unlabelled) on the
# reference recipe with labelled mixup, seeds 3-6, to set against the
# labelled-mixup runs of the same seeds earlier today (same VM instance,
# cached SimCLR checkpoints, identical first 40 labels). Two chains side by
# side, one trainer each on one CPU thread; starts after run_mixup16k.sh.
set -u
while pgrep -f run_mixup16k.sh > /dev/null; do sleep 20; done
cd /tmp/ci
FLAGS="--steps=1000 --train_limit=5000 --width=16 --batch=16 --mu=2 --eval_every=0 --ema=0.99 \
  --log_every=50 --pretrain_batch=128 --pretrain_steps=2000 --pretrain_cache=/work/exp/cache"
MIXU=typiclust:freematch:simclr:--steps=4000:--lambda_c=1:--contrast_memory=240:--mixup_alpha=0.75:--mixup_unlabelled
sweep() {  # sweep OUT SEEDS VARIANTS
  env OMP_NUM_THREADS=1 SKIP_BUILD=1 BUILD_DIR=/tmp/ci/build BUDGETS=100 PARALLEL=1 \
    TRAINER_FLAGS="$FLAGS" BENCH_OUT="$1" SEEDS="$2" VARIANTS="$3" nice scripts/bench_labels.sh
}
( sweep /work/exp/mixu_35 "3 5" "$MIXU" ) > /work/exp/mixu_35.log 2>&1 &
( sweep /work/exp/mixu_46 "4 6" "$MIXU" ) > /work/exp/mixu_46.log 2>&1 &
wait
