#!/usr/bin/env bash
# SimCLR settings screen: for each arm and seed, pretrain SimCLR (2,000
# steps of 128, the CPU recipe) with one setting changed, through a tiny
# bench_labels run (20 training steps: it only caches the checkpoint and
# buys typiclust's 100 labels on it), then probe the SimCLR start with the
# answer key (diagnostic only). Two chains, one thread each, nice.
set -u
BUILD=${BUILD:-/tmp/ci4/build}
EXP=${EXP:-/work/exp}
OUTD=$EXP/sc
cd "$(dirname "$BUILD")"
FLAGS="--steps=1000 --train_limit=5000 --width=16 --batch=16 --mu=2 --eval_every=0 --ema=0.99 \
  --log_every=50 --pretrain_batch=128 --pretrain_steps=2000 --pretrain_cache=$EXP/cache"
BASE=typiclust:freematch:simclr:--steps=20:--lambda_c=1:--contrast_memory=240
one() {  # one ARMNAME ARMFLAG SEED
  local out=$OUTD/$1_s$3
  env OMP_NUM_THREADS=1 SKIP_BUILD=1 BUILD_DIR="$BUILD" BUDGETS=100 PARALLEL=1 \
    TRAINER_FLAGS="$FLAGS" BENCH_OUT="$out" SEEDS="$3" VARIANTS="$BASE:$2" \
    nice scripts/bench_labels.sh > "$out.log" 2>&1
  local run; run=$(ls -d "$out"/b100*/ | head -1); run=${run%/}
  local start; start=$(grep -o '[^ ]*simclr-[0-9a-f]*\.pt' "$run/trainer.log" | head -1)
  OMP_NUM_THREADS=1 nice /tmp/lp-main/linear_probe --checkpoint="$start" --weights=model \
    --purchases="$run/purchases.log" --name="simclr:$1_s$3" --arch=cnn --width=16 --pool=5000 \
    --device=cpu --data_dir=/usr/share/datasets/fashion-mnist > "$OUTD/probe-$1_s$3.tsv" 2> "$OUTD/probe-$1_s$3.err"
}
chain() { local s=$1; shift; for a in "$@"; do one "${a%%=*}" "--${a#*=}" "$s"; done; }
ARMS=${ARMS:-"crop08=pretrain_crop_scale=0.08 temp01=pretrain_temperature=0.1 lr012=pretrain_lr=0.12"}
chain 3 $ARMS &
chain 4 $ARMS &
wait
