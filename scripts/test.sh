#!/usr/bin/env bash
# Installs what is missing, configures, builds and runs the whole test suite.
#   scripts/test.sh            # everything
#   BUILD_DIR=build-x scripts/test.sh -R Oracle   # extra args go to ctest
# Then, unless ctest args were given or FUZZ=0, runs the fuzzers for
# FUZZ_SECONDS (default 30) each (scripts/fuzz.sh, its own build-fuzz dir).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh --with-test-tools

BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}
# FEWLABELS_REQUIRE_PCH: a LibTorch unit that cannot use the precompiled torch
# header fails the build instead of silently compiling at twice the time.
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DFEWLABELS_REQUIRE_PCH=ON >/dev/null
ninja -C "$BUILD_DIR" -j "$JOBS"

echo "== docker-compose config (validation only; no container engine runs here)"
docker-compose -f docker-compose.yml config -q

echo "== ctest"
cd "$BUILD_DIR"
ctest --output-on-failure -j "$JOBS" --timeout 600 "$@"
cd - >/dev/null

if [[ "${FUZZ:-$(($# == 0))}" != 0 ]]; then
  echo "== fuzz"
  scripts/fuzz.sh
fi
