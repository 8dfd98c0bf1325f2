#!/bin/bash
cd /work/main
for rep in 1 2; do for t in 1 2; do
  d=/tmp/pair-$t-$rep; rm -rf $d
  s=$(date +%s)
  RUN_DIR=$d scripts/run.sh --pretrain_steps=100 --steps=300 --cpu_threads=$t --pretrain_cache=$d/cache > $d.log 2>&1
  echo "threads=$t rep=$rep rc=$? wall=$(( $(date +%s) - s ))" >> /tmp/mj/pair.txt
done; done
