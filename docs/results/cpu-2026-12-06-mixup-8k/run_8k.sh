#!/usr/bin/env bash
# Labelled mixup (alpha 0.75) against the reference recipe at 8,000 steps
# on seeds 3 and 4, the two seeds where mixup gained most at 4,000 steps
# (+2.69 and +1.63, docs/results/cpu-2026-12-06-mixup/): does the gain
# last when the run trains twice as long? Two chains side by side, one
# trainer each on one CPU thread (as the recorded runs); each chain's first
# run pretrains its seed's 2,000 SimCLR steps into the cache (this VM is a
# fresh one), the second reuses the other chain's. The checkpoints came out
# different from the earlier VM's (the first 40 labels differ), so the
# seeds are fresh draws, not the 4,000-step runs' gains; run_8k_5678.sh
# adds seeds 5-8 for a six-seed comparison.
set -u
BUILD=${BUILD:-/tmp/ci/build}
EXP=${EXP:-/work/exp}
cd "$(dirname "$BUILD")"
FLAGS="--steps=1000 --train_limit=5000 --width=16 --batch=16 --mu=2 --eval_every=0 --ema=0.99 \
  --log_every=50 --pretrain_batch=128 --pretrain_steps=2000 --pretrain_cache=$EXP/cache"
REF=typiclust:freematch:simclr:--steps=8000:--lambda_c=1:--contrast_memory=240:--eval_every=2000
MIX=$REF:--mixup_alpha=0.75
sweep() {  # sweep OUT SEEDS VARIANTS
  env OMP_NUM_THREADS=1 SKIP_BUILD=1 BUILD_DIR="$BUILD" BUDGETS=100 PARALLEL=1 \
    TRAINER_FLAGS="$FLAGS" BENCH_OUT="$1" SEEDS="$2" VARIANTS="$3" nice scripts/bench_labels.sh
}
( sweep "$EXP/mix8k_34" "3 4" "$MIX" ) > "$EXP/mix8k_34.log" 2>&1 &
( sweep "$EXP/ref8k_43" "4 3" "$REF" ) > "$EXP/ref8k_43.log" 2>&1 &
wait
