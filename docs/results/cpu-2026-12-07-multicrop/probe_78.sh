#!/usr/bin/env bash
# Probes seeds 7 and 8 side by side once their sweeps finish.
cd /work/main
for s in 7 8; do
  (
    while ! grep -q "^accuracy" $(ls -d /work/exp/mc4_8k_s$s/b100* | head -1)/trainer.log; do sleep 20; done
    sleep 20
    PROBE_BUILD=/tmp/lp-main OMP_NUM_THREADS=1 nice bash docs/results/cpu-2026-12-05-linear-probe/probe_runs.sh /work/exp/mc4_8k_s$s /work/exp/mc/probes/mc-s$s.tsv
  ) &
done
wait
