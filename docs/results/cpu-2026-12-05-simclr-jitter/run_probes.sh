#!/usr/bin/env bash
# The record of how probes.tsv was made (run folders under /work/exp of the
# session that made them): linear_probe (docs/results/cpu-2026-12-05-linear-probe/,
# built from its own CMakeLists.txt; it reads the label files, a diagnostic)
# on the three jitter runs (EMA weights), on their SimCLR checkpoints with the
# ids each run bought, and on the same checkpoints with the ids the
# reference run of that seed bought (base34, base56: the reference recipe's
# sweeps). PROBE=<binary> bash run_probes.sh > probes.tsv
set -euo pipefail
PROBE=${PROBE:-/work/exp/linear_probe}
E=/work/exp
J=b100-typiclust-freematch-simclr-steps_4000-lambda_c_1-contrast_memory_240-pretrain_colour_jitter
REF=b100-typiclust-freematch-simclr-steps_4000-lambda_c_1-contrast_memory_240
for s in 3 4 5; do
  b=base34; [[ $s == 5 ]] && b=base56
  nice "$PROBE" --checkpoint=$E/jit345/$J-s$s/checkpoint.pt --purchases=$E/jit345/$J-s$s/purchases.log --name=jitter-s$s
  c=$(grep -o 'simclr-[0-9a-f]*\.pt' $E/jit345/$J-s$s/trainer.log | head -1)
  nice "$PROBE" --checkpoint=$E/cache/$c --weights=model --purchases=$E/jit345/$J-s$s/purchases.log --name=jitter-simclr-s$s
  nice "$PROBE" --checkpoint=$E/cache/$c --weights=model --purchases=$E/$b/$REF-s$s/purchases.log --name=jitter-simclr-refids-s$s
done
