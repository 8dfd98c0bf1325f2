#!/usr/bin/env bash
# After run_8k_5678.sh: both arms at 16,000 steps on seeds 3 and 4 (the
# same cached SimCLR checkpoints as their 8,000-step runs), beside the
# 16,000-step comparison of seeds 5 and 6 made on the earlier VM
# (../cpu-2026-12-06-mixup-more/). Seed 3's pair was stopped unfinished
# (the session's time ran out); only seed 4's runs are kept.
set -u
while pgrep -f run_8k_5678.sh > /dev/null; do sleep 20; done
BUILD=${BUILD:-/tmp/ci/build}
EXP=${EXP:-/work/exp}
cd "$(dirname "$BUILD")"
FLAGS="--steps=1000 --train_limit=5000 --width=16 --batch=16 --mu=2 --eval_every=0 --ema=0.99 \
  --log_every=50 --pretrain_batch=128 --pretrain_steps=2000 --pretrain_cache=$EXP/cache"
REF=typiclust:freematch:simclr:--steps=16000:--lambda_c=1:--contrast_memory=240:--eval_every=2000
MIX=$REF:--mixup_alpha=0.75
sweep() {  # sweep OUT SEEDS VARIANTS
  env OMP_NUM_THREADS=1 SKIP_BUILD=1 BUILD_DIR="$BUILD" BUDGETS=100 PARALLEL=1 \
    TRAINER_FLAGS="$FLAGS" BENCH_OUT="$1" SEEDS="$2" VARIANTS="$3" nice scripts/bench_labels.sh
}
( sweep "$EXP/mix16k_34" "4 3" "$MIX" ) > "$EXP/mix16k_34.log" 2>&1 &
( sweep "$EXP/ref16k_34" "4 3" "$REF" ) > "$EXP/ref16k_34.log" 2>&1 &
wait
