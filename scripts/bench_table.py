#!/usr/bin/python3
"""Aggregates a scripts/bench_labels.sh sweep into table.md, table.csv, runs.csv.

  bench_table.py SWEEP_DIR [--gpu_name=NAME]

Reads (all written by bench_labels.sh):
  SWEEP_DIR/runs.tsv      one line per trainer start: run, budget, seed,
                          strategy, objective, pretrain, extra, experiment
                          (tab-separated, with a header line)
  SWEEP_DIR/<run>/rc      the trainer's exit status
  SWEEP_DIR/<run>/report.json
  SWEEP_DIR/summary.txt   `oraclectl summary` of the sweep's database
  SWEEP_DIR/verify.txt    `oraclectl verify` of it
Also reads SWEEP_DIR/skipped.txt (runs skipped at the deadline) and
SWEEP_DIR/notes.txt (footer lines: a shuffled data set, MPS), if any.
Writes SWEEP_DIR/runs.csv (one line per trainer start), SWEEP_DIR/table.csv
and SWEEP_DIR/table.md (one row per budget and variant: accuracy over seeds,
labels spent as the oracle counts them, feature quality, time, speed; below
it, per class: test accuracy and labels bought, each a mean over the counted
seeds, also in SWEEP_DIR/per_class.csv; then, for every budget with more
than one variant, each later variant paired against the budget's first, seed
by seed: the mean difference in accuracy and its standard error, also in
SWEEP_DIR/paired.csv).
For a (budget, variant, seed) started more than once (a retry), the last
start that exited 0 with a report counts. Exit status 3 when some
(budget, variant, seed) has no result or no run was started, 0 otherwise. Standard library only.
"""
import csv
import json
import os
import statistics
import sys


def read_summary(path):
  """Maps experiment -> (budget, spent) from `oraclectl summary` output."""
  usage = {}
  if not os.path.exists(path):
    return usage
  with open(path) as f:
    lines = f.read().splitlines()
  header = None
  for line in lines:
    fields = line.split()
    if not fields:
      continue
    if fields[0] == "experiment" and "spent" in fields:
      header = fields
      continue
    if header is None or len(fields) != len(header):
      continue
    row = dict(zip(header, fields))
    try:
      usage[row["experiment"]] = (int(row["budget"]), int(row["spent"]))
    except ValueError:
      continue
  return usage


def read_report(path):
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def read_rc(path):
  try:
    with open(path) as f:
      return int(f.read().strip())
  except (OSError, ValueError):
    return None


def fmt(value, digits=2):
  return "-" if value is None else "%.*f" % (digits, value)


def mean_or_none(values):
  values = [v for v in values if v is not None]
  return statistics.mean(values) if values else None


def per_class_means(members):
  """(class names, accuracy % per class, labels bought per class), each a
  mean over the runs in `members` whose reports name the classes; None when
  none does. Labels come from the report's `queried` list. The accuracies
  are None when no report has them (the oracle withholds them when a class
  was predicted for too few test images), else means over those that do."""
  reports = [m["report"] for m in members if m["report"].get("class_names")]
  if not reports:
    return None
  names = reports[0]["class_names"]
  scored = [r for r in reports if r.get("per_class_accuracy")]
  accuracy = [statistics.mean(100.0 * r["per_class_accuracy"][c]
                              for r in scored) if scored else None
              for c in range(len(names))]
  bought = []
  for r in reports:
    counts = [0] * len(names)
    for q in r.get("queried") or []:
      if 0 <= q.get("label", -1) < len(names):
        counts[q["label"]] += 1
    bought.append(counts)
  labels = [statistics.mean(b[c] for b in bought) for c in range(len(names))]
  return names, accuracy, labels


def main(argv):
  if len(argv) < 2:
    sys.stderr.write(__doc__)
    return 2
  sweep = argv[1]
  gpu_name = "cpu"
  for arg in argv[2:]:
    if arg.startswith("--gpu_name="):
      gpu_name = arg.split("=", 1)[1] or "cpu"
  with open(os.path.join(sweep, "runs.tsv")) as f:
    starts = list(csv.DictReader(f, delimiter="\t"))
  usage = read_summary(os.path.join(sweep, "summary.txt"))

  # One record per trainer start.
  runs = []
  for start in starts:
    run_dir = os.path.join(sweep, start["run"])
    report = read_report(os.path.join(run_dir, "report.json"))
    rc = read_rc(os.path.join(run_dir, "rc"))
    oracle_budget, oracle_spent = usage.get(start["experiment"], (None, None))
    record = dict(start)
    record.update(rc=rc, oracle_budget=oracle_budget, oracle_spent=oracle_spent,
                  ok=(rc == 0 and report is not None), report=report or {})
    runs.append(record)

  with open(os.path.join(sweep, "runs.csv"), "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["run", "budget", "seed", "strategy", "objective",
                     "pretrain", "extra", "experiment", "rc", "accuracy",
                     "labels_spent_oracle", "budget_oracle",
                     "labels_spent_report", "pretrain_reused", "steps",
                     "steps_per_s", "wall_time_s", "device"])
    for r in runs:
      rep = r["report"]
      writer.writerow([
          r["run"], r["budget"], r["seed"], r["strategy"], r["objective"],
          r["pretrain"], r["extra"], r["experiment"],
          "" if r["rc"] is None else r["rc"], rep.get("accuracy", ""),
          "" if r["oracle_spent"] is None else r["oracle_spent"],
          "" if r["oracle_budget"] is None else r["oracle_budget"],
          rep.get("labels_spent", ""),
          str(rep.get("pretrain", {}).get("reused", "")).lower(),
          rep.get("steps", ""), rep.get("steps_per_s", ""),
          rep.get("wall_time_s", ""), rep.get("device", "")])

  # The counted start per (budget, variant, seed): the last good one, else
  # the last one.
  counted = {}
  groups = []  # group keys in order of first appearance
  for r in runs:
    group = (r["budget"], r["strategy"], r["objective"], r["pretrain"],
             r["extra"])
    if group not in groups:
      groups.append(group)
    key = group + (r["seed"],)
    if r["ok"] or key not in counted or not counted[key]["ok"]:
      counted[key] = r
  groups.sort(key=lambda g: int(g[0]))

  header = ["budget", "strategy", "objective", "pretrain", "extra", "seeds",
            "accuracy_mean_pct", "accuracy_std_pct", "accuracy_per_seed_pct",
            "labels_spent_oracle", "fq_stage", "fq_labels",
            "fq_embedding_knn_pct", "fq_pca_knn_pct", "wall_time_s_per_run",
            "steps_per_s", "device", "failed_seeds"]
  rows = []
  for group in groups:
    seeds = [k[-1] for k in counted if k[:-1] == group]
    seeds.sort(key=int)
    members = [counted[group + (s,)] for s in seeds]
    good = [m for m in members if m["ok"]]
    accs = [100.0 * m["report"]["accuracy"] for m in good]
    fq = [m["report"].get("feature_quality") or [] for m in good]
    fq = [f[0] for f in fq if f]
    devices = sorted({gpu_name if str(m["report"].get("device", "")).startswith(
        "cuda") else "cpu" for m in good})
    rows.append({
        "budget": group[0], "strategy": group[1], "objective": group[2],
        "pretrain": group[3], "extra": group[4], "seeds": len(good),
        "accuracy_mean_pct": statistics.mean(accs) if accs else None,
        "accuracy_std_pct": statistics.stdev(accs) if len(accs) > 1 else None,
        "accuracy_per_seed_pct": " ".join(
            "s%s=%.2f" % (m["seed"], 100.0 * m["report"]["accuracy"])
            for m in good),
        "labels_spent_oracle": " ".join(
            "s%s=%s" % (m["seed"], "?" if m["oracle_spent"] is None
                        else m["oracle_spent"]) for m in members),
        "fq_stage": ",".join(sorted({f.get("stage", "") for f in fq})),
        "fq_labels": ",".join(sorted({str(f.get("labels", "")) for f in fq})),
        "fq_embedding_knn_pct": mean_or_none(
            [100.0 * f["embedding_accuracy"] for f in fq]),
        "fq_pca_knn_pct": mean_or_none([100.0 * f["pca_accuracy"] for f in fq]),
        "wall_time_s_per_run": mean_or_none(
            [m["report"].get("wall_time_s") for m in good]),
        "steps_per_s": mean_or_none(
            [m["report"].get("steps_per_s") for m in good]),
        "device": ",".join(devices) or "-",
        "failed_seeds": " ".join(m["seed"] for m in members if not m["ok"]),
        "per_class": per_class_means(good),
        "accuracy_by_seed": {m["seed"]: 100.0 * m["report"]["accuracy"]
                             for m in good},
    })

  numeric = {"accuracy_mean_pct": 2, "accuracy_std_pct": 2,
             "fq_embedding_knn_pct": 2, "fq_pca_knn_pct": 2,
             "wall_time_s_per_run": 1, "steps_per_s": 1}
  with open(os.path.join(sweep, "table.csv"), "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    for row in rows:
      writer.writerow(["" if row[h] is None else
                       ("%.*f" % (numeric[h], row[h]) if h in numeric
                        else row[h]) for h in header])

  md_header = ["budget", "strategy", "objective", "pretrain", "extra",
               "seeds", "accuracy % mean", "std", "per seed",
               "labels spent (oracle)", "kNN emb % / PCA % (stage, labels)",
               "wall s/run", "steps/s", "device"]
  lines = ["| " + " | ".join(md_header) + " |",
           "|" + "|".join(" --- " if i < 5 or i in (8, 9, 10, 13) else " ---: "
                          for i in range(len(md_header))) + "|"]
  for row in rows:
    fq_text = "-"
    if row["fq_embedding_knn_pct"] is not None:
      fq_text = "%s / %s (%s, %s)" % (
          fmt(row["fq_embedding_knn_pct"], 1), fmt(row["fq_pca_knn_pct"], 1),
          row["fq_stage"], row["fq_labels"])
    seeds = str(row["seeds"])
    if row["failed_seeds"]:
      seeds += " (failed: %s)" % row["failed_seeds"]
    cells = [row["budget"], row["strategy"], row["objective"], row["pretrain"],
             row["extra"] or "-", seeds, fmt(row["accuracy_mean_pct"]),
             fmt(row["accuracy_std_pct"]), row["accuracy_per_seed_pct"] or "-",
             row["labels_spent_oracle"], fq_text,
             fmt(row["wall_time_s_per_run"], 1), fmt(row["steps_per_s"], 1),
             row["device"]]
    lines.append("| " + " | ".join(str(c) for c in cells) + " |")

  lines.append("")
  trained = [r for r in runs if r["ok"] and r["report"].get(
      "pretrain", {}).get("method", "none") not in ("", "none")]
  reused = sum(1 for r in trained if r["report"]["pretrain"].get("reused"))
  rates = ["%s %.1f" % (r["run"], r["report"]["pretrain"]["steps"] /
                        r["report"]["pretrain"]["wall_time_s"])
           for r in trained if not r["report"]["pretrain"].get("reused") and
           r["report"]["pretrain"].get("wall_time_s")]
  lines.append("Pretraining: %d runs pretrained, %d reused a cached checkpoint%s."
               % (len(trained) - reused, reused,
                  "; steps/s over each stage's wall time: " + ", ".join(rates)
                  if rates else ""))
  mismatched = [r["run"] for r in runs if r["ok"] and
                r["oracle_spent"] != int(r["budget"])]
  lines.append("Labels spent equal to the budget (oracle's count) in every "
               "counted run: %s" % ("yes" if not mismatched else
                                    "NO: " + ", ".join(mismatched)))
  failed = [r for r in runs if not r["ok"]]
  for r in failed:
    lines.append("Failed start: %s (exit %s; the oracle counted %s labels for "
                 "%s)" % (r["run"], r["rc"], "?" if r["oracle_spent"] is None
                          else r["oracle_spent"], r["experiment"]))
  missing = ["b%s %s:%s:%s%s seed %s" % (k[0], k[1], k[2], k[3],
                                        (":" + k[4]) if k[4] else "", k[5])
             for k, r in counted.items() if not r["ok"]]
  if missing:
    lines.append("Runs without a result: " + "; ".join(missing))
  fitted = ["%s (%d of %d)" % (r["run"], r["report"]["steps"],
                               r["report"]["planned_steps"])
            for r in runs if r["ok"] and r["report"].get("steps", 0) <
            r["report"].get("planned_steps", 0)]
  if fitted:
    lines.append("Fitted to the deadline (steps taken of planned; the whole "
                 "schedule in fewer steps): " + ", ".join(fitted))
  skipped_path = os.path.join(sweep, "skipped.txt")
  if os.path.exists(skipped_path):
    lines.append("Skipped at the deadline (SWEEP_SECONDS): " + ", ".join(
        open(skipped_path).read().split()))
  notes_path = os.path.join(sweep, "notes.txt")
  if os.path.exists(notes_path):
    lines += [l.strip() for l in open(notes_path) if l.strip()]
  verify_path = os.path.join(sweep, "verify.txt")
  verify = open(verify_path).read().strip() if os.path.exists(
      verify_path) else "(not run)"
  lines.append("`oraclectl verify`: " + verify.replace("\n", "; "))
  lines.append("")
  lines += per_class_table(sweep, rows)
  lines += paired_table(sweep, rows)
  if not runs:
    lines.append("No run was started.")
  # One newline at the end, so that what the caller prints next starts a
  # line of its own.
  text = "\n".join(lines).rstrip("\n") + "\n"
  with open(os.path.join(sweep, "table.md"), "w") as f:
    f.write(text)
  sys.stdout.write(text)
  return 3 if missing or not runs else 0


def variant_name(row):
  """The row's variant as VARIANTS spells it (strategy:objective:pretrain,
  then the extra flags)."""
  return ":".join([row["strategy"], row["objective"], row["pretrain"]] +
                  row["extra"].split())


def paired_table(sweep, rows):
  """Writes SWEEP_DIR/paired.csv and returns table.md's paired lines: for
  every budget with more than one variant, each later variant against the
  budget's first (the sweep's order), on the seeds both have a result. The
  runs of one seed share its pretrained checkpoint and random draws (and the
  first labels bought, where the variants do not change how), so much of the
  spread between seeds cancels in the difference; its standard error is the
  differences' standard deviation over the square root of their number
  (none for one seed). No lines, and no paired.csv (an earlier one is
  removed), when no budget has two variants."""
  pairs = []
  for budget in sorted({r["budget"] for r in rows}, key=int):
    same = [r for r in rows if r["budget"] == budget]
    base = same[0]
    for row in same[1:]:
      seeds = sorted(set(base["accuracy_by_seed"]) &
                     set(row["accuracy_by_seed"]), key=int)
      diffs = [row["accuracy_by_seed"][s] - base["accuracy_by_seed"][s]
               for s in seeds]
      pairs.append({
          "budget": budget, "variant": variant_name(row),
          "against": variant_name(base), "seeds": len(seeds),
          "mean": statistics.mean(diffs) if diffs else None,
          "se": (statistics.stdev(diffs) / len(diffs) ** 0.5
                 if len(diffs) > 1 else None),
          "per_seed": " ".join("s%s=%+.2f" % (s, d)
                               for s, d in zip(seeds, diffs))})
  csv_path = os.path.join(sweep, "paired.csv")
  if not pairs:
    if os.path.exists(csv_path):
      os.remove(csv_path)
    return []
  with open(csv_path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["budget", "variant", "against", "seeds",
                     "difference_mean_pct", "standard_error_pct",
                     "difference_per_seed_pct"])
    for p in pairs:
      writer.writerow([p["budget"], p["variant"], p["against"], p["seeds"],
                       "" if p["mean"] is None else "%.2f" % p["mean"],
                       "" if p["se"] is None else "%.2f" % p["se"],
                       p["per_seed"]])
  lines = ["Paired against the first variant of each budget, on the seeds "
           "both have a result: test accuracy difference in points, mean and "
           "standard error over those seeds (a difference within about two "
           "standard errors of 0 is a tie).", "",
           "| budget | variant | against | seeds | difference | standard "
           "error | per seed |",
           "| --- | --- | --- | ---: | ---: | ---: | --- |"]
  for p in pairs:
    mean = "-" if p["mean"] is None else "%+.2f" % p["mean"]
    lines.append("| %s | %s | %s | %d | %s | %s | %s |" % (
        p["budget"], p["variant"], p["against"], p["seeds"], mean,
        fmt(p["se"]), p["per_seed"] or "-"))
  lines.append("")
  return lines


def per_class_table(sweep, rows):
  """Writes SWEEP_DIR/per_class.csv and returns table.md's per-class lines
  (none when no report names its classes)."""
  rows = [r for r in rows if r["per_class"]]
  if not rows:
    return []
  names = rows[0]["per_class"][0]
  with open(os.path.join(sweep, "per_class.csv"), "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["budget", "strategy", "objective", "pretrain", "extra",
                     "seeds", "class", "accuracy_mean_pct", "labels_mean"])
    for row in rows:
      for name, acc, labels in zip(*row["per_class"]):
        writer.writerow([row["budget"], row["strategy"], row["objective"],
                         row["pretrain"], row["extra"], row["seeds"], name,
                         "" if acc is None else "%.2f" % acc, "%.2f" % labels])
  lines = ["Per class, mean over the counted seeds: test accuracy % / labels "
           "bought (accuracy \"-\" where the oracle withheld it: some class "
           "predicted for too few test images).", "",
           "| budget | variant | " + " | ".join(names) + " |",
           "| --- | --- |" + " ---: |" * len(names)]
  for row in rows:
    variant = variant_name(row)
    cells = ["%s / %.1f" % (fmt(acc, 1), labels)
             for acc, labels in zip(row["per_class"][1], row["per_class"][2])]
    lines.append("| %s | %s | %s |" % (row["budget"], variant,
                                        " | ".join(cells)))
  lines.append("")
  return lines


if __name__ == "__main__":
  sys.exit(main(sys.argv))
