#!/usr/bin/env python3
"""SimCLR settings screen: the answer-key probe (a diagnostic, never a
product result) of each arm's SimCLR start against the reference start of
the same seed (arm "ref": the cached checkpoint of the recipe's own
settings, reused through the same tiny run), and the 2026-12-05 probes of
seeds 3 and 4 (docs/results/cpu-2026-12-05-linear-probe/probes.tsv).

  python3 tables.py PROBES_TSV [PROBES_2026_12_05_TSV]

PROBES_TSV holds the screen's probe rows, named simclr:<arm>_s<seed>
(cat probe-*_s*.tsv > probes.tsv).
"""
import sys

METRICS = ["probe-pool", "probe-60k", "knn-pool", "probe-bought"]
SEEDS = [3, 4]


def read(path):
    rows = {}
    for line in open(path):
        f = line.rstrip("\n").split("\t")
        if len(f) >= 3 and f[1] in METRICS:
            rows[(f[0], f[1])] = float(f[2])
    return rows


def main():
    arms = {}
    for (name, metric), v in read(sys.argv[1]).items():
        arm, seed = name.split(":", 1)[1].rsplit("_s", 1)
        arms.setdefault(arm, {})[(int(seed), metric)] = v
    if len(sys.argv) > 2:
        old = read(sys.argv[2])
        arms["probes of 2026-12-05"] = {
            (s, m): old[(f"simclr-s{s}", m)] for s in SEEDS for m in METRICS}
    ref = arms.get("ref", {})
    print("| SimCLR start | " + " | ".join(
        f"{m}: s3 / s4 (mean; diff from ref)" for m in METRICS) + " |")
    print("| --- |" + " ---: |" * len(METRICS))
    order = ["ref"] + sorted(a for a in arms if a != "ref")
    for arm in order:
        got = arms.get(arm, {})
        cells = []
        for m in METRICS:
            if not all((s, m) in got for s in SEEDS):
                cells.append("-")
                continue
            vals = [got[(s, m)] for s in SEEDS]
            cell = f"{vals[0]:.2f} / {vals[1]:.2f} ({sum(vals) / 2:.2f}"
            if arm != "ref" and all((s, m) in ref for s in SEEDS):
                diffs = [got[(s, m)] - ref[(s, m)] for s in SEEDS]
                cell += f"; {diffs[0]:+.2f} / {diffs[1]:+.2f}"
            cells.append(cell + ")")
        print(f"| {arm} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
