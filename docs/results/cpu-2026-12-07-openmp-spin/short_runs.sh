#!/usr/bin/env bash
# The short main job (1,500 training steps, the main job's cached SimCLR
# checkpoint in runs/pretrain-cache) under one setting of how idle OpenMP
# (and OpenBLAS) threads wait; prints one line per run for short_runs.tsv.
# Run from the repository root, one run at a time, e.g.:
#   bash docs/results/cpu-2026-12-07-openmp-spin/short_runs.sh /tmp/omp base
#   bash docs/results/cpu-2026-12-07-openmp-spin/short_runs.sh /tmp/omp spin1k GOMP_SPINCOUNT=1000
# short_runs.tsv lists the 40 runs of 2026-12-07 in the order they ran
# (rows 1-12 exploring, 13-24 three alternating rounds of four settings,
# 25-30 two rounds with OPENBLAS_NUM_THREADS=1, 31-34 two pairs of
# GOMP_SPINCOUNT=1000 with freed host memory kept and with malloc's
# defaults; 35-40 that evening, on 1d7393b: two more such pairs, the
# first under perf record, and two runs with malloc's transparent huge
# pages, GLIBC_TUNABLES=glibc.malloc.hugetlb=1 plus both thresholds at
# 1 GiB; BENCHMARKS.md "Idle OpenMP threads", last points). Rows 1-30 ran before scripts/run.sh set GOMP_SPINCOUNT itself;
# with today's run.sh give GOMP_SPINCOUNT=300000 for libgomp's default.
set -euo pipefail
out=${1:?out dir}; name=${2:?run name}; shift 2
mkdir -p "$out"; rm -rf "${out:?}/$name"
extra=()
[[ $name == *defaults ]] && extra=(--retain_freed_memory=false)
[[ $name == one-thread ]] && extra=(--cpu_threads=1)
/usr/bin/time -f "%e s wall %U user %S sys" -o "$out/$name.time" \
  env "$@" RUN_DIR="$out/$name" scripts/run.sh --steps=1500 "${extra[@]}" > "$out/$name.log" 2>&1
echo "$name $(tail -1 "$out/$name.time") | $(grep '^accuracy' "$out/$name.log")"
