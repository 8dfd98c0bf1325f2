#!/usr/bin/env bash
# The record of how probes.tsv was made (this session's run folders under
# /work/exp): linear_probe on the six reference runs of seeds 3-8 (their EMA
# weights), on the SimCLR checkpoints they started from (the trained "model"
# weights; their "head" row is an untrained layer) and on the all-labels
# runs. PROBE=<binary built from CMakeLists.txt> bash run_probes.sh > probes.tsv
# For any sweep folder use probe_runs.sh, which builds the probe itself.
set -euo pipefail
PROBE=${PROBE:-/tmp/linear_probe}
E=/work/exp
REF=b100-typiclust-freematch-simclr-steps_4000-lambda_c_1-contrast_memory_240
ALL=b5000-random-freematch-simclr-steps_4000-lambda_c_1-contrast_memory_240
for run in base34/$REF-s3 base34/$REF-s4 base56/$REF-s5 base56/$REF-s6 s78/$REF-s7 s78/$REF-s8; do
  seed=${run##*-s}
  nice "$PROBE" --checkpoint="$E/$run/checkpoint.pt" --purchases="$E/$run/purchases.log" --name="ref-s$seed"
  cache=$(grep -o 'simclr-[0-9a-f]*\.pt' "$E/$run/trainer.log" | head -1)
  nice "$PROBE" --checkpoint="$E/cache/$cache" --weights=model --purchases="$E/$run/purchases.log" --name="simclr-s$seed"
done
for seed in 5 6; do
  run=all56/$ALL-s$seed
  [[ -f $E/$run/checkpoint.pt ]] || continue
  nice "$PROBE" --checkpoint="$E/$run/checkpoint.pt" --name="all-s$seed"
done
