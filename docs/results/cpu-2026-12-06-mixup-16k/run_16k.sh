#!/usr/bin/env bash
# Both arms at 16,000 steps on seeds 7, 3, 8, 5 and 6 (in that order, one
# pair at a time: the reference in one chain, mixup in the other), on the
# cached SimCLR checkpoints of ../cpu-2026-12-06-mixup-8k/ (same VM kind,
# the same cache folder), so each pair shares its checkpoint and first 40
# labels with that folder's 8,000-step runs of the seed.
set -u
BUILD=${BUILD:-/tmp/ci/build}
EXP=${EXP:-/work/exp}
SEEDS=${SEEDS:-7 3 8 5 6}
cd "$(dirname "$BUILD")"
FLAGS="--steps=1000 --train_limit=5000 --width=16 --batch=16 --mu=2 --eval_every=0 --ema=0.99 \
  --log_every=50 --pretrain_batch=128 --pretrain_steps=2000 --pretrain_cache=$EXP/cache"
REF=typiclust:freematch:simclr:--steps=16000:--lambda_c=1:--contrast_memory=240:--eval_every=2000
MIX=$REF:--mixup_alpha=0.75
sweep() {  # sweep OUT SEED VARIANTS
  env OMP_NUM_THREADS=1 SKIP_BUILD=1 BUILD_DIR="$BUILD" BUDGETS=100 PARALLEL=1 \
    TRAINER_FLAGS="$FLAGS" BENCH_OUT="$1" SEEDS="$2" VARIANTS="$3" nice scripts/bench_labels.sh
}
for s in $SEEDS; do
  ( sweep "$EXP/ref16k_s$s" "$s" "$REF" ) > "$EXP/ref16k_s$s.log" 2>&1 &
  ( sweep "$EXP/mix16k_s$s" "$s" "$MIX" ) > "$EXP/mix16k_s$s.log" 2>&1 &
  wait
done
