#!/usr/bin/env bash
# scripts/bench_labels.sh on this build's binaries with tiny settings: two
# budgets x two seeds x two variants (one with SimCLR pretraining and
# FlexMatch), two trainers at once.
#   bench_labels_test.sh <source_dir> <build_dir>
# First, cheaply: a PARALLEL that is not a positive integer or a RETRY other
# than 0 or 1 is refused with a message naming it, before BENCH_OUT exists.
# Then: the sweep exits 0; SWEEP_SECONDS reaches the trainers shared (a
# pretraining run gets all the time left, the next a third); table.csv has
# the 4 (budget, variant) rows with a numeric accuracy mean and standard
# deviation over 2 seeds; every run's labels spent, as `oraclectl summary`
# counts them, equal its budget (also in the table); `oraclectl verify` is
# OK and in the table's footer; the pretraining cache holds one checkpoint
# per seed; per seed exactly one SimCLR run pretrained and the other
# reported "reused": true. A dry run keys checkpoints by seed, model and
# pretraining flags.
# Then a one-run sweep with SHUFFLE_SEED and SHUFFLE_PREFIX (when the real
# data set is installed): it runs on BENCH_OUT/data, the table's footer says
# so, only the prefix (the trainer's pool) is permuted, and every label the
# trainer bought is the shuffled file's label of that id (the oracle and the
# trainer read the same shuffled copy). A sweep whose SWEEP_SECONDS leave no
# time for some runs skips them and exits non-zero. Variants too long for
# the oracle's experiment names run under shortened, distinct names.
set -euo pipefail
SRC=${1:?usage: bench_labels_test.sh <source_dir> <build_dir>}
BUILD=${2:?usage: bench_labels_test.sh <source_dir> <build_dir>}
PY=/usr/bin/python3
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
OUT=$TMP/sweep

for bad in PARALLEL=0 PARALLEL=x PARALLEL=-1 RETRY=yes; do
  if env SKIP_BUILD=1 BUILD_DIR="$BUILD" BENCH_OUT="$TMP/bad" DRY_RUN=1 "$bad" \
      bash "$SRC/scripts/bench_labels.sh" > "$TMP/bad.log" 2>&1; then
    cat "$TMP/bad.log"; fail "bench_labels.sh accepted $bad"
  fi
  grep -q "error: ${bad%%=*} '${bad#*=}' is not " "$TMP/bad.log" ||
    { cat "$TMP/bad.log"; fail "no clear error for $bad"; }
  [[ ! -e $TMP/bad ]] || fail "$bad created BENCH_OUT"
done

# Without OMP_NUM_THREADS (scripts/test.sh sets it for ctest), the sweep
# divides the CPUs among its PARALLEL trainers.
THREADS=$(( $(nproc) / 2 )); (( THREADS > 0 )) || THREADS=1
env -u OMP_NUM_THREADS SKIP_BUILD=1 BUILD_DIR="$BUILD" BENCH_OUT="$OUT" BUDGETS="10 20" SEEDS="0 1" \
  VARIANTS="random:fixmatch:none typiclust:flexmatch:simclr" PARALLEL=2 SCHEDULE=100% \
  SWEEP_SECONDS=600 \
  TRAINER_FLAGS="--train_limit=500 --width=4 --batch=8 --mu=1 --steps=10 --pretrain_steps=4 --pretrain_batch=16 --label_free_dims=16 --feature_quality=false --log_every=5" \
  bash "$SRC/scripts/bench_labels.sh" > "$TMP/log" 2>&1 ||
  { cat "$TMP/log"; fail "bench_labels.sh exited non-zero"; }

for f in table.md table.csv runs.csv summary.txt verify.txt sweep.log; do
  [[ -s $OUT/$f ]] || { cat "$TMP/log"; fail "no $f"; }
done
grep -q "^OK: .* rows verified" "$OUT/verify.txt" || { cat "$OUT/verify.txt"; fail "audit log not verified"; }
grep -q '^`oraclectl verify`: OK: .* rows verified' "$OUT/table.md" ||
  { cat "$OUT/table.md"; fail "verify missing from the table's footer"; }
grep -q "^\[bench +[0-9]*s\] device cpu .* parallel 2, $THREADS CPU threads each\$" "$TMP/log" ||
  { cat "$TMP/log"; fail "no line saying $THREADS CPU threads per trainer"; }
grep -q "^\[bench +[0-9]*s\] start b10-typiclust-flexmatch-simclr-s0 (" "$TMP/log" ||
  { cat "$TMP/log"; fail "no progress line"; }
# The deadline is shared. The queue starts with the two runs that pretrain
# (each gets all of the 555 s before the deadline, less what the sweep took
# to start); the third of 8 runs, two at a time, gets a third of that.
limit() { grep -o -- '--max_train_seconds=[0-9]*' "$OUT/$1/command.txt" | cut -d= -f2; }
third=$(sed -n 's/^\[bench +[0-9]*s\] start \([^ ]*\) (3\/8,.*/\1/p' "$TMP/log")
[[ $third == b10-random-fixmatch-none-s0 ]] || { cat "$TMP/log"; fail "third run is '$third'"; }
owner=$(limit b10-typiclust-flexmatch-simclr-s0) share=$(limit "$third")
(( owner > 450 && owner <= 555 && share > 120 && share <= 185 )) ||
  fail "--max_train_seconds $owner (pretraining run) and $share (third run) are not all and a third of 555 s"

"$PY" - "$OUT" "$THREADS" <<'PY' || { cat "$TMP/log"; cat "$OUT/table.md"; fail "table or runs wrong"; }
import csv, glob, json, os, sys
out, threads = sys.argv[1], sys.argv[2]
def check(cond, what):
  if not cond:
    print("check failed:", what); sys.exit(1)

rows = list(csv.DictReader(open(os.path.join(out, "table.csv"))))
check(len(rows) == 4, "4 table rows, got %d" % len(rows))
keys = sorted((r["budget"], r["strategy"], r["pretrain"]) for r in rows)
check(keys == [("10", "random", "none"), ("10", "typiclust", "simclr"),
               ("20", "random", "none"), ("20", "typiclust", "simclr")], keys)
for r in rows:
  check(r["seeds"] == "2", "2 seeds in %s" % r)
  mean, std = float(r["accuracy_mean_pct"]), float(r["accuracy_std_pct"])
  check(0 <= mean <= 100 and std >= 0, "mean/std in range: %s" % r)
  check(r["labels_spent_oracle"] == "s0=%s s1=%s" % (r["budget"], r["budget"]),
        "oracle's count in the table: %s" % r)
  check(r["device"] == "cpu" and r["failed_seeds"] == "", r)
  check(float(r["wall_time_s_per_run"]) > 0 and float(r["steps_per_s"]) > 0, r)

runs = list(csv.DictReader(open(os.path.join(out, "runs.csv"))))
check(len(runs) == 8, "8 runs, got %d" % len(runs))
for r in runs:
  check(r["rc"] == "0", "run %s exit %s" % (r["run"], r["rc"]))
  check(r["labels_spent_oracle"] == r["budget"] == r["budget_oracle"],
        "oracle counted the budget for %s: %s" % (r["run"], r))
  config = json.load(open(os.path.join(out, r["run"], "report.json")))["config"]
  check(config["cpu threads"] == threads,
        "run %s: %s CPU threads, expected %s" % (r["run"], config["cpu threads"], threads))

# The oracle's own summary, parsed here independently of bench_table.py.
spent = {}
for line in open(os.path.join(out, "summary.txt")):
  f = line.split()
  if len(f) == 7 and f[0].startswith("bench-"):
    spent[f[0]] = (int(f[1]), int(f[2]))
check(len(spent) == 8, "8 experiments in the summary: %s" % spent)
for name, (budget, n) in spent.items():
  check(n == budget and name.startswith("bench-b%d-" % budget), (name, budget, n))

cache = glob.glob(os.path.join(out, "pretrain-cache", "*"))
check(len(cache) == 2, "one cache entry per seed: %s" % cache)
for seed in ("0", "1"):
  reports = [json.load(open(os.path.join(out, "b%s-typiclust-flexmatch-simclr-s%s" % (b, seed),
                                         "report.json"))) for b in ("10", "20")]
  reused = [r["pretrain"]["reused"] for r in reports]
  check(reused == [False, True], "seed %s: first run pretrains, the other reuses: %s"
        % (seed, reused))
  check(reports[0]["pretrain"]["checkpoint"] == reports[1]["pretrain"]["checkpoint"],
        "same checkpoint for seed %s" % seed)
for r in runs:
  if r["pretrain"] == "none":
    rep = json.load(open(os.path.join(out, r["run"], "report.json")))
    check(rep["pretrain"]["method"] == "none", r)

# Per class: ten classes per row of the table, the labels bought add up to
# the budget, accuracies are percentages.
per_class = list(csv.DictReader(open(os.path.join(out, "per_class.csv"))))
check(len(per_class) == 40, "4 rows x 10 classes, got %d" % len(per_class))
for key in set((p["budget"], p["strategy"], p["pretrain"]) for p in per_class):
  group = [p for p in per_class if (p["budget"], p["strategy"], p["pretrain"]) == key]
  check(len(group) == 10, "10 classes for %s" % (key,))
  bought = sum(float(p["labels_mean"]) for p in group)
  check(abs(bought - int(key[0])) < 1e-6, "labels per class add up to %s: %s" % (key, bought))
  # Empty where the oracle withheld per-class results (these tiny models
  # predict few classes), else a percentage.
  check(all(p["accuracy_mean_pct"] == "" or 0 <= float(p["accuracy_mean_pct"]) <= 100
            for p in group), group)
print("table and runs OK")
PY
# Which runs share a pretrained checkpoint (dry run): those of one seed
# whose model and pretraining flags agree; a run with another model or
# pretraining length pretrains its own; no pretraining, no checkpoint.
S=typiclust:freematch:simclr
env SKIP_BUILD=1 BUILD_DIR="$BUILD" BENCH_OUT="$TMP/dry" DRY_RUN=1 BUDGETS=100 SEEDS="0 1" \
  VARIANTS="$S $S:--lambda_c=1 $S:--arch=wrn28_2 $S:--width=96 $S:--pretrain_steps=8 random:fixmatch:none" \
  bash "$SRC/scripts/bench_labels.sh" > "$TMP/dry.log" 2>&1 ||
  { cat "$TMP/dry.log"; fail "dry run failed"; }
expect_checkpoint() {  # RUN CHECKPOINT
  grep -q "^plan: $1 .* checkpoint $2\$" "$TMP/dry.log" ||
    { cat "$TMP/dry.log"; fail "dry run: $1 should have checkpoint $2"; }
}
for seed in 0 1; do
  for run in typiclust-freematch-simclr typiclust-freematch-simclr-arch_wrn28_2 \
             typiclust-freematch-simclr-width_96 typiclust-freematch-simclr-pretrain_steps_8; do
    expect_checkpoint "b100-$run-s$seed" own
  done
  expect_checkpoint "b100-typiclust-freematch-simclr-lambda_c_1-s$seed" \
    "b100-typiclust-freematch-simclr-s$seed"
  expect_checkpoint "b100-random-fixmatch-none-s$seed" none
done
[[ $(grep -c '^plan: ' "$TMP/dry.log") == 12 ]] || { cat "$TMP/dry.log"; fail "dry run: not 12 runs"; }
# A deadline too short for the whole plan: the first run starts, the rest
# are skipped (under 60 s left), and the sweep says so with a non-zero exit
# while still writing its table.
rc=0
env SKIP_BUILD=1 BUILD_DIR="$BUILD" BENCH_OUT="$TMP/late" BUDGETS=10 SEEDS="0 1 2" \
  VARIANTS="random:fixmatch:none" PARALLEL=1 SCHEDULE=100% SWEEP_SECONDS=63 \
  TRAINER_FLAGS="--train_limit=500 --width=4 --batch=8 --mu=1 --steps=5 --label_free_dims=16 --feature_quality=false --log_every=5" \
  bash "$SRC/scripts/bench_labels.sh" > "$TMP/late.log" 2>&1 || rc=$?
(( rc != 0 )) || { cat "$TMP/late.log"; fail "a sweep with skipped runs exited 0"; }
[[ -s $TMP/late/skipped.txt && -s $TMP/late/table.md ]] ||
  { cat "$TMP/late.log"; fail "no skipped.txt or table.md after skipped runs"; }
grep -q "runs skipped at the deadline" "$TMP/late.log" ||
  { cat "$TMP/late.log"; fail "the skipped runs are not reported"; }
# Variants whose flags spell names past the oracle's 128 characters: each
# run's name is shortened (its start kept, a hash of the whole appended),
# the two stay apart, every run (and a retry's name) fits, and the runs
# buy their labels under those names with the full flags recorded.
LONG=random:fixmatch:none:--threshold=0.95:--weight_decay=0.0005:--strong_ops=2:--cutout=0.5
LONG+=:--contrast_temperature=0.2:--alignment_momentum=0.999
env SKIP_BUILD=1 BUILD_DIR="$BUILD" BENCH_OUT="$TMP/long" BUDGETS=10 SEEDS=0 \
  VARIANTS="$LONG:--lr=0.03 $LONG:--lr=0.02" PARALLEL=1 SCHEDULE=100% \
  TRAINER_FLAGS="--train_limit=500 --width=4 --batch=8 --mu=1 --steps=5 --label_free_dims=16 --feature_quality=false --log_every=5" \
  bash "$SRC/scripts/bench_labels.sh" > "$TMP/long.log" 2>&1 ||
  { cat "$TMP/long.log"; fail "the sweep with long variant names exited non-zero"; }
"$PY" - "$TMP/long" <<'PY' || { cat "$TMP/long.log"; fail "long variant names"; }
import csv, os, sys
out = sys.argv[1]
rows = list(csv.DictReader(open(os.path.join(out, "runs.tsv")), delimiter="\t"))
assert len(rows) == 2, rows
assert rows[0]["run"] != rows[1]["run"], rows
for r, lr in zip(rows, ("0.03", "0.02")):
  assert r["experiment"] == "bench-" + r["run"], r
  assert len(r["experiment"] + "-eager") <= 128, r["experiment"]
  assert r["run"].startswith("b10-random-fixmatch-none-threshold_0.95-") and r["run"].endswith("-s0"), r
  assert r["extra"].endswith("--alignment_momentum=0.999 --lr=" + lr), r
  assert open(os.path.join(out, r["run"], "rc")).read().strip() == "0", r
summary = open(os.path.join(out, "summary.txt")).read().split("\n")
for r in rows:
  line = [l.split() for l in summary if l.split()[:1] == [r["experiment"]]]
  assert line and line[0][1:3] == ["10", "10"], (r["experiment"], summary)
print("long variant names OK")
PY
DEFAULT_DATA=/usr/share/datasets/fashion-mnist
if [[ ! -f $DEFAULT_DATA/train-labels-idx1-ubyte.gz ]]; then
  echo "PASS (shuffled sweep skipped: $DEFAULT_DATA not installed)"
  exit 0
fi
SHUF=$TMP/shuffled
env SKIP_BUILD=1 BUILD_DIR="$BUILD" BENCH_OUT="$SHUF" BUDGETS=20 SEEDS=0 \
  VARIANTS="random:fixmatch:none" SCHEDULE=100% SHUFFLE_SEED=5 SHUFFLE_PREFIX=500 TARBALL="$TMP/shuffled.tar.gz" \
  TRAINER_FLAGS="--train_limit=500 --width=4 --batch=8 --mu=1 --steps=5 --label_free_dims=16 --feature_quality=false --log_every=5" \
  bash "$SRC/scripts/bench_labels.sh" > "$TMP/shuffled.log" 2>&1 ||
  { cat "$TMP/shuffled.log"; fail "shuffled sweep exited non-zero"; }
grep -q "^Data: the first 500 training images and labels permuted together with seed 5" \
  "$SHUF/table.md" ||
  { cat "$SHUF/table.md"; fail "shuffle missing from the table's footer"; }
grep -q -- "--data_dir=$SHUF/data" "$SHUF/b20-random-fixmatch-none-s0/command.txt" ||
  fail "trainer not pointed at the shuffled copy"
tar tzf "$TMP/shuffled.tar.gz" | grep -q "/data/" && fail "the shuffled data went into the tarball"
"$PY" - "$SHUF" "$DEFAULT_DATA" <<'PY' || fail "bought labels do not match the shuffled file"
import gzip, os, sys
out, original = sys.argv[1], sys.argv[2]
def labels(path):
  return gzip.open(path).read()[8:]
shuffled = labels(os.path.join(out, "data", "train-labels-idx1-ubyte.gz"))
before = labels(os.path.join(original, "train-labels-idx1-ubyte.gz"))
perm = [int(x) for x in open(os.path.join(out, "data", "permutation.txt"))]
assert len(perm) == len(shuffled) == len(before) == 60000
assert all(shuffled[i] == before[perm[i]] for i in range(0, 60000, 7))
assert sorted(perm[:500]) == list(range(500)) and perm[:500] != list(range(500))
assert perm[500:] == list(range(500, 60000)), "items past the prefix moved"
bought = []
for line in open(os.path.join(out, "b20-random-fixmatch-none-s0", "purchases.log")):
  f = line.split()
  if f[0] == "bought":
    bought += [tuple(map(int, p.split(":"))) for p in f[2].split(",")]
assert len(bought) == 20, bought
assert all(shuffled[i] == label for i, label in bought), bought
assert any(before[i] != label for i, label in bought), "labels equal the unshuffled file's"
print("shuffled sweep OK")
PY
echo "PASS"
