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
# The main job (scripts/build_lib.sh) builds the same folder, so neither
# forces a build type on an existing folder (a new one gets the project's
# RelWithDebInfo; CMAKE_BUILD_TYPE overrides): switching flags recompiles
# everything. FEWLABELS_REQUIRE_PCH: a LibTorch unit that cannot use the
# precompiled torch header fails the build instead of silently compiling at
# twice the time; set on a new folder only (always in CI's clean clone), as
# turning it on later recompiles every LibTorch unit too.
CONFIGURE=()
[[ -n ${CMAKE_BUILD_TYPE:-} ]] && CONFIGURE+=(-DCMAKE_BUILD_TYPE="$CMAKE_BUILD_TYPE")
[[ -f $BUILD_DIR/CMakeCache.txt ]] || CONFIGURE+=(-DFEWLABELS_REQUIRE_PCH=ON)
cmake -S . -B "$BUILD_DIR" -G Ninja "${CONFIGURE[@]}" >/dev/null
ninja -C "$BUILD_DIR" -j "$JOBS"

echo "== docker-compose config (validation only; no container engine runs here)"
docker-compose -f docker-compose.yml config -q

echo "== ctest"
# ctest runs JOBS tests at once: one LibTorch thread each (the trainer would
# otherwise take every CPU, and JOBS of them would oversubscribe the cores).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
cd "$BUILD_DIR"
ctest --output-on-failure -j "$JOBS" --timeout 600 "$@"
cd - >/dev/null

if [[ "${FUZZ:-$(($# == 0))}" != 0 ]]; then
  echo "== fuzz"
  scripts/fuzz.sh
fi
