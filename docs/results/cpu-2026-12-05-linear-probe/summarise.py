#!/usr/bin/env python3
"""Table of probes.tsv (run_probes.sh's output): one row per checkpoint kind
and measure, a column per seed, the mean, and the upper-body garments'
per-class mean (T-shirt, pullover, coat, shirt)."""
import collections, sys

rows = collections.defaultdict(dict)   # (kind, measure) -> seed -> (acc, per_class)
for line in open(sys.argv[1] if len(sys.argv) > 1 else "probes.tsv"):
    f = line.rstrip("\n").split("\t")
    if len(f) < 4 or f[1].startswith("pool:"):
        continue
    kind, seed = f[0].rsplit("-s", 1)
    rows[(kind, f[1])][int(seed)] = (float(f[2]), [float(x) for x in f[3].split()])
seeds = sorted({s for v in rows.values() for s in v})
print("| checkpoint | measure | " + " | ".join(f"s{s}" for s in seeds) + " | mean | upper-body mean |")
print("| --- | --- |" + " ---: |" * (len(seeds) + 2))
for (kind, measure), by_seed in rows.items():
    cells = [f"{by_seed[s][0]:.2f}" if s in by_seed else "-" for s in seeds]
    accs = [a for a, _ in by_seed.values()]
    upper = [sum(pc[i] for i in (0, 2, 4, 6)) / 4 for _, pc in by_seed.values()]
    print(f"| {kind} | {measure} | " + " | ".join(cells) +
          f" | {sum(accs)/len(accs):.2f} | {sum(upper)/len(upper):.1f} |")
