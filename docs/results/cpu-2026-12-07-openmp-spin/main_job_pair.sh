#!/usr/bin/env bash
# The CPU main job twice, each with a fresh SimCLR cache: with libgomp's
# default spinning (GOMP_SPINCOUNT=300000 given explicitly, which is what
# an unset one means) and with scripts/run.sh's own default since
# 2026-12-07 (GOMP_SPINCOUNT=1000). Run from the repository root:
#   bash docs/results/cpu-2026-12-07-openmp-spin/main_job_pair.sh <out dir>
set -euo pipefail
out=${1:?out dir}
mkdir -p "$out"
for spins in 300000 1000; do
  rm -rf "$out/run-$spins" "$out/cache-$spins"
  /usr/bin/time -f "spin $spins: %e s wall, %U s user, %S s sys, max RSS %M KB" \
    -o "$out/time-$spins.txt" \
    env GOMP_SPINCOUNT=$spins RUN_DIR="$out/run-$spins" \
    scripts/run.sh --pretrain_cache="$out/cache-$spins" > "$out/main-job-spin-$spins.log" 2>&1
  cat "$out/time-$spins.txt"
done
