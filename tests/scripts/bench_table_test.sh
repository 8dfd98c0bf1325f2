#!/usr/bin/env bash
# scripts/bench_table.py on a hand-made sweep folder (no trainer, no oracle):
# two seeds of one variant, one of them fitted to the deadline, and a
# failed start.
#   bench_table_test.sh <source_dir>
# Checks: the row's mean, standard deviation and per-seed accuracies, the
# oracle's label counts, the footer lines on pretraining (with the SimCLR
# rate of the run that pretrained) and on the fitted run with its steps, the
# failed start, exit status 3 for a seed without a result, and the per-class
# accuracy and labels bought (table.md and per_class.csv), means over the
# seeds with a result (accuracy over those the oracle did not withhold it
# from, "-" when it withheld every one); the paired differences against
# each budget's first variant (seeds both have, standard error, one seed,
# none for a budget with one variant or a sweep with one variant).
set -euo pipefail
SRC=${1:?usage: bench_table_test.sh <source_dir>}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3

S=$TMP/sweep
mkdir -p "$S"
printf 'run\tbudget\tseed\tstrategy\tobjective\tpretrain\textra\texperiment\n' > "$S/runs.tsv"
report() {  # report RUN ACCURACY PLANNED_STEPS PRETRAIN_REUSED PER_CLASS QUERIED
  mkdir -p "$S/$1"
  echo 0 > "$S/$1/rc"
  cat > "$S/$1/report.json" <<JSON
{"accuracy": $2, "labels_spent": 10, "steps": 500, "planned_steps": $3,
 "steps_per_s": 50.0, "wall_time_s": 12.5, "device": "cpu",
 "class_names": ["Coat", "Shirt"], "per_class_accuracy": $5, "queried": $6,
 "pretrain": {"method": "simclr", "reused": $4, "steps": 300, "wall_time_s": 60.0}}
JSON
}
for seed in 0 1; do
  run=b10-random-fixmatch-none-s$seed
  printf '%s\t10\t%s\trandom\tfixmatch\tnone\t\tbench-%s\n' "$run" "$seed" "$run" >> "$S/runs.tsv"
done
report b10-random-fixmatch-none-s0 0.70 2000 false '[0.6, 0.8]' \
  '[{"id": 4, "label": 0}, {"id": 9, "label": 0}, {"id": 2, "label": 1}]'
report b10-random-fixmatch-none-s1 0.80 500 true '[0.8, 0.8]' \
  '[{"id": 4, "label": 0}, {"id": 7, "label": 1}, {"id": 2, "label": 1}]'
printf 'b10-random-fixmatch-none-s2\t10\t2\trandom\tfixmatch\tnone\t\tbench-b10-random-fixmatch-none-s2\n' >> "$S/runs.tsv"
mkdir -p "$S/b10-random-fixmatch-none-s2" && echo 1 > "$S/b10-random-fixmatch-none-s2/rc"
cat > "$S/summary.txt" <<'TXT'
experiment                        budget  spent  remaining  granted  denied  evaluations
bench-b10-random-fixmatch-none-s0     10     10          0        1       0            1
bench-b10-random-fixmatch-none-s1     10     10          0        1       0            1
TXT
echo "OK: 5 rows verified" > "$S/verify.txt"

rc=0
"$PY" "$SRC/scripts/bench_table.py" "$S" > "$TMP/out" 2>&1 || rc=$?
[[ $rc == 3 ]] || { cat "$TMP/out"; fail "exit status $rc, not 3 (seed 2 has no result)"; }
grep -q '^| 10 | random | fixmatch | none | - | 2 (failed: 2) | 75.00 | 7.07 | s0=70.00 s1=80.00 | s0=10 s1=10 s2=? |' "$S/table.md" ||
  { cat "$S/table.md"; fail "table row"; }
grep -qx 'Fitted to the deadline (steps taken of planned; the whole schedule in fewer steps): b10-random-fixmatch-none-s0 (500 of 2000)' "$S/table.md" ||
  { cat "$S/table.md"; fail "no fitted-run footer"; }
grep -qx 'Pretraining: 1 runs pretrained, 1 reused a cached checkpoint; steps/s over each stage.s wall time: b10-random-fixmatch-none-s0 5.0.' "$S/table.md" ||
  { cat "$S/table.md"; fail "pretraining line"; }
grep -q '^Failed start: b10-random-fixmatch-none-s2 (exit 1' "$S/table.md" ||
  { cat "$S/table.md"; fail "failed start not listed"; }
grep -q '^b10-random-fixmatch-none-s0,10,0,random,fixmatch,none,,bench-b10-random-fixmatch-none-s0,0,0.7,10,10,10,false,500,' "$S/runs.csv" ||
  { cat "$S/runs.csv"; fail "runs.csv"; }
grep -qx '| 10 | random:fixmatch:none | 70.0 / 1.5 | 80.0 / 1.5 |' "$S/table.md" ||
  { cat "$S/table.md"; fail "per-class row (seed 2 failed: not counted)"; }
grep -q '^10,random,fixmatch,none,,2,Coat,70.00,1.50' "$S/per_class.csv" ||
  { cat "$S/per_class.csv"; fail "per_class.csv"; }

# Per-class accuracy withheld by the oracle (empty lists) in seed 1: the
# accuracies are seed 0's, the labels bought still both seeds'; withheld in
# both: "-" and an empty CSV cell.
report b10-random-fixmatch-none-s1 0.80 500 true '[]' \
  '[{"id": 4, "label": 0}, {"id": 7, "label": 1}, {"id": 2, "label": 1}]'
"$PY" "$SRC/scripts/bench_table.py" "$S" > "$TMP/out" 2>&1 || true
grep -qx '| 10 | random:fixmatch:none | 60.0 / 1.5 | 80.0 / 1.5 |' "$S/table.md" ||
  { cat "$S/table.md"; fail "per-class row with one seed withheld"; }
report b10-random-fixmatch-none-s0 0.70 2000 false '[]' \
  '[{"id": 4, "label": 0}, {"id": 9, "label": 0}, {"id": 2, "label": 1}]'
"$PY" "$SRC/scripts/bench_table.py" "$S" > "$TMP/out" 2>&1 || true
grep -qx '| 10 | random:fixmatch:none | - / 1.5 | - / 1.5 |' "$S/table.md" ||
  { cat "$S/table.md"; fail "per-class row with every seed withheld"; }
grep -q '^10,random,fixmatch,none,,2,Coat,,1.50' "$S/per_class.csv" ||
  { cat "$S/per_class.csv"; fail "per_class.csv with every seed withheld"; }
# One variant per budget: nothing to pair (an earlier paired.csv goes).
echo stale > "$S/paired.csv"
"$PY" "$SRC/scripts/bench_table.py" "$S" > "$TMP/out" 2>&1 || true
[[ ! -e $S/paired.csv ]] && ! grep -q '^Paired' "$S/table.md" ||
  fail "a paired table for a sweep with one variant"

# Paired differences: budget 10 has a first variant (seeds 0-2), a second
# (seed 2 failed: paired on seeds 0 and 1) and a third (seed 1 only: no
# standard error); budget 20 has one variant and no pair.
S=$TMP/paired
mkdir -p "$S"
printf 'run\tbudget\tseed\tstrategy\tobjective\tpretrain\textra\texperiment\n' > "$S/runs.tsv"
start() {  # start RUN BUDGET SEED STRATEGY EXTRA
  printf '%s\t%s\t%s\t%s\tfixmatch\tnone\t%s\tbench-%s\n' "$1" "$2" "$3" "$4" "$5" "$1" >> "$S/runs.tsv"
}
for run in base-s0:10:0:typiclust::0.80 base-s1:10:1:typiclust::0.70 base-s2:10:2:typiclust::0.75 \
           two-s0:10:0:typiclust:--lambda_c=1:0.83 two-s1:10:1:typiclust:--lambda_c=1:0.72 \
           three-s1:10:1:random::0.60 other-s0:20:0:typiclust::0.90; do
  IFS=: read -r name budget seed strategy extra acc <<< "$run"
  start "$name" "$budget" "$seed" "$strategy" "$extra"
  report "$name" "$acc" 500 false '[0.5, 0.5]' '[]'
done
start two-s2 10 2 typiclust --lambda_c=1
mkdir -p "$S/two-s2" && echo 1 > "$S/two-s2/rc"
: > "$S/summary.txt"
"$PY" "$SRC/scripts/bench_table.py" "$S" > "$TMP/out" 2>&1 || true
grep -qx '| 10 | typiclust:fixmatch:none:--lambda_c=1 | typiclust:fixmatch:none | 2 | +2.50 | 0.50 | s0=+3.00 s1=+2.00 |' "$S/table.md" ||
  { cat "$S/table.md"; fail "paired row on the two seeds both have"; }
grep -qx '| 10 | random:fixmatch:none | typiclust:fixmatch:none | 1 | -10.00 | - | s1=-10.00 |' "$S/table.md" ||
  { cat "$S/table.md"; fail "paired row on one seed"; }
grep -q '^| 20 | .* | .* | [0-9]* | ' <(sed -n '/^Paired/,$p' "$S/table.md") &&
  { cat "$S/table.md"; fail "budget 20 has one variant: nothing to pair"; }
tr -d '\r' < "$S/paired.csv" |
  grep -qx '10,typiclust:fixmatch:none:--lambda_c=1,typiclust:fixmatch:none,2,2.50,0.50,s0=+3.00 s1=+2.00' ||
  { cat "$S/paired.csv"; fail "paired.csv"; }

# A sweep whose every run was skipped at the deadline: exit 3, the note, and
# table.md ends with a newline (the sweep log prints the next line after it).
S=$TMP/skipped
mkdir -p "$S"
printf 'run\tbudget\tseed\tstrategy\tobjective\tpretrain\textra\texperiment\n' > "$S/runs.tsv"
echo b10-random-fixmatch-none-s0 > "$S/skipped.txt"   # never started: not in runs.tsv
: > "$S/summary.txt"
rc=0
"$PY" "$SRC/scripts/bench_table.py" "$S" > "$TMP/out" 2>&1 || rc=$?
[[ $rc == 3 ]] || { cat "$TMP/out"; fail "exit status $rc, not 3 (no run was started)"; }
grep -qx 'No run was started.' "$S/table.md" || { cat "$S/table.md"; fail "no-run note"; }
[[ $(tail -c 1 "$S/table.md" | od -An -c | tr -d ' ') == '\n' ]] ||
  { od -c "$S/table.md" | tail -3; fail "table.md does not end with a newline"; }
[[ $(tail -c 1 "$TMP/out" | od -An -c | tr -d ' ') == '\n' ]] ||
  fail "the printed table does not end with a newline"
echo "PASS"
