#!/usr/bin/env bash
# scripts/gpu_run.sh in its CPU mode with tiny settings and the binaries of
# this build (the device run itself cannot happen in CI).
#   gpu_run_test.sh <source_dir> <build_dir>
# Checks:
#  1. two strategies run side by side against the script's oracle; the
#     summary shows each experiment's spent labels equal to the budget, a
#     report line per run and a verified audit log; the results tarball holds
#     the reports and no checkpoint;
#  2. a trainer that fails at start is started once more as "<run>-eager"
#     without CUDA graphs and bf16, and only that experiment spends labels.
set -euo pipefail
SRC=${1:?usage: gpu_run_test.sh <source_dir> <build_dir>}
BUILD=${2:?usage: gpu_run_test.sh <source_dir> <build_dir>}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# run_script NAME [VAR=VALUE...]: runs gpu_run.sh with its output in $TMP/NAME.
run_script() {
  local name=$1; shift
  env GPU_RUN_LOCAL=1 GPU_RUN_BUILT="$BUILD" BENCH_RATE=1 TRAIN_SECONDS=60 \
    BUDGET=12 SCHEDULE=6,6 OUT="$TMP/$name/out" WORK="$TMP/$name/work" \
    LOCAL_TRAINER_FLAGS="--train_limit=600 --width=4 --batch=8 --mu=1 --label_free_dims=16 --log_every=10 --eval_every=0" \
    "$@" bash "$SRC/scripts/gpu_run.sh" > "$TMP/$name.log" 2>&1 ||
    { cat "$TMP/$name.log"; fail "gpu_run.sh ($name) exited non-zero"; }
}
# spent SUMMARY EXPERIMENT: the "spent" column of that experiment's row.
spent() { awk -v e="$2" '$1 == e { print $3 }' "$1"; }

# 1. The normal path.
run_script normal STRATEGIES="random typiclust"
S=$TMP/normal/out/summary.txt
[[ -f $S ]] || fail "no summary.txt"
for s in random typiclust; do
  [[ "$(spent "$S" "fmnist-$s-12")" == 12 ]] ||
    { cat "$S"; fail "fmnist-$s-12 did not spend exactly 12 labels"; }
  grep -q "^report: labels_spent=12 accuracy=" <(sed -n "/^== $s\$/,/^== /p" "$S") ||
    { cat "$S"; fail "no report line for $s"; }
done
grep -q "^OK: .* rows verified" "$S" || { cat "$S"; fail "audit log not verified"; }
grep -q "bench skipped: BENCH_RATE=1" "$TMP/normal/out/bench.txt" || fail "bench not skipped"
LIST=$(tar tzf "$TMP/normal/out/runs.tar.gz")
for f in runs/random/report.json runs/typiclust/report.html oracle.db trainer-random.log; do
  grep -qx "$f" <<<"$LIST" || { echo "$LIST"; fail "$f missing from runs.tar.gz"; }
done
if grep -q '\.pt$' <<<"$LIST"; then echo "$LIST"; fail "checkpoint in runs.tar.gz"; fi

# 2. The retry path: every first start fails on a bad flag.
run_script retry STRATEGIES=random SEEDS=3 FIRST_EXTRA=--arch=bogus TRAIN_SECONDS=120
S=$TMP/retry/out/summary.txt
grep -q "trainer random-s3 failed (exit 1): .*unknown arch 'bogus'" "$TMP/retry.log" ||
  { cat "$TMP/retry.log"; fail "failure not reported"; }
grep -q "retrying random-s3 as fmnist-random-s3-eager-12" "$TMP/retry.log" ||
  { cat "$TMP/retry.log"; fail "no retry"; }
[[ "$(spent "$S" fmnist-random-s3-eager-12)" == 12 ]] ||
  { cat "$S"; fail "the retried run did not spend exactly 12 labels"; }
[[ -z "$(spent "$S" fmnist-random-s3-12)" ]] ||
  { cat "$S"; fail "the failed start created an experiment"; }
grep -q "^OK: .* rows verified" "$S" || { cat "$S"; fail "audit log not verified"; }
echo "PASS"
