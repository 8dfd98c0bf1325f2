#!/usr/bin/env bash
# The record of how probes-head-uniform.tsv was made (stopped by hand after
# the first six runs; this session's /work/exp run folders): the head and
# head-uniform rows of linear_probe on each 100-label run with a checkpoint.
cd /work/exp || exit 1
P=/tmp/linear-probe-build/linear_probe
flag() { grep -o -- "--$1=[^ ]*" <<<"$2" | tail -1 | cut -d= -f2- | grep . || echo "$3"; }
for d in base34 base56 s78 long56 pv34b pv56 da; do
  for r in $d/b100*; do
    [[ -f $r/checkpoint.pt ]] || continue
    cmd=$(cat $r/command.txt)
    nice $P --checkpoint=$r/checkpoint.pt --purchases=$r/purchases.log --name=$r \
      --width=$(flag width "$cmd" 64) --pool=$(flag train_limit "$cmd" 60000) 2>&1 | grep -E 'head|probe-pool'
  done
done
