#!/usr/bin/env bash
# The CPU main job twice, each with a fresh SimCLR cache: with glibc's
# malloc defaults (--retain_freed_memory=false) and with freed memory kept
# for reuse (the default since 2026-12-07). Run from the repository root:
#   bash docs/results/cpu-2026-12-07-host-memory/pair.sh <out dir>
set -euo pipefail
out=${1:?out dir}
mkdir -p "$out"
for variant in malloc-defaults retained; do
  flags=(--pretrain_cache="$out/cache-$variant")
  [[ $variant == malloc-defaults ]] && flags+=(--retain_freed_memory=false)
  rm -rf "$out/run-$variant" "$out/cache-$variant"
  /usr/bin/time -f "$variant: %e s wall, %U s user, %S s sys, max RSS %M KB, %R minor faults" \
    -o "$out/time-$variant.txt" \
    env RUN_DIR="$out/run-$variant" scripts/run.sh "${flags[@]}" > "$out/$variant.log" 2>&1
  cat "$out/time-$variant.txt"
done
