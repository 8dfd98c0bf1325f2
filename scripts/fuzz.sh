#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) with clang, ASan and UBSan in their own
# build dir, and runs each for a bounded time over a copy of its committed
# seed corpus. Fails if any fuzzer crashes or breaks an invariant; the input
# that did it is left in $BUILD_DIR/fuzz-artifacts/.
#   scripts/fuzz.sh                      # every fuzzer, FUZZ_SECONDS each
#   FUZZ_SECONDS=300 scripts/fuzz.sh idx_file_fuzzer
# Needs clang and libclang-rt-14-dev (scripts/deps.sh --with-test-tools).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${FUZZ_BUILD_DIR:-build-fuzz}
FUZZ_SECONDS=${FUZZ_SECONDS:-30}
JOBS=${JOBS:-$(nproc)}
FUZZERS=("$@")
if ((${#FUZZERS[@]} == 0)); then
  FUZZERS=(idx_file_fuzzer label_oracle_fuzzer audit_chain_fuzzer)
fi

launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ "${launcher[@]}" \
  -DFEWLABELS_BUILD_FUZZERS=ON -DFEWLABELS_BUILD_TRAINER=OFF \
  -DFEWLABELS_BUILD_TESTS=OFF >/dev/null
ninja -C "$BUILD_DIR" -j "$JOBS" "${FUZZERS[@]}"

# A smaller quarantine than ASan's 256 MiB: fresh in-memory oracles per input
# otherwise spend most of their time faulting in new pages.
export ASAN_OPTIONS=${ASAN_OPTIONS:-quarantine_size_mb=64:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
artifacts="$BUILD_DIR/fuzz-artifacts"
mkdir -p "$artifacts"
failed=()
for fuzzer in "${FUZZERS[@]}"; do
  seeds="fuzz/corpus/${fuzzer%_fuzzer}"
  work=$(mktemp -d)
  cp "$seeds"/* "$work"/
  log="$BUILD_DIR/$fuzzer.log"
  echo "== $fuzzer: ${FUZZ_SECONDS}s over $seeds"
  if "$BUILD_DIR/fuzz/$fuzzer" -max_total_time="$FUZZ_SECONDS" \
      -timeout=25 -rss_limit_mb=4096 -print_final_stats=1 \
      -artifact_prefix="$artifacts/$fuzzer-" "$work" >"$log" 2>&1; then
    grep -E '^stat::number_of_executed_units|^Done' "$log" | tail -1
  else
    echo "FAIL: $fuzzer (log $log, inputs in $artifacts)"
    grep -E 'invariant broken|ERROR:|runtime error|SUMMARY' "$log" | head -5
    failed+=("$fuzzer")
  fi
  rm -rf "$work"
done
if ((${#failed[@]} > 0)); then
  echo "fuzz: ${#failed[@]} fuzzer(s) failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: ${#FUZZERS[@]} fuzzer(s) ran ${FUZZ_SECONDS}s each without a crash"
