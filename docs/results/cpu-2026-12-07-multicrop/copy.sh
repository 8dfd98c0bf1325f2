#!/usr/bin/env bash
# copy.sh: the multi-crop sweeps /work/exp/mc4_8k_s* into the results folder,
# keeping per run command.txt, purchases.log, report.json, rounds.csv,
# trainer.log, plus the scripts, the probes and the tables.
set -eu
DEST=/work/main/docs/results/cpu-2026-12-07-multicrop
mkdir -p "$DEST"
for sw in /work/exp/mc4_8k_s*/; do
  sw=${sw%/}; b=$(basename "$sw"); mkdir -p "$DEST/$b"
  for f in per_class.csv runs.csv summary.txt table.csv table.md verify.txt; do
    [[ -f $sw/$f ]] && cp "$sw/$f" "$DEST/$b/"
  done
  for r in "$sw"/b100*/; do
    r=${r%/}; mkdir -p "$DEST/$b/$(basename "$r")"
    for f in command.txt purchases.log report.json rounds.csv trainer.log; do cp "$r/$f" "$DEST/$b/$(basename "$r")/"; done
  done
done
cat /work/exp/mc/probes/mc-s*.tsv > "$DEST/probes-mc.tsv"
cp /work/exp/mc/run_mc.sh /work/exp/mc/after.sh /work/exp/mc/probe_rest.sh /work/exp/mc/probe_78.sh /work/exp/mc/tables.py /work/exp/mc/copy.sh "$DEST/"
python3 "$DEST/tables.py" "$DEST" /work/main/docs/results/cpu-2026-12-06-mixup-8k > "$DEST/tables.txt"
