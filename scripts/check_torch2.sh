#!/usr/bin/env bash
# Compiles every LibTorch translation unit of a built tree against a newer
# LibTorch's headers (syntax only, nothing linked), so a break between
# Debian 12's LibTorch 1.13 and the 2.x the GPU machine builds with shows up
# here, not in the first minutes of a device call.
#
#   scripts/check_torch2.sh [BUILD_DIR]        # default: build
#
# BUILD_DIR must be configured with Ninja and built (generated headers); the
# translation units are those whose compile command has Debian's LibTorch
# include folder. Their commands are replayed with the newer headers' folders
# searched first and -fsyntax-only in place of the object file.
# The headers come from Debian's libtorch-dev of a later release
# (TORCH2_SUITE, default trixie: LibTorch 2.6; sid had 2.14.1 on
# 2026-12-06), downloaded through the machine's own Debian mirror into a
# private apt state and unpacked, never installed, under TORCH2_ROOT
# (default build-torch2/, reused next time). Headers of LibTorch 2.14 or
# later are compiled as C++20, as the project's CMakeLists.txt then builds.
# WITH_CUDA=1 also compiles the CUDA-only code (FEWLABELS_WITH_CUDA: CUDA
# graphs, generators, streams) against the CUDA headers of the same suite's
# nvidia-cuda-dev (non-free; a 900 MB download of which only include/ is
# kept), with a stand-in for the one header a CUDA build of LibTorch
# generates (c10/cuda/impl/cuda_cmake_macros.h).
# LIBSTDCXX=13 also swaps in the C++ library headers of the suite's
# libstdc++-13-dev (the GPU machine's compiler is g++ 13.3, this one's 12,
# and 13 stopped including some headers, <cstdint> for one, through others)
# and then checks every unit of the tree, not only the LibTorch ones.
# UNITS=REGEX checks only the units whose source path matches REGEX
# (an extended regular expression), for a quick look at what a change touched, e.g.
# UNITS='cpu_threads' (the full check takes about 16 minutes on 2 cores).
# JOBS compilers at once (default 2). Prints one line per failing unit with
# its first errors, the deprecation warnings seen, and a summary line;
# exits 1 if any unit fails, 2 for bad input or a failed download.
set -euo pipefail
ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${1:-$ROOT_DIR/build}
SUITE=${TORCH2_SUITE:-trixie}
TORCH2_ROOT=${TORCH2_ROOT:-$ROOT_DIR/build-torch2}
JOBS=${JOBS:-2}
SYSTEM_TORCH_API=/usr/include/torch/csrc/api/include
VERSION_H=$TORCH2_ROOT/usr/include/torch/csrc/api/include/torch/version.h

die() { echo "check_torch2: $*" >&2; exit 2; }
[[ -f $BUILD_DIR/build.ninja ]] ||
  die "$BUILD_DIR is not a Ninja build folder (cmake -S . -B $BUILD_DIR -G Ninja, then build it)"

# The machine's Debian mirror: the first non-security URI of its apt sources.
debian_mirror() {
  { grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}'
    grep -hs '^deb ' /etc/apt/sources.list | sed 's/\[[^]]*\]//' | awk '{print $2}'
  } | grep -v security | head -n 1
}

# fetch_deb COMPONENTS PACKAGE [PATTERN]: downloads PACKAGE from the suite
# and unpacks it (only the paths matching PATTERN, if given) into TORCH2_ROOT.
fetch_deb() {
  local components=$1 package=$2 pattern=${3:-} mirror apt_dir
  mirror=$(debian_mirror) || true
  [[ -n $mirror ]] || die "no Debian mirror in /etc/apt sources"
  apt_dir=$TORCH2_ROOT/apt
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $SUITE $components" \
    > "$apt_dir/sources.list"
  local opts=(-o "Dir::Etc::sourcelist=$apt_dir/sources.list" -o "Dir::Etc::sourceparts=$apt_dir/no-parts"
              -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache")
  echo "== fetching $package from Debian $SUITE into $TORCH2_ROOT"
  apt-get "${opts[@]}" update > "$apt_dir/update.log" 2>&1 ||
    { tail -n 5 "$apt_dir/update.log" >&2; die "apt-get update for $SUITE failed"; }
  (cd "$apt_dir/debs" && apt-get "${opts[@]}" download "$package") > "$apt_dir/download.log" 2>&1 ||
    { tail -n 5 "$apt_dir/download.log" >&2; die "downloading $package failed"; }
  local deb=("$apt_dir/debs/${package}"_*.deb)
  if [[ -n $pattern ]]; then
    dpkg-deb --fsys-tarfile "${deb[0]}" | tar -x -C "$TORCH2_ROOT" --wildcards "$pattern" ||
      die "unpacking $package failed"
    rm -f "${deb[0]}"   # only the unpacked part is kept
  else
    dpkg -x "${deb[0]}" "$TORCH2_ROOT" || die "unpacking $package failed"
  fi
}

# ensure_headers SUBDIR PATH COMPONENTS PACKAGE: unless TORCH2_ROOT/SUBDIR/PATH
# exists, unpacks PACKAGE's include folders there; dies if PATH is still missing.
ensure_headers() {
  local dir=$TORCH2_ROOT/$1
  [[ -e $dir/$2 ]] || TORCH2_ROOT=$dir fetch_deb "$3" "$4" '*/include/*'
  [[ -e $dir/$2 ]] || die "no $2 under $dir after unpacking $4"
}

[[ -f $VERSION_H ]] || fetch_deb main libtorch-dev
[[ -f $VERSION_H ]] || die "no torch/version.h under $TORCH2_ROOT after unpacking"
# A path as one word of the replayed command lines (they are bash scripts).
q() { printf '%q' "$1"; }
cuda_flags=""
if [[ ${WITH_CUDA:-0} == 1 ]]; then
  ensure_headers cuda usr/include/cuda_runtime_api.h "main contrib non-free" nvidia-cuda-dev
  shim=$TORCH2_ROOT/cuda-shim/c10/cuda/impl
  mkdir -p "$shim"
  printf '#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n' > "$shim/cuda_cmake_macros.h"
  cuda_flags="-DFEWLABELS_WITH_CUDA=1 -isystem $(q "$TORCH2_ROOT/cuda-shim") -isystem $(q "$TORCH2_ROOT/cuda/usr/include") "
fi
std_flags="" std_note=""
if [[ -n ${LIBSTDCXX:-} ]]; then
  ensure_headers stdlib "usr/include/c++/$LIBSTDCXX" main "libstdc++-$LIBSTDCXX-dev"
  std_inc=$TORCH2_ROOT/stdlib/usr/include
  std_flags="-nostdinc++ -isystem $(q "$std_inc/c++/$LIBSTDCXX") -isystem $(q "$std_inc/x86_64-linux-gnu/c++/$LIBSTDCXX") "
  std_note=", libstdc++ $LIBSTDCXX"
fi
# Newer LibTorch (2.14 in Debian sid) defines the version in
# torch/headeronly/version.h, which torch/version.h includes.
version_files=("$VERSION_H")
headeronly=$TORCH2_ROOT/usr/include/torch/headeronly/version.h
[[ -f $headeronly ]] && version_files+=("$headeronly")
version=$(cat "${version_files[@]}" |
  awk '/define TORCH_VERSION_(MAJOR|MINOR|PATCH) /{printf "%s%s", sep, $3; sep="."}')
[[ -n $version ]] || version="(version unknown)"
# LibTorch 2.14 and later need C++20, and the project's CMakeLists.txt then
# builds every target so: the units are replayed with C++20 in place of 17.
cxx20=0
IFS=. read -r major minor _ <<<"$version"
if [[ $major =~ ^[0-9]+$ && $minor =~ ^[0-9]+$ ]] && (( major > 2 || (major == 2 && minor >= 14) )); then
  cxx20=1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
units="LibTorch translation units"
only=" -isystem $SYSTEM_TORCH_API "
[[ -z $std_flags ]] || { units="translation units"; only=" -c "; }  # all but generated code
# The precompiled torch header's own command (-x c++-header) is no unit.
ninja -C "$BUILD_DIR" -t commands | grep -F -- " -c " | grep -v '\.pb\.cc$' |
  grep -vF -- " -x c++-header " | grep -F -- "$only" | sort -u > "$work/commands" || true
if [[ -n ${UNITS:-} ]]; then
  # The source is a command's last word (ENVIRON keeps the pattern's
  # backslashes as written).
  UNITS=$UNITS awk '$NF ~ ENVIRON["UNITS"]' "$work/commands" > "$work/kept"
  mv "$work/kept" "$work/commands"
  units="$units matching '$UNITS'"
fi
count=$(wc -l < "$work/commands")
(( count > 0 )) || die "no $units in $BUILD_DIR's commands"

# Replays each command: newer headers first, no object, no dependency file,
# and without the build's precompiled torch header (-include .../cmake_pch.hxx,
# trainer/CMakeLists.txt): GCC would take its 1.13 declarations without
# checking include paths, and a unit must compile on its own includes.
new_api=$TORCH2_ROOT$SYSTEM_TORCH_API
i=0
while IFS= read -r line; do
  i=$((i + 1))
  line=${line//"-isystem $SYSTEM_TORCH_API "/"-isystem $(q "$new_api") -isystem $(q "$TORCH2_ROOT/usr/include") "}
  line=$(sed -E -e 's/ -MD -MT [^ ]+ -MF [^ ]+//' -e 's/ -o [^ ]+ -c / @FLAGS@ /' \
                -e 's/ -Winvalid-pch//' -e 's/ -include [^ ]*cmake_pch\.hxx//' <<< "$line")
  line=${line//" @FLAGS@ "/" ${std_flags}${cuda_flags}-fsyntax-only "}
  if (( cxx20 )); then line=${line//-std=gnu++17/-std=gnu++20}; line=${line//-std=c++17/-std=c++20}; fi
  printf '%s\n' "$line" > "$work/unit_$i.sh"
done < "$work/commands"

with=""
[[ -z $cuda_flags ]] || with=" and CUDA"
as=""
(( cxx20 )) && as=" as C++20"
echo "== $count $units against LibTorch $version$with$std_note headers$as ($JOBS at a time)"
( cd "$BUILD_DIR" &&
  ls "$work"/unit_*.sh | xargs -P "$JOBS" -I{} sh -c 'bash "$1" > "$1.log" 2>&1 || touch "$1.failed"' _ {} )

failed=0
for unit in "$work"/unit_*.sh; do
  [[ -f $unit.failed ]] || continue
  failed=$((failed + 1))
  echo "FAILED: $(grep -oE '[^ ]+$' "$unit")" >&2
  grep -m 10 -E 'error' "$unit.log" >&2 || tail -n 10 "$unit.log" >&2
done
deprecated=$(cat "$work"/unit_*.sh.log | grep -oE "'[^']+' is deprecated" | sort | uniq -c || true)
[[ -z $deprecated ]] || { echo "deprecated in $version (compiles, may go later):"; echo "$deprecated"; }
echo "$((count - failed)) of $count $units compile against LibTorch $version$with$std_note headers$as"
(( failed == 0 )) || exit 1
