#!/usr/bin/env bash
# The same comparison as run_8k.sh on seeds 5-8, after it: two chains,
# each pretrains its two seeds in its first sweep (labelled mixup) and
# reuses them in its second (the reference).
set -u
while pgrep -f run_8k.sh > /dev/null; do sleep 20; done
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
( sweep "$EXP/mix8k_56" "5 6" "$MIX"; sweep "$EXP/ref8k_56" "5 6" "$REF" ) > "$EXP/chain_56.log" 2>&1 &
( sweep "$EXP/mix8k_78" "7 8" "$MIX"; sweep "$EXP/ref8k_78" "7 8" "$REF" ) > "$EXP/chain_78.log" 2>&1 &
wait
