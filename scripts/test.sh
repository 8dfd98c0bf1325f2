#!/usr/bin/env bash
# Installs what is missing, configures, builds and runs the whole test suite.
#   scripts/test.sh            # everything
#   BUILD_DIR=build-x scripts/test.sh -R Oracle   # extra args go to ctest
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh --with-test-tools

BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C "$BUILD_DIR" -j "$JOBS"

echo "== docker-compose config (validation only; no container engine runs here)"
docker-compose -f docker-compose.yml config -q

echo "== ctest"
cd "$BUILD_DIR"
ctest --output-on-failure -j "$JOBS" --timeout 600 "$@"
