#!/usr/bin/env bash
# scripts/calibrate_fixmatch.sh in CPU mode on this build's binaries, with a
# stand-in for the reference (CI has no Python torch; the real
# shared/tools/fixmatch_ref.py is never project code). The stand-in records
# its arguments and the ids it was given, and reports a fixed accuracy.
#   calibrate_fixmatch_test.sh <source_dir> <build_dir>
# Checks: exit 0; every C++ run of the seed bought the same ids and the
# reference got exactly those ids (the table says "yes" on every row, and the
# ids file equals the first run's purchases); each reference variant got its
# flags, the shared steps and a --seconds deadline; the table has one row per
# C++ and reference variant; OUT holds the table, the log and the tarball.
# First, cheaply, with a stand-in for bench_labels.sh that buys and exits
# within one of the script's 1 s polls: the references still start; and a
# reference that fails is named with its exit status and last log line.
set -euo pipefail
SRC=${1:?usage: calibrate_fixmatch_test.sh <source_dir> <build_dir>}
BUILD=${2:?usage: calibrate_fixmatch_test.sh <source_dir> <build_dir>}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cat > "$TMP/ref.py" <<'PY'
import argparse, json, sys
p = argparse.ArgumentParser()
for f in ("--data", "--ids", "--out", "--pad", "--init"): p.add_argument(f, default="")
for f in ("--seed", "--steps", "--pool", "--width", "--bs", "--mu", "--eval_every"):
  p.add_argument(f, type=int, default=0)
p.add_argument("--seconds", type=float, default=0)
a = p.parse_args()
ids = [int(v) for v in open(a.ids).read().split()]
json.dump(vars(a), open(a.out + ".args.json", "w"))
with open(a.out, "w") as f:
  f.write(json.dumps(dict(final=True, labels=len(ids), step=a.steps, t=1.0, acc=0.5)) + "\n")
PY

# A source tree whose bench_labels.sh only writes the purchases and reports
# of seed 1's one C++ run, 0.3 s in, and exits.
FAKE=$TMP/fake-src
mkdir -p "$FAKE/scripts"
cp "$SRC/scripts/calibrate_fixmatch.sh" "$SRC/scripts/build_lib.sh" "$FAKE/scripts/"
cat > "$FAKE/scripts/bench_labels.sh" <<'SH'
#!/usr/bin/env bash
set -eu
sleep 0.3
d=$BENCH_OUT/b$BUDGETS-random-fixmatch-none-s$SEEDS
mkdir -p "$d"
printf 'intent 0 3,1,4\nbought 0 3:0,1:1,4:2\n' > "$d/purchases.log"
echo '{"accuracy": 0.5, "steps": 6, "steps_per_s": 1.0}' > "$d/report.json"
SH
chmod +x "$FAKE/scripts/bench_labels.sh"
env SKIP_BUILD=1 BUILD_DIR="$BUILD" OUT="$TMP/quick-out" CAL_OUT="$TMP/quick" \
  REF="$TMP/ref.py" REF_PYTHON=/usr/bin/python3 SEEDS=1 BUDGET=3 STEPS=6 \
  CPP_VARIANTS="defaults=" REF_VARIANTS="as-is= cpp-recipe=--pad,reflect" \
  bash "$FAKE/scripts/calibrate_fixmatch.sh" > "$TMP/quick.log" 2>&1 ||
  { cat "$TMP/quick.log"; fail "a sweep that ends within a poll left out the references"; }
for name in as-is cpp-recipe; do
  [[ -s $TMP/quick/ref-$name-s1/evals.jsonl ]] || { cat "$TMP/quick.log"; fail "reference $name did not run"; }
done
[[ $(tr '\n' , < "$TMP/quick/ids-s1.txt") == 3,1,4, ]] || fail "quick ids file wrong"

# A reference that exits non-zero: the script fails, and the table's cell
# gives the exit status and the last line of the reference's log (here
# argparse's complaint about a flag the stand-in does not take).
if env SKIP_BUILD=1 BUILD_DIR="$BUILD" OUT="$TMP/broken-out" CAL_OUT="$TMP/broken" \
  REF="$TMP/ref.py" REF_PYTHON=/usr/bin/python3 SEEDS=1 BUDGET=3 STEPS=6 \
  CPP_VARIANTS="defaults=" REF_VARIANTS="as-is= broken=--bogus,1" \
  bash "$FAKE/scripts/calibrate_fixmatch.sh" > "$TMP/broken.log" 2>&1; then
  cat "$TMP/broken.log"; fail "a failed reference left the exit status 0"
fi
grep -q '| reference | broken | --bogus 1 | 1 | failed (exit 2: .*unrecognized arguments: --bogus 1) |' \
  "$TMP/broken-out/calibration.md" ||
  { cat "$TMP/broken-out/calibration.md"; fail "the failed reference's row does not say why"; }
grep -q '| reference | as-is | - | 1 | 50.00 % |' "$TMP/broken-out/calibration.md" ||
  { cat "$TMP/broken-out/calibration.md"; fail "the other reference's row is wrong"; }

env SKIP_BUILD=1 BUILD_DIR="$BUILD" OUT="$TMP/out" CAL_OUT="$TMP/work" \
  REF="$TMP/ref.py" REF_PYTHON=/usr/bin/python3 SEEDS=1 BUDGET=12 STEPS=6 SWEEP_SECONDS=300 \
  CPP_VARIANTS="defaults= zeros=--weak_fill=zeros" \
  REF_VARIANTS="as-is= cpp-recipe=--pad,reflect,--init,kaiming" \
  TRAINER_FLAGS="--train_limit=600 --width=4 --batch=8 --mu=1 --label_free_dims=16 --feature_quality=false --log_every=5" \
  bash "$SRC/scripts/calibrate_fixmatch.sh" > "$TMP/log" 2>&1 ||
  { cat "$TMP/log"; fail "calibrate_fixmatch.sh exited non-zero"; }
W=$TMP/work

for f in calibration.md calibration.csv calibrate.log calibrate.tar.gz; do
  [[ -s $TMP/out/$f ]] || { ls -l "$TMP/out"; fail "no $f in OUT"; }
done
[[ $(wc -l < "$W/ids-s1.txt") == 12 ]] || fail "ids file does not hold 12 ids"
awk '$1 == "intent" { gsub(",", "\n", $3); print $3 }' \
  "$W/cpp/b12-random-fixmatch-none-s1/purchases.log" | cmp -s - "$W/ids-s1.txt" ||
  fail "ids file differs from the first run's purchases"

/usr/bin/python3 - "$W" "$TMP/out/calibration.csv" <<'PY' || { cat "$TMP/log"; fail "table or arguments wrong"; }
import csv, json, sys
work, table = sys.argv[1], sys.argv[2]
def check(cond, what):
  if not cond:
    print("check failed:", what); sys.exit(1)
rows = list(csv.DictReader(open(table)))
check([(r["side"], r["variant"]) for r in rows] ==
      [("C++", "defaults"), ("C++", "zeros"), ("reference", "as-is"),
       ("reference", "cpp-recipe")], rows)
for r in rows:
  check(r["same_ids"] == "yes", "same ids: %s" % r)
  check(float(r["accuracy_pct"]) >= 0 and r["seed"] == "1", r)
check(rows[1]["flags"] == "--weak_fill=zeros", rows[1])
for name, pad, init in (("as-is", "", ""), ("cpp-recipe", "reflect", "kaiming")):
  a = json.load(open("%s/ref-%s-s1/evals.jsonl.args.json" % (work, name)))
  check(a["pad"] == pad and a["init"] == init, (name, a))
  check(a["steps"] == 6 and a["seed"] == 1 and a["seconds"] > 0, (name, a))
  check(a["pool"] == 2000 and a["width"] == 8, "CPU sizes: %s" % a)
check(float(rows[2]["accuracy_pct"]) == 50.0, rows[2])
PY
grep -q -- "--weak_fill=zeros" "$W/cpp/b12-random-fixmatch-none-weak_fill_zeros-s1/command.txt" ||
  fail "C++ variant flag missing"
echo "PASS"
