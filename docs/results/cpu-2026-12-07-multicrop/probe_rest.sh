#!/usr/bin/env bash
# Probes seeds 5-8 as their sweeps finish (one at a time, niced, one thread);
# stopped after seed 6, seeds 7 and 8 went to probe_78.sh side by side.
cd /work/main
for s in 5 6 7 8; do
  while ! grep -q "^accuracy" $(ls -d /work/exp/mc4_8k_s$s/b100* 2>/dev/null | head -1)/trainer.log 2>/dev/null; do sleep 30; done
  sleep 20
  PROBE_BUILD=/tmp/lp-main OMP_NUM_THREADS=1 nice bash docs/results/cpu-2026-12-05-linear-probe/probe_runs.sh /work/exp/mc4_8k_s$s /work/exp/mc/probes/mc-s$s.tsv
done
