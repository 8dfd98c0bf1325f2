#!/usr/bin/env python3
"""Multi-crop SimCLR against the labelled-mixup reference, seed by seed.

Reads the sweeps' runs.csv (accuracy, labels the oracle counted, steps/s) and
the linear probes (probes-mc.tsv for the new runs and their SimCLR starts;
the reference starts' rows from ../cpu-2026-12-05-linear-probe/probes.tsv).
Usage: tables.py RESULTS_DIR MIXUP_8K_DIR (its mix8k_* sweeps are the reference)
"""
import csv, glob, math, os, statistics, sys

here, mixup_dir = sys.argv[1], sys.argv[2]

def runs(pattern):
    out = {}
    for path in glob.glob(pattern):
        for row in csv.DictReader(open(path)):
            out[int(row["seed"])] = row
    return out

new = runs(os.path.join(here, "mc4_8k_s*", "runs.csv"))
ref = runs(os.path.join(mixup_dir, "mix8k_*", "runs.csv"))
seeds = sorted(s for s in new if s in ref)

def probes(path, prefix):
    out = {}
    for line in open(path):
        f = line.rstrip("\n").split("\t")
        if len(f) < 3 or not f[0].startswith(prefix):
            continue
        try:
            seed = int(f[0].rsplit("-s", 1)[1])
        except ValueError:
            continue
        out.setdefault(seed, {})[f[1]] = float(f[2])
    return out

probe_dir = os.path.join(here, "..", "cpu-2026-12-05-linear-probe")
old_start = probes(os.path.join(probe_dir, "probes.tsv"), "simclr-s")
mc_path = os.path.join(here, "probes-mc.tsv")
new_start = probes(mc_path, "simclr:b100") if os.path.exists(mc_path) else {}
new_final = probes(mc_path, "b100") if os.path.exists(mc_path) else {}

def line(name, values):
    vals = [values.get(s) for s in seeds]
    got = [v for v in vals if v is not None]
    cells = " | ".join("-" if v is None else f"{v:.2f}" for v in vals)
    mean = f"{statistics.mean(got):.2f}" if got else "-"
    std = f"{statistics.stdev(got):.2f}" if len(got) > 1 else "-"
    return f"| {name} | {cells} | {mean} | {std} |"

def paired(name, a, b):
    d = [a[s] - b[s] for s in seeds if s in a and s in b]
    if len(d) < 2:
        return f"{name}: n {len(d)}"
    sd = statistics.stdev(d)
    return (f"{name}: {statistics.mean(d):+.2f} (sd {sd:.2f}, se "
            f"{sd / math.sqrt(len(d)):.2f}, n {len(d)}, {sum(x > 0 for x in d)} gain)")

acc_new = {s: 100 * float(new[s]["accuracy"]) for s in seeds}
acc_ref = {s: 100 * float(ref[s]["accuracy"]) for s in seeds}
print(f"## 100 labels, 8,000 steps, seeds {seeds}")
print("| arm | " + " | ".join(f"s{s}" for s in seeds) + " | mean | std |")
print("| --- |" + " ---: |" * (len(seeds) + 2))
print(line("mixup (reference)", acc_ref))
print(line("mixup + 4 local crops", acc_new))
print(paired("local crops - reference", acc_new, acc_ref))
print()
print("labels the oracle counted (new runs): " +
      ", ".join(f"s{s} {new[s]['labels_spent_oracle']}" for s in seeds))
print("steps/s (new runs): " + ", ".join(f"s{s} {float(new[s]['steps_per_s']):.1f}" for s in seeds))
print()
print("## Linear probes of the SimCLR start (answer key; diagnostic)")
for kind in ("probe-pool", "probe-60k", "knn-pool", "probe-bought"):
    o = {s: old_start[s][kind] for s in seeds if kind in old_start.get(s, {})}
    n = {s: new_start[s][kind] for s in seeds if kind in new_start.get(s, {})}
    print(f"### {kind}")
    print("| start | " + " | ".join(f"s{s}" for s in seeds) + " | mean | std |")
    print("| --- |" + " ---: |" * (len(seeds) + 2))
    print(line("SimCLR", o))
    print(line("SimCLR + 4 local crops", n))
    print(paired(f"{kind}: local crops - SimCLR", n, o))
print()
print("## Finished multi-crop runs: head against a linear layer on the pool's labels")
for kind in ("head", "probe-bought", "probe-pool", "probe-60k", "knn-pool"):
    print(line(kind, {s: new_final[s][kind] for s in seeds if kind in new_final.get(s, {})}))
