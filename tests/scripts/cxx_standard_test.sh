#!/usr/bin/env bash
# The project's CMakeLists.txt picks one C++ standard for every target from
# the LibTorch it finds: C++17 with LibTorch 2.13 or older (Debian's 1.13,
# the GPU machine's 2.11), C++20 with 2.14 and later, whose headers stop
# with an #error below C++20. Configures the project (no build) against a
# stand-in Torch package of each version and reads the compile flags of an
# oracle unit (no LibTorch) and a trainer unit from build.ninja.
#   cxx_standard_test.sh <source_dir>
set -euo pipefail
SRC=${1:?usage: cxx_standard_test.sh <source_dir>}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# stand_in_torch DIR VERSION: a Torch package that only names its version and
# an empty imported target (what the trainer's CMake files read of it).
stand_in_torch() {
  mkdir -p "$1"
  cat > "$1/TorchConfig.cmake" <<'EOF'
if(NOT TARGET torch)
  add_library(torch INTERFACE IMPORTED)
endif()
set(TORCH_LIBRARIES torch)
set(TORCH_INCLUDE_DIRS "")
set(TORCH_FOUND TRUE)
EOF
  cat > "$1/TorchConfigVersion.cmake" <<EOF
set(PACKAGE_VERSION "$2")
set(PACKAGE_VERSION_COMPATIBLE TRUE)
EOF
}

# standard_of BUILD UNIT: the -std= flag build.ninja compiles UNIT's object with.
standard_of() {
  grep -A6 -E "^build [^ ]+\.o: CXX_COMPILER[^ ]* $SRC/$2( |\$)" "$1/build.ninja" |
    grep -m1 -o -- '-std=[a-z+0-9]*' || echo "(no -std= found for $2)"
}

check() {  # check VERSION WANT
  local dir=$TMP/torch-$1 build=$TMP/build-$1 unit got
  stand_in_torch "$dir" "$1"
  cmake -S "$SRC" -B "$build" -G Ninja -DTorch_DIR="$dir" -DFEWLABELS_BUILD_TESTS=OFF \
    > "$build.log" 2>&1 || { tail -n 20 "$build.log"; fail "configure with Torch $1 failed"; }
  for unit in oracle_server/label_oracle.cc trainer/learn/learner.cc; do
    got=$(standard_of "$build" "$unit")
    [[ $got == "-std=$2" ]] || fail "Torch $1: $unit compiles with $got, want -std=$2"
  done
}

check 1.13.0 gnu++17
check 2.11.0 gnu++17
check 2.14.1 gnu++20
echo "PASS"
