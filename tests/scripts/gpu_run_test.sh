#!/usr/bin/env bash
# scripts/gpu_run.sh (the one-call GPU sweep: bench_labels.sh plus results
# in $OUT) in CPU mode, on the binaries of this build, with tiny settings and
# a deadline (the device run itself cannot happen in CI).
#   gpu_run_test.sh <source_dir> <build_dir>
# Every first start of a trainer fails on a bad flag, so this also checks the
# retry. Checks:
#  1. the failure is reported and the run is started once more as
#     "<run>-eager" (--cuda_graph=false --bf16=false, a new experiment); the
#     failed start created no experiment; the retry spent exactly its budget
#     as `oraclectl summary` counts it, and the table counts it;
#  2. every trainer got --max_train_seconds from SWEEP_SECONDS;
#  3. the audit log verifies;
#  4. $OUT holds table.md, table.csv, runs.csv, sweep.log and bench.tar.gz;
#     the tarball holds the reports, logs and oracle database and no
#     checkpoint.
#  5. PLAN=headline plans the best recipe x 3 seeds at 100 labels,
#     PLAN=ablation plans the 14 variants x 2 seeds at 100 labels (a dry run),
#     PLAN=capacity the default combination with three models x 2 seeds,
#     each pretraining its own checkpoint, PLAN=order a shuffled sweep, and
#     an unknown PLAN is refused.
set -euo pipefail
SRC=${1:?usage: gpu_run_test.sh <source_dir> <build_dir>}
BUILD=${2:?usage: gpu_run_test.sh <source_dir> <build_dir>}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

env OUT="$TMP/out" BENCH_OUT="$TMP/bench" SKIP_BUILD=1 BUILD_DIR="$BUILD" \
  BUDGETS=12 SEEDS=3 VARIANTS=random:fixmatch:none SWEEP_SECONDS=300 SCHEDULE=100% \
  FIRST_EXTRA=--arch=bogus \
  TRAINER_FLAGS="--train_limit=600 --width=4 --batch=8 --mu=1 --steps=10 --label_free_dims=16 --feature_quality=false --log_every=5" \
  bash "$SRC/scripts/gpu_run.sh" > "$TMP/log" 2>&1 ||
  { cat "$TMP/log"; fail "gpu_run.sh exited non-zero"; }
RUN=b12-random-fixmatch-none-s3
B=$TMP/bench

# 1. Failure, retry, the oracle's count.
grep -q "FAILED $RUN (exit 1): .*unknown arch 'bogus'" "$TMP/log" ||
  { cat "$TMP/log"; fail "failure not reported"; }
grep -q "retrying $RUN as $RUN-eager (experiment bench-$RUN-eager)" "$TMP/log" ||
  { cat "$TMP/log"; fail "no retry"; }
grep -q -- "--cuda_graph=false --bf16=false" "$B/$RUN-eager/command.txt" ||
  { cat "$B/$RUN-eager/command.txt"; fail "retry not eager"; }
spent() { awk -v e="$1" '$1 == e { print $3 }' "$B/summary.txt"; }
[[ "$(spent "bench-$RUN-eager")" == 12 ]] ||
  { cat "$B/summary.txt"; fail "the retried run did not spend exactly 12 labels"; }
[[ -z "$(spent "bench-$RUN")" ]] ||
  { cat "$B/summary.txt"; fail "the failed start created an experiment"; }
[[ "$(cat "$B/$RUN/rc")" == 1 && "$(cat "$B/$RUN-eager/rc")" == 0 ]] ||
  fail "exit codes not recorded"
grep -q "^| 12 | random | fixmatch | none | - | 1 | [0-9.]* | - | s3=[0-9.]* | s3=12 |" "$TMP/out/table.md" ||
  { cat "$TMP/out/table.md"; fail "table row does not count the retry"; }

# 2. The deadline reached every trainer.
for r in "$RUN" "$RUN-eager"; do
  grep -q -- "--max_train_seconds=[0-9]" "$B/$r/command.txt" ||
    { cat "$B/$r/command.txt"; fail "no --max_train_seconds for $r"; }
done

# 3. The audit log.
grep -q "^OK: .* rows verified" "$B/verify.txt" || { cat "$B/verify.txt"; fail "audit log not verified"; }

# 4. What comes back from the device machine.
for f in table.md table.csv runs.csv sweep.log bench.tar.gz; do
  [[ -s $TMP/out/$f ]] || { ls -l "$TMP/out"; fail "no $f in OUT"; }
done
LIST=$(tar tzf "$TMP/out/bench.tar.gz")
for f in bench/$RUN-eager/report.json bench/$RUN-eager/report.html \
         bench/$RUN-eager/trainer.log bench/$RUN/trainer.log bench/oracle.db \
         bench/table.md bench/summary.txt; do
  grep -qx "$f" <<<"$LIST" || { echo "$LIST"; fail "$f missing from bench.tar.gz"; }
done
if grep -q '\.pt$' <<<"$LIST"; then echo "$LIST"; fail "checkpoint in bench.tar.gz"; fi
# 5. The plans.
# plan_has PLAN COUNT PATTERN RUN...: PLAN's dry run plans COUNT runs at 100
# labels, among them each RUN for seeds 0 and 1, its line matching PATTERN
# after the run's name.
plan_has() {
  local plan=$1 count=$2 pattern=$3 run seed
  shift 3
  env OUT="$TMP/out-$plan" BENCH_OUT="$TMP/$plan" SKIP_BUILD=1 BUILD_DIR="$BUILD" \
    PLAN=$plan DRY_RUN=1 bash "$SRC/scripts/gpu_run.sh" > "$TMP/$plan.log" 2>&1 ||
    { cat "$TMP/$plan.log"; fail "PLAN=$plan dry run failed"; }
  [[ $(grep -c "^plan: b100-" "$TMP/$plan.log") == "$count" ]] ||
    { cat "$TMP/$plan.log"; fail "$plan: not $count runs at 100 labels"; }
  for run in "$@"; do
    for seed in 0 1; do
      grep -q "^plan: b100-$run-s$seed $pattern" "$TMP/$plan.log" ||
        { cat "$TMP/$plan.log"; fail "$plan: no b100-$run-s$seed matching '$pattern'"; }
    done
  done
}
plan_has ablation 28 "" \
  typiclust-freematch-simclr typiclust-freematch-none random-freematch-simclr \
  typiclust-fixmatch-simclr typiclust-freematch-simclr-restart_rounds \
  typiclust_balanced-freematch-simclr typiclust-freematch-simclr-weak_forward_separate \
  typiclust-freematch-simclr-eval_flip typiclust-freematch-simclr-pretrain_steps_8000 \
  typiclust-freematch-simclr-lambda_c_1 \
  typiclust-freematch-simclr-lambda_c_1-contrast_memory_2560 \
  typiclust-freematch-simclr-lambda_c_1-contrast_memory_2560-steps_30-distill_steps_30 \
  typiclust-freematch-simclr-pseudo_label_views_2 typiclust-freematch-simclr-mixup_alpha_0.75
plan_has headline 3 "" typiclust-freematch-simclr-lambda_c_1-contrast_memory_2560-mixup_alpha_0.75
grep -q "^plan: b100-typiclust-freematch-simclr-lambda_c_1-contrast_memory_2560-mixup_alpha_0.75-s2 " \
  "$TMP/headline.log" || { cat "$TMP/headline.log"; fail "headline: no seed 2"; }
# Each model pretrains its own checkpoint.
plan_has capacity 6 ".* checkpoint own$" typiclust-freematch-simclr \
  typiclust-freematch-simclr-arch_wrn28_2 typiclust-freematch-simclr-width_96
env OUT="$TMP/out-order" BENCH_OUT="$TMP/order" SKIP_BUILD=1 BUILD_DIR="$BUILD" \
  PLAN=order DRY_RUN=1 bash "$SRC/scripts/gpu_run.sh" > "$TMP/order.log" 2>&1 ||
  { cat "$TMP/order.log"; fail "PLAN=order dry run failed"; }
[[ $(grep -c "^plan: b100-typiclust-freematch-simclr-s[01] " "$TMP/order.log") == 2 ]] ||
  { cat "$TMP/order.log"; fail "order: not the 2 runs"; }
grep -q "gpu_run: plan order" "$TMP/order.log" || fail "plan not announced"
if env OUT="$TMP/out-bad" BENCH_OUT="$TMP/bad" SKIP_BUILD=1 BUILD_DIR="$BUILD" PLAN=bogus \
     bash "$SRC/scripts/gpu_run.sh" > "$TMP/bad.log" 2>&1; then
  fail "PLAN=bogus accepted"
fi
grep -q "PLAN=bogus is not sweep, headline, ablation, capacity or order" "$TMP/bad.log" || { cat "$TMP/bad.log"; fail "no message"; }
echo "PASS"
