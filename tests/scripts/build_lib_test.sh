#!/usr/bin/env bash
# scripts/build_lib.sh's fewlabels_build with a stand-in cmake (no real
# build): a failing build returns non-zero and shows the compiler's error on
# stderr, though the stand-in prints it on stdout as Ninja does; a build
# that succeeds returns zero, keeps the tool's chatter in BUILD_DIR/build.log
# and prints only its own line; the build type is passed only when
# CMAKE_BUILD_TYPE is set (else the folder keeps its own, as scripts/test.sh
# does on the same folder).
#   build_lib_test.sh <source_dir>
set -euo pipefail
SRC=${1:?usage: build_lib_test.sh <source_dir>}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

mkdir -p "$TMP/bin"
cat > "$TMP/bin/cmake" <<'STUB'
#!/usr/bin/env bash
echo "-- configuring $*"
if [[ $1 == --build ]]; then
  echo "[1/2] Building CXX object learner.cc.o"
  if [[ -n ${STUB_FAIL:-} ]]; then
    echo "FAILED: trainer/learn/learner.cc.o"
    echo "learner.cc:42:7: error: 'nullopt' is not a member of 'c10'"
    echo "ninja: build stopped: subcommand failed."
    exit 1
  fi
fi
exit 0
STUB
chmod +x "$TMP/bin/cmake"

run_build() {  # run_build BUILD_DIR: fewlabels_build with the stand-in
  env -u CMAKE_BUILD_TYPE PATH="$TMP/bin:$PATH" STUB_FAIL="${STUB_FAIL:-}" \
    ${BUILD_TYPE:+CMAKE_BUILD_TYPE=$BUILD_TYPE} bash -c '
    source "$1/scripts/build_lib.sh"
    fewlabels_env() { FEWLABELS_CMAKE_ARGS=(); }   # no toolchain look-up, no apt
    fewlabels_build "$2"' _ "$SRC" "$1"
}

# 1. A failed compile: non-zero, the error on stderr, the whole output kept.
if STUB_FAIL=1 run_build "$TMP/b1" >"$TMP/out1" 2>"$TMP/err1"; then
  fail "a failing build returned 0"
fi
grep -q "build failed" "$TMP/err1" || { cat "$TMP/err1"; fail "no failure line"; }
grep -q "error: 'nullopt' is not a member of 'c10'" "$TMP/err1" ||
  { cat "$TMP/err1"; fail "the compiler's error is not on stderr"; }
grep -q "FAILED: trainer/learn/learner.cc.o" "$TMP/b1/build.log" || fail "no build.log"

# 2. A build that succeeds: zero, quiet, the chatter in build.log.
run_build "$TMP/b2" >"$TMP/out2" 2>"$TMP/err2" || { cat "$TMP/out2" "$TMP/err2"; fail "build failed"; }
[[ ! -s $TMP/err2 ]] || { cat "$TMP/err2"; fail "stderr not empty"; }
[[ $(cat "$TMP/out2") == "== building into $TMP/b2 (log: $TMP/b2/build.log)" ]] ||
  { cat "$TMP/out2"; fail "unexpected output"; }
grep -q -- "--build $TMP/b2" "$TMP/b2/build.log" || { cat "$TMP/b2/build.log"; fail "build step not logged"; }
configure_line() { grep -- "-- configuring -S" "$1/build.log"; }
if configure_line "$TMP/b2" | grep -q CMAKE_BUILD_TYPE; then
  configure_line "$TMP/b2"; fail "a build type was forced without CMAKE_BUILD_TYPE"
fi

# 3. CMAKE_BUILD_TYPE set: passed on.
BUILD_TYPE=Debug run_build "$TMP/b3" >/dev/null 2>&1 || fail "build with a type failed"
configure_line "$TMP/b3" | grep -q -- "-DCMAKE_BUILD_TYPE=Debug" ||
  { configure_line "$TMP/b3"; fail "CMAKE_BUILD_TYPE=Debug not passed to cmake"; }
echo "PASS"
