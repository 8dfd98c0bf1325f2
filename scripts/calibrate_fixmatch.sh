#!/usr/bin/env bash
# The FixMatch calibration of issue 8 in one device call: the C++ trainer and
# the plain Python reference (shared/tools/fixmatch_ref.py: calibration only,
# it reads the label file itself) trained side by side on exactly the same
# label ids, so that a gap between them is the recipe's, not the draw's.
#
#   scripts/calibrate_fixmatch.sh                      # device machine, .gpu carried
#   SEEDS="0 1" STEPS=8000 scripts/calibrate_fixmatch.sh
#
# C++ side: scripts/bench_labels.sh against one oracle, budget BUDGET bought
# in one round by the `random` strategy (whose picks depend only on the seed
# and the round, so every C++ run of a seed buys the same ids: checked), one
# run per CPP_VARIANTS item and seed. By default
#   defaults    the trainer as it is (reflect fill, Kaiming init)
#   ref-recipe  --weak_fill=zeros --init=default (the reference's choices)
#   bn          --recalibrate_bn
# Reference side: as soon as a seed's first C++ run has bought its labels,
# fixmatch_ref.py --ids <its purchases.log> runs once per REF_VARIANTS item:
#   as-is       zero-fill shifts, PyTorch default init
#   cpp-recipe  --pad reflect --init kaiming (the C++ defaults)
# with the same steps, width, batch and mu, on the whole pool.
#
# Environment: SEEDS (default "0"), BUDGET (100), STEPS (12000 with CUDA, 20
# on the CPU), PARALLEL (all runs at once), SWEEP_SECONDS (480 with CUDA:
# C++ trainers get --max_train_seconds and fit their steps to it, the
# reference --seconds and ends its cosine by it, from the same deadline; the
# table shows the steps each took), CPP_VARIANTS / REF_VARIANTS ("name=flag,flag" items;
# empty flags allowed), REF (the reference script: default .gpu/tools/
# fixmatch_ref.py, else ../shared/tools/fixmatch_ref.py), REF_PYTHON
# (python3), REF_FLAGS (added to every reference run; the CPU default makes
# it tiny), TRAINER_FLAGS (added to every C++ run), DATA_DIR, BUILD_DIR,
# SKIP_BUILD as for bench_labels.sh. OUT (default $OUT, else out/calibrate)
# receives calibration.md, calibration.csv, calibrate.log and
# calibrate.tar.gz (the whole folder without checkpoints); the work folder
# is CAL_OUT (default a fresh /tmp/fewlabels-calibrate-<pid>).
# Exit status 0 when every run reported an accuracy. A reference that exits
# non-zero gets "failed (exit N: <its log's last line>)" in the table.
set -uo pipefail
shopt -s extglob
cd "$(dirname "$0")/.." || exit 1
T0=$(date +%s)
stamp() { echo "[calibrate +$(( $(date +%s) - T0 ))s] $*"; }
die() { stamp "error: $*" >&2; exit 1; }
PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3

OUT=${OUT:-out/calibrate}
mkdir -p "$OUT" || exit 1
OUT=$(cd "$OUT" && pwd)
CAL_OUT=${CAL_OUT:-/tmp/fewlabels-calibrate-$$}
mkdir -p "$CAL_OUT" || exit 1
CAL_OUT=$(cd "$CAL_OUT" && pwd)
# tee ignores Ctrl-C and TERM (it shares the terminal's process group):
# killed first, it would take the INT trap's message and the EXIT
# cleanup down with a broken pipe. It ends when this script does.
exec > >(trap '' INT TERM; exec tee -a "$CAL_OUT/calibrate.log") 2>&1

SEEDS=${SEEDS:-0}
BUDGET=${BUDGET:-100}
CPP_VARIANTS=${CPP_VARIANTS:-"defaults= ref-recipe=--weak_fill=zeros,--init=default bn=--recalibrate_bn"}
REF_VARIANTS=${REF_VARIANTS:-"as-is= cpp-recipe=--pad,reflect,--init,kaiming"}
REF_PYTHON=${REF_PYTHON:-python3}
if [[ -z "${REF:-}" ]]; then
  REF=.gpu/tools/fixmatch_ref.py
  [[ -f $REF ]] || REF=../shared/tools/fixmatch_ref.py
fi
[[ -f $REF ]] || die "no reference script (REF=$REF); copy shared/tools/fixmatch_ref.py into .gpu/tools/"

# shellcheck source=build_lib.sh
source scripts/build_lib.sh
CUDA=0
if fewlabels_cuda_python_torch >/dev/null; then
  CUDA=1
  STEPS=${STEPS:-12000}
  SWEEP_SECONDS=${SWEEP_SECONDS:-480}
  REF_FLAGS=${REF_FLAGS:-}
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
else
  STEPS=${STEPS:-20}
  # The C++ CPU sizes of bench_labels.sh: a 2,000-image pool, width 8,
  # batch 8, mu 2.
  REF_FLAGS=${REF_FLAGS:-"--pool 2000 --width 8 --bs 8 --mu 2 --eval_every 1000000"}
fi
read -ra CPP_ITEMS <<<"$CPP_VARIANTS"
read -ra REF_ITEMS <<<"$REF_VARIANTS"
NSEEDS=$(wc -w <<<"$SEEDS")
PARALLEL=${PARALLEL:-$(( (${#CPP_ITEMS[@]} + ${#REF_ITEMS[@]}) * NSEEDS ))}

# The C++ variants as bench_labels.sh variants: random:fixmatch:none[:flags].
BENCH_VARIANTS=() CPP_VID=()
for item in "${CPP_ITEMS[@]}"; do
  name=${item%%=*} flags=${item#*=}
  [[ $name =~ ^[A-Za-z0-9._-]+$ && $item == *=* ]] || die "CPP_VARIANTS item '$item' is not name=flag,flag"
  v=random:fixmatch:none
  [[ -n $flags ]] && v+=:${flags//,/:}
  BENCH_VARIANTS+=("$v")
  vid=random-fixmatch-none
  for flag in ${flags//,/ }; do vid+=-${flag##+(-)}; done
  # name=run id part (as bench_labels.sh names it)=flags
  CPP_VID+=("$name=$(sed -e 's/[^A-Za-z0-9._-]\+/_/g' <<<"$vid")=$flags")
done
for item in "${REF_ITEMS[@]}"; do
  [[ ${item%%=*} =~ ^[A-Za-z0-9._-]+$ && $item == *=* ]] || die "REF_VARIANTS item '$item' is not name=flag,flag"
done

stamp "seeds [$SEEDS], budget $BUDGET, $STEPS steps, C++ [${CPP_VARIANTS}], reference [${REF_VARIANTS}] ($REF)"
BENCH_OUT=$CAL_OUT/cpp
export BENCH_OUT BUDGETS=$BUDGET SEEDS SCHEDULE=100% STEPS PARALLEL RETRY=0
export VARIANTS="${BENCH_VARIANTS[*]}"
[[ -n "${SWEEP_SECONDS:-}" ]] && export SWEEP_SECONDS
scripts/bench_labels.sh > "$CAL_OUT/bench.out" 2>&1 &
BENCH_PID=$!
declare -A REF_PID=()
cleanup() {
  local p
  for p in "${!REF_PID[@]}"; do kill -TERM "$p" 2>/dev/null; done
  kill -TERM "$BENCH_PID" 2>/dev/null
  wait "$BENCH_PID" "${!REF_PID[@]}" 2>/dev/null
}
trap cleanup EXIT
trap 'stamp "interrupted"; exit 130' INT TERM

# ids_bought SEED: prints the path of the purchases of SEED's first C++ run
# once its one round is bought (a "bought" line), else fails.
first_vid=${CPP_VID[0]#*=}
first_vid=${first_vid%%=*}
ids_bought() {
  local log=$BENCH_OUT/b$BUDGET-$first_vid-s$1/purchases.log
  [[ -f $log ]] && grep -q '^bought ' "$log" && echo "$log"
}

DATA=${DATA_DIR:-}
if [[ -z $DATA ]]; then
  DATA=/usr/share/datasets/fashion-mnist
  [[ $CUDA == 1 && -d .gpu/data ]] && DATA=$(cd .gpu/data && pwd)
fi
declare -A STARTED=()
# start_references SEED: once SEED's first C++ run has bought its labels,
# starts the REF_VARIANTS runs on those ids (once per seed); else does
# nothing.
start_references() {
  local seed=$1 log item name flags left
  local -a rflags seconds cmd
  [[ -n "${STARTED[$seed]:-}" ]] && return
  log=$(ids_bought "$seed") || return
  STARTED[$seed]=1
  awk '$1 == "intent" { gsub(",", "\n", $3); print $3 }' "$log" > "$CAL_OUT/ids-s$seed.txt"
  stamp "seed $seed: $(wc -l < "$CAL_OUT/ids-s$seed.txt") ids bought by the C++ run; starting the reference"
  for item in "${REF_ITEMS[@]}"; do
    name=${item%%=*} flags=${item#*=}
    read -ra rflags <<<"${flags//,/ } $REF_FLAGS"
    seconds=()
    if [[ -n "${SWEEP_SECONDS:-}" ]]; then
      left=$(( SWEEP_SECONDS - ($(date +%s) - T0) - 45 ))
      seconds=(--seconds $(( left > 30 ? left : 30 )))
    fi
    mkdir -p "$CAL_OUT/ref-$name-s$seed"
    cmd=("$REF_PYTHON" "$REF" --data "$DATA" --ids "$CAL_OUT/ids-s$seed.txt"
         --seed "$seed" --steps "$STEPS" "${seconds[@]}" "${rflags[@]}"
         --out "$CAL_OUT/ref-$name-s$seed/evals.jsonl")
    printf '%q ' "${cmd[@]}" > "$CAL_OUT/ref-$name-s$seed/command.txt"
    "${cmd[@]}" > "$CAL_OUT/ref-$name-s$seed/ref.log" 2>&1 &
    REF_PID[$!]=ref-$name-s$seed
  done
}
while kill -0 "$BENCH_PID" 2>/dev/null; do
  for seed in $SEEDS; do start_references "$seed"; done
  sleep 1
done
# bench_labels.sh may have bought and ended within the last poll.
for seed in $SEEDS; do start_references "$seed"; done
wait "$BENCH_PID"
BENCH_RC=$?
BENCH_PID=""
stamp "C++ runs finished (bench_labels.sh exit $BENCH_RC)"
for pid in "${!REF_PID[@]}"; do
  wait "$pid"
  rc=$?
  echo "$rc" > "$CAL_OUT/${REF_PID[$pid]}/rc"
  stamp "reference ${REF_PID[$pid]} exit $rc"
done
REF_PID=()

"$PY" - "$CAL_OUT" "$BUDGET" "$SEEDS" "${CPP_VID[*]}" "${REF_VARIANTS}" <<'PY'
import csv, glob, json, os, statistics, sys
out, budget, seeds = sys.argv[1], sys.argv[2], sys.argv[3].split()
cpp = [v.split("=", 2) for v in sys.argv[4].split()]
refs = [v.split("=", 1) for v in sys.argv[5].split()]
rows, ok = [], True

def ids_of(path):
  ids = []
  for line in open(path):
    p = line.split()
    if len(p) == 3 and p[0] == "intent":
      ids += [int(v) for v in p[2].split(",")]
  return ids

def ref_failure(d, e):
  """Why a reference left no result: its exit status and the last line of
  its log where it exited non-zero (fit for a table cell), else the error
  reading its evals.jsonl."""
  try:
    rc = open(os.path.join(d, "rc")).read().strip()
  except OSError:
    rc = ""
  if rc and rc != "0":
    try:
      lines = [l.strip() for l in open(os.path.join(d, "ref.log"), errors="replace") if l.strip()]
    except OSError:
      lines = []
    last = lines[-1].replace("|", "/")[:120] if lines else "no log"
    return "exit %s: %s" % (rc, last)
  return type(e).__name__

for seed in seeds:
  ref_ids = None
  f = os.path.join(out, "ids-s%s.txt" % seed)
  if os.path.exists(f):
    ref_ids = [int(v) for v in open(f).read().split()]
  for name, vid, flags in cpp:
    d = os.path.join(out, "cpp", "b%s-%s-s%s" % (budget, vid, seed))
    r = {"side": "C++", "variant": name, "seed": seed, "accuracy_pct": "",
         "steps": "", "steps_per_s": "", "same_ids": "",
         "flags": flags.replace(",", " ")}
    try:
      rep = json.load(open(os.path.join(d, "report.json")))
      r.update(accuracy_pct="%.2f" % (100 * rep["accuracy"]), steps=rep["steps"],
               steps_per_s="%.1f" % rep["steps_per_s"])
      if ref_ids is not None:
        r["same_ids"] = "yes" if sorted(ids_of(os.path.join(d, "purchases.log"))) == sorted(ref_ids) else "NO"
    except (OSError, KeyError, ValueError) as e:
      ok = False
      r["accuracy_pct"] = "failed (%s)" % type(e).__name__
    rows.append(r)
  for name, flags in refs:
    d = os.path.join(out, "ref-%s-s%s" % (name, seed))
    r = {"side": "reference", "variant": name, "seed": seed, "accuracy_pct": "",
         "steps": "", "steps_per_s": "", "same_ids": "yes" if ref_ids is not None else "",
         "flags": flags.replace(",", " ")}
    try:
      final = [json.loads(l) for l in open(os.path.join(d, "evals.jsonl")) if l.strip()][-1]
      r.update(accuracy_pct="%.2f" % (100 * final["acc"]), steps=final["step"],
               steps_per_s="%.1f" % (final["step"] / final["t"] if final.get("t") else 0))
      if final.get("labels") is not None and ref_ids is not None and final["labels"] != len(ref_ids):
        r["same_ids"] = "NO"
    except (OSError, KeyError, ValueError, IndexError) as e:
      ok = False
      r["accuracy_pct"] = "failed (%s)" % ref_failure(d, e)
    rows.append(r)

cols = ["side", "variant", "flags", "seed", "accuracy_pct", "steps", "steps_per_s", "same_ids"]
with open(os.path.join(out, "calibration.csv"), "w", newline="") as f:
  w = csv.DictWriter(f, fieldnames=cols)
  w.writeheader()
  for r in rows: w.writerow({c: r[c] for c in cols})
with open(os.path.join(out, "calibration.md"), "w") as f:
  f.write("| side | variant | flags | seed | accuracy | steps | steps/s | same ids |\n")
  f.write("| --- | --- | --- | ---: | ---: | ---: | ---: | --- |\n")
  for r in rows:
    acc = r["accuracy_pct"] + (" %" if r["accuracy_pct"][:1].isdigit() else "")
    f.write("| %s | %s | %s | %s | %s | %s | %s | %s |\n" % (
        r["side"], r["variant"], r["flags"] or "-", r["seed"], acc, r["steps"],
        r["steps_per_s"], r["same_ids"]))
  f.write("\nBudget %s, bought in one round by `random`; the reference trained on the ids in "
          "ids-s<seed>.txt (its own accuracy on the test file; the C++ runs' through the "
          "oracle's Evaluate).\n" % budget)
print(open(os.path.join(out, "calibration.md")).read())
sys.exit(0 if ok and all(r["same_ids"] != "NO" for r in rows) else 3)
PY
TABLE_RC=$?
STATUS=0
[[ $BENCH_RC -eq 0 && $TABLE_RC -eq 0 ]] || STATUS=1
for f in calibration.md calibration.csv calibrate.log; do
  [[ -f $CAL_OUT/$f ]] && cp "$CAL_OUT/$f" "$OUT/"
done
tar czf "$OUT/calibrate.tar.gz" -C "$(dirname "$CAL_OUT")" --exclude='*.pt' "$(basename "$CAL_OUT")" ||
  STATUS=1
stamp "done (status $STATUS); results in $OUT"
exit $STATUS
