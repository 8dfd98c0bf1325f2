#!/usr/bin/env bash
# End-to-end: the real trainer against a real oracle_server process.
#   trainer_e2e_test.sh <build_dir>
# Checks, for tiny two-round runs on CPU:
#  1. labels spent equals the budget, and the oracle's audit rows reveal
#     exactly the ids the trainer journaled as bought;
#  2. the trainer opened the image files and never a label file (strace);
#  3. a run killed with SIGKILL in its second round resumes from its last
#     checkpoint, finishes, buys nothing twice (one purchase per round, same
#     ids as before the kill) and reports every round;
#  4. a journaled intent without a purchase is replayed with the same ids;
#  5. a bad --cpu_threads or OMP_NUM_THREADS stops the trainer (exit 2) before
#     it joins the oracle; a run says how many CPU threads it used.
set -euo pipefail
BUILD=${1:?usage: trainer_e2e_test.sh <build_dir>}
PY=/usr/bin/python3
TMP=$(mktemp -d)
ORACLE_PID=""
cleanup() {
  [[ -n "$ORACLE_PID" ]] && kill -TERM "$ORACLE_PID" 2>/dev/null && wait "$ORACLE_PID" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$BUILD/oracle_server/oracle_server" --host=127.0.0.1 --port=0 --port_file="$TMP/port" \
  --db="$TMP/oracle.db" 2> "$TMP/oracle.log" &
ORACLE_PID=$!
for _ in $(seq 200); do [[ -s "$TMP/port" ]] && break; sleep 0.05; done
[[ -s "$TMP/port" ]] || { cat "$TMP/oracle.log"; fail "oracle did not start"; }
TARGET=127.0.0.1:$(cat "$TMP/port")

# The thread count the runs should report: OMP_NUM_THREADS when the suite
# sets it (scripts/test.sh), else some count (the CPUs it may use).
OMP_NUM_THREADS_EXPECTED=${OMP_NUM_THREADS:-[1-9][0-9]*}
TINY=(--oracle=$TARGET --device=cpu --train_limit=600 --width=4 --batch=8 --mu=1
      --budget=12 --schedule=6,6 --eval_every=0 --log_every=2 --checkpoint_every=0
      --label_free_dims=16)

# Ids the journal says were bought, as sorted "id:label" lines.
journal_bought() {
  $PY - "$1" <<'EOF'
import sys
items = []
for line in open(sys.argv[1]):
    kind, rnd, rest = line.split()
    if kind == "bought":
        items += rest.split(",")
print("\n".join(sorted(items, key=lambda s: int(s.split(":")[0]))))
EOF
}
# Ids the oracle's audit log revealed to an experiment, sorted.
audit_revealed() {
  "$BUILD/oracle_server/oraclectl" log --db="$TMP/oracle.db" --experiment="$1" --format=jsonl |
    $PY -c '
import json, sys
ids = []
for line in sys.stdin:
    row = json.loads(line)
    if row["outcome"] == "GRANTED":
        ids += row["ids_revealed"]
assert len(ids) == len(set(ids)), "an id was revealed twice"
print("\n".join(str(i) for i in sorted(ids)))'
}
spent() {
  "$BUILD/oracle_server/oraclectl" summary --db="$TMP/oracle.db" |
    awk -v e="$1" '$1 == e { print $3 }'
}

echo "== 1+2: a two-round run under strace"
strace -f -qq -e trace=open,openat -o "$TMP/strace.txt" \
  "$BUILD/trainer/trainer" "${TINY[@]}" --experiment=e2e --steps=8 \
  --out_dir="$TMP/run1" > "$TMP/run1.out" 2> "$TMP/run1.err" ||
  { cat "$TMP/run1.err"; fail "trainer exited non-zero"; }
grep -q "labels spent 12 of 12" "$TMP/run1.out" || fail "summary line: $(cat "$TMP/run1.out")"
grep -q "^trainer: $OMP_NUM_THREADS_EXPECTED CPU threads\? (" "$TMP/run1.err" ||
  { head -3 "$TMP/run1.err"; fail "no line with the CPU thread count"; }
[[ "$(spent e2e)" == 12 ]] || fail "oracle says spent $(spent e2e), expected 12"
diff <(journal_bought "$TMP/run1/purchases.log" | cut -d: -f1) <(audit_revealed e2e) ||
  fail "journal and audit log disagree"
grep -q "train-images-idx3-ubyte" "$TMP/strace.txt" || fail "strace saw no image file open"
if grep -q "labels-idx1" "$TMP/strace.txt"; then
  grep "labels-idx1" "$TMP/strace.txt" >&2; fail "the trainer opened a label file"
fi
for f in metrics.jsonl rounds.csv report.json report.html; do
  [[ -s "$TMP/run1/$f" ]] || fail "missing $f"
done
[[ $(wc -l < "$TMP/run1/rounds.csv") == 3 ]] || fail "rounds.csv: $(cat "$TMP/run1/rounds.csv")"
# A second run into the same folder without --resume is refused, nothing lost.
if "$BUILD/trainer/trainer" "${TINY[@]}" --experiment=e2e --steps=8 \
     --out_dir="$TMP/run1" > /dev/null 2> "$TMP/refused.err"; then
  fail "reusing an out_dir without --resume was accepted"
fi
grep -q "already holds a run" "$TMP/refused.err" || fail "$(cat "$TMP/refused.err")"

echo "== 3: SIGKILL in the second round, then --resume"
"$BUILD/trainer/trainer" "${TINY[@]}" --experiment=resume --steps=4006 \
  --round_steps=6,4000 --out_dir="$TMP/run2" > /dev/null 2> "$TMP/run2.err" &
PID=$!
for _ in $(seq 1200); do
  grep -q "^bought 1 " "$TMP/run2/purchases.log" 2>/dev/null && break
  kill -0 $PID 2>/dev/null || break
  sleep 0.05
done
kill -KILL $PID 2>/dev/null || fail "trainer ended before it could be killed"
wait $PID 2>/dev/null || true
BEFORE=$(journal_bought "$TMP/run2/purchases.log")
[[ $(wc -l <<<"$BEFORE") == 12 ]] || fail "expected 12 bought before the kill: $BEFORE"
[[ "$(spent resume)" == 12 ]] || fail "oracle says spent $(spent resume) after the kill"
"$BUILD/trainer/trainer" "${TINY[@]}" --experiment=resume --steps=12 --round_steps=6,6 \
  --out_dir="$TMP/run2" --resume > "$TMP/run2b.out" 2> "$TMP/run2b.err" ||
  { cat "$TMP/run2b.err"; fail "resumed trainer exited non-zero"; }
grep -q "resumed from .* at step 6 with 12 labels bought" "$TMP/run2b.err" ||
  fail "did not resume from the round-0 checkpoint: $(cat "$TMP/run2b.err")"
[[ "$(spent resume)" == 12 ]] || fail "oracle says spent $(spent resume) after resume"
[[ $(grep -c "^bought 0 " "$TMP/run2/purchases.log") == 1 ]] || fail "round 0 bought twice"
[[ $(grep -c "^bought 1 " "$TMP/run2/purchases.log") == 1 ]] || fail "round 1 bought twice"
diff <(echo "$BEFORE") <(journal_bought "$TMP/run2/purchases.log") ||
  fail "labels changed across the resume"
diff <(journal_bought "$TMP/run2/purchases.log" | cut -d: -f1) <(audit_revealed resume) ||
  fail "journal and audit log disagree after resume"
$PY -c '
import json, sys
report = json.load(open(sys.argv[1]))
rounds = [r["round"] for r in report["rounds"]]
assert rounds == [0, 1], rounds  # round 0 comes from rounds.csv of the killed run
assert report["labels_spent"] == 12, report["labels_spent"]
assert len(report["queried"]) == 12, len(report["queried"])
' "$TMP/run2/report.json" || fail "report.json after resume"

echo "== 4: an intent without a purchase is replayed with the same ids"
mkdir -p "$TMP/run3"
printf 'intent 0 5,7,11,13,17,19\n' > "$TMP/run3/purchases.log"
"$BUILD/trainer/trainer" "${TINY[@]}" --experiment=replay --steps=4 --round_steps=2,2 --out_dir="$TMP/run3" \
  --resume > /dev/null 2> "$TMP/run3.err" || { cat "$TMP/run3.err"; fail "replay run failed"; }
grep -q "^bought 0 5:.*,7:.*,11:.*,13:.*,17:.*,19:" "$TMP/run3/purchases.log" ||
  fail "intent not replayed: $(cat "$TMP/run3/purchases.log")"
[[ "$(spent replay)" == 12 ]] || fail "oracle says spent $(spent replay) for replay"

echo "== 5: bad thread counts stop the trainer before it joins the oracle"
for bad in "--cpu_threads=-1" "OMP_NUM_THREADS=two"; do
  flags=() envs=()  # a flag goes on the command line, a variable into env
  if [[ $bad == --* ]]; then flags=("$bad"); else envs=("$bad"); fi
  rc=0
  env "${envs[@]}" "$BUILD/trainer/trainer" "${TINY[@]}" --experiment=threads --steps=2 \
    "${flags[@]}" --out_dir="$TMP/run4" > /dev/null 2> "$TMP/run4.err" || rc=$?
  [[ $rc == 2 ]] || { cat "$TMP/run4.err"; fail "$bad: exit $rc, expected 2"; }
  name=${bad%%=*}
  grep -q "INVALID_ARGUMENT: ${name#--} must be" "$TMP/run4.err" ||
    { cat "$TMP/run4.err"; fail "$bad: no clear error"; }
done
[[ -z "$(spent threads)" ]] || fail "a trainer with a bad thread count joined the oracle"

echo "5 passed, 0 failed"
