#!/usr/bin/env bash
# RandAugment without its identity op: each strong view gets 2 of the other
# 12 ops (--strong_op_list without identity) instead of 2 of all 13, where a
# draw of identity leaves a view with one op or none. On the CPU's recipe
# (labelled mixup, the 0.05-0.95 enhance range), 4,000 steps, seeds 3-8, 100
# labels. Runs this arm only: the all-ops arm is the recipe itself, which
# two sweeps reproduced exactly on the same SimCLR checkpoints
# (cpu-2026-12-07-enhance-range, cpu-2026-12-07-grayscale-ops), so its six
# results are known. The checkpoints come from CACHE (same pretraining
# flags, same keys), two trainers at a time with one thread each.
#   CACHE=/tmp/enh/cache bash docs/results/cpu-2026-12-07-no-identity/run.sh /tmp/noid
# Run from the repository root; BUILD_DIR holds the binaries (a copy, so a
# rebuild of build/ during the sweep cannot swap them).
set -u
EXP=${1:?experiment folder}
BUILD=${BUILD_DIR:-/tmp/graybuild}
CACHE=${CACHE:-$EXP/cache}
mkdir -p "$EXP"
FLAGS="--steps=1000 --train_limit=5000 --width=16 --batch=16 --mu=2 --eval_every=0 --ema=0.99 \
  --log_every=50 --pretrain_batch=128 --pretrain_steps=2000 --pretrain_cache=$CACHE"
MIX=typiclust:freematch:simclr:--steps=4000:--lambda_c=1:--contrast_memory=240:--mixup_alpha=0.75
OPS=autocontrast,equalize,solarize,posterize,contrast,brightness,sharpness,rotate,shear_x,shear_y,translate_x,translate_y
env SKIP_BUILD=1 BUILD_DIR="$BUILD" BUDGETS=100 SEEDS="3 4 5 6 7 8" PARALLEL=2 \
  TRAINER_FLAGS="$FLAGS" BENCH_OUT="$EXP/arms" VARIANTS="$MIX:--strong_op_list=$OPS" \
  scripts/bench_labels.sh > "$EXP/arms.log" 2>&1
echo "no-identity sweep: exit $?"
