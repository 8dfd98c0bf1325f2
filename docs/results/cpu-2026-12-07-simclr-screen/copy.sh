#!/usr/bin/env bash
# copy.sh: the SimCLR settings screen (/work/exp/sc) into the results folder:
# per tiny run command.txt, purchases.log and trainer.log (SimCLR's loss and
# the label-free feature-quality line), per sweep summary.txt, verify.txt and
# table.md; the probes as probes.tsv, the scripts and tables.txt.
set -eu
SRC=/work/exp/sc
DEST=/work/main/docs/results/cpu-2026-12-07-simclr-screen
mkdir -p "$DEST"
for sw in "$SRC"/*_s[0-9]/; do
  sw=${sw%/}; b=$(basename "$sw"); mkdir -p "$DEST/$b"
  for f in summary.txt verify.txt table.md; do [[ -f $sw/$f ]] && cp "$sw/$f" "$DEST/$b/"; done
  for r in "$sw"/b100*/; do
    r=${r%/}; mkdir -p "$DEST/$b/$(basename "$r")"
    for f in command.txt purchases.log trainer.log; do cp "$r/$f" "$DEST/$b/$(basename "$r")/"; done
  done
done
cat "$SRC"/probe-*_s*.tsv > "$DEST/probes.tsv"
cp "$SRC/run_sc.sh" "$SRC/run_e2e.sh" "$SRC/tables.py" "$SRC/copy.sh" "$DEST/"
python3 "$DEST/tables.py" "$DEST/probes.tsv" /work/main/docs/results/cpu-2026-12-05-linear-probe/probes.tsv > "$DEST/tables.txt"
