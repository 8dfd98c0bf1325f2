#!/usr/bin/env bash
# scripts/check_torch2.sh with a stand-in ninja and compiler and headers laid
# out by hand (no download): only the LibTorch units are replayed, with the
# newer headers searched first and -fsyntax-only instead of an object; a
# unit that fails makes it exit 1 and shows the compiler's error; all
# passing exits 0 with the count; the build's precompiled torch header is
# left out; UNITS picks units by their source path; WITH_CUDA=1 adds the CUDA switch and
# headers; LIBSTDCXX=13 checks every unit with those C++ library headers;
# header paths with a space stay one argument; the version is read from
# newer LibTorch's torch/headeronly/version.h too, and from 2.14 on the
# units are replayed as C++20; a folder that is no build
# exits 2.
#   check_torch2_test.sh <source_dir>
set -euo pipefail
SRC=${1:?usage: check_torch2_test.sh <source_dir>}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# Headers "unpacked" before: the script must not fetch.
T2=$TMP/torch2
mkdir -p "$T2/usr/include/torch/csrc/api/include/torch"
printf '#define TORCH_VERSION_MAJOR 2\n#define TORCH_VERSION_MINOR 6\n#define TORCH_VERSION_PATCH 0\n' \
  > "$T2/usr/include/torch/csrc/api/include/torch/version.h"

# A stand-in compiler: records its arguments, fails on a unit named bad.cc.
mkdir -p "$TMP/bin" "$TMP/build"
cat > "$TMP/bin/cxx" <<STUB
#!/usr/bin/env bash
echo "\$*" >> "$TMP/calls"
if [[ "\$*" == *bad.cc* ]]; then
  echo "bad.cc:3:5: error: 'guts' is not a member of 'c10'" >&2
  exit 1
fi
echo "bad.cc:9:1: warning: 'bool at::autocast::is_cpu_enabled()' is deprecated" >&2
STUB
chmod +x "$TMP/bin/cxx"
touch "$TMP/build/build.ninja"
TORCH=/usr/include/torch/csrc/api/include
cat > "$TMP/bin/ninja" <<STUB
#!/usr/bin/env bash
cat "$TMP/commands"
STUB
chmod +x "$TMP/bin/ninja"

write_commands() {  # write_commands UNIT...: one torch unit each, a plain and a proto unit
  : > "$TMP/commands"
  for unit in "$@"; do
    echo "$TMP/bin/cxx -I/src -isystem $TORCH -O3 -std=gnu++17 -MD -MT $unit.o -MF $unit.o.d -o $unit.o -c /src/$unit" \
      >> "$TMP/commands"
  done
  echo "$TMP/bin/cxx -I/src -O3 -o audit_log.cc.o -c /src/audit_log.cc" >> "$TMP/commands"
  echo "$TMP/bin/cxx -I/src -O3 -o oracle.pb.cc.o -c /src/oracle.pb.cc" >> "$TMP/commands"
  echo "$TMP/bin/cxx -o trainer trainer.o -ltorch" >> "$TMP/commands"   # a link line
}
run_check() {
  : > "$TMP/calls"
  env PATH="$TMP/bin:$PATH" TORCH2_ROOT="$T2" JOBS=2 bash "$SRC/scripts/check_torch2.sh" "$TMP/build"
}

# 1. Two good units: both replayed, syntax only, newer headers first; exit 0.
write_commands good1.cc good2.cc
run_check > "$TMP/out1" 2> "$TMP/err1" || { cat "$TMP/out1" "$TMP/err1"; fail "good units: non-zero exit"; }
[[ $(wc -l < "$TMP/calls") -eq 2 ]] || { cat "$TMP/calls"; fail "expected 2 compiler calls"; }
grep -q "audit_log.cc\|oracle.pb.cc" "$TMP/calls" && fail "a unit without LibTorch was compiled"
while IFS= read -r call; do
  [[ $call == *"-fsyntax-only /src/good"* ]] || fail "not syntax only: $call"
  [[ $call != *" -o "* && $call != *" -MF "* ]] || fail "object or depfile left: $call"
  [[ $call == *"-isystem $T2$TORCH -isystem $T2/usr/include "* ]] ||
    fail "newer headers not first: $call"
done < "$TMP/calls"
grep -q "^2 of 2 LibTorch translation units compile against LibTorch 2.6.0 headers$" "$TMP/out1" ||
  { cat "$TMP/out1"; fail "no summary line"; }
grep -q "is_cpu_enabled()' is deprecated" "$TMP/out1" || { cat "$TMP/out1"; fail "deprecation not listed"; }

# 2. One failing unit: exit 1, its name and error on stderr.
write_commands good1.cc bad.cc
rc=0; run_check > "$TMP/out2" 2> "$TMP/err2" || rc=$?
[[ $rc -eq 1 ]] || { cat "$TMP/out2" "$TMP/err2"; fail "failing unit: exit $rc, want 1"; }
grep -q "FAILED: /src/bad.cc" "$TMP/err2" || { cat "$TMP/err2"; fail "failing unit not named"; }
grep -q "error: 'guts' is not a member of 'c10'" "$TMP/err2" || { cat "$TMP/err2"; fail "error not shown"; }
grep -q "^1 of 2 LibTorch translation units" "$TMP/out2" || { cat "$TMP/out2"; fail "wrong count"; }

# 2b. A build with the precompiled torch header: the units are replayed
#     without it (its declarations are torch 1.13's), and the header's own
#     command is no unit.
PCH=/build/trainer/CMakeFiles/torch_pch.dir/cmake_pch.hxx
write_commands good1.cc
sed -i "s| -O3 -std=gnu++17 | -O3 -std=gnu++17 -Winvalid-pch -include $PCH |" "$TMP/commands"
echo "$TMP/bin/cxx -isystem $TORCH -O3 -std=gnu++17 -Winvalid-pch -x c++-header -include $PCH -o $PCH.gch -c $PCH.cxx" \
  >> "$TMP/commands"
grep -qF -- "-include $PCH -MD" "$TMP/commands" || fail "test setup: no unit with the header"
run_check > "$TMP/out2b" 2> "$TMP/err2b" || { cat "$TMP/out2b" "$TMP/err2b"; fail "pch: non-zero exit"; }
[[ $(wc -l < "$TMP/calls") -eq 1 ]] || { cat "$TMP/calls"; fail "pch: expected only good1.cc replayed"; }
grep -q "cmake_pch\|invalid-pch" "$TMP/calls" && { cat "$TMP/calls"; fail "pch: replayed with the header"; }
grep -q "^1 of 1 LibTorch translation units" "$TMP/out2b" || { cat "$TMP/out2b"; fail "pch: wrong count"; }

# 2c. UNITS=REGEX: only the units whose source matches are replayed and
#     counted; a pattern that matches none exits 2 with the reason.
write_commands good1.cc good2.cc bad.cc
UNITS='good2|nomatch' run_check > "$TMP/out2c" 2> "$TMP/err2c" ||
  { cat "$TMP/out2c" "$TMP/err2c"; fail "UNITS: non-zero exit"; }
[[ $(wc -l < "$TMP/calls") -eq 1 ]] && grep -q "/src/good2.cc" "$TMP/calls" ||
  { cat "$TMP/calls"; fail "UNITS: expected only good2.cc replayed"; }
grep -q "^1 of 1 LibTorch translation units matching 'good2|nomatch' compile" "$TMP/out2c" ||
  { cat "$TMP/out2c"; fail "UNITS: summary"; }
rc=0; UNITS='nothing_here' run_check > "$TMP/out2d" 2> "$TMP/err2d" || rc=$?
[[ $rc -eq 2 ]] || { cat "$TMP/out2d" "$TMP/err2d"; fail "UNITS without a match: exit $rc, want 2"; }
grep -q "no LibTorch translation units matching 'nothing_here'" "$TMP/err2d" ||
  { cat "$TMP/err2d"; fail "UNITS without a match: no reason"; }

# 3. WITH_CUDA=1 with CUDA headers laid before: the CUDA-only code is switched
#    on, its headers and the stand-in generated header are searched.
mkdir -p "$T2/cuda/usr/include"
touch "$T2/cuda/usr/include/cuda_runtime_api.h"
write_commands good1.cc
WITH_CUDA=1 run_check > "$TMP/out3" 2> "$TMP/err3" || { cat "$TMP/out3" "$TMP/err3"; fail "WITH_CUDA: non-zero exit"; }
call=$(cat "$TMP/calls")
[[ $call == *"-DFEWLABELS_WITH_CUDA=1 -isystem $T2/cuda-shim -isystem $T2/cuda/usr/include -fsyntax-only /src/good1.cc"* ]] ||
  fail "CUDA flags missing: $call"
grep -q "C10_CUDA_BUILD_SHARED_LIBS" "$T2/cuda-shim/c10/cuda/impl/cuda_cmake_macros.h" || fail "no stand-in header"
grep -q "against LibTorch 2.6.0 and CUDA headers" "$TMP/out3" || { cat "$TMP/out3"; fail "summary does not say CUDA"; }

# 4. LIBSTDCXX=13 with its headers laid before: every unit but generated
#    code is replayed, with the C++ library headers swapped in.
mkdir -p "$T2/stdlib/usr/include/c++/13" "$T2/stdlib/usr/include/x86_64-linux-gnu/c++/13"
write_commands good1.cc
LIBSTDCXX=13 run_check > "$TMP/out4" 2> "$TMP/err4" || { cat "$TMP/out4" "$TMP/err4"; fail "LIBSTDCXX: non-zero exit"; }
[[ $(wc -l < "$TMP/calls") -eq 2 ]] || { cat "$TMP/calls"; fail "LIBSTDCXX: expected the torch and the plain unit"; }
grep -q "/src/audit_log.cc" "$TMP/calls" || fail "LIBSTDCXX: the unit without LibTorch was not compiled"
grep -q "oracle.pb.cc" "$TMP/calls" && fail "LIBSTDCXX: generated code was compiled"
std="-nostdinc++ -isystem $T2/stdlib/usr/include/c++/13 -isystem $T2/stdlib/usr/include/x86_64-linux-gnu/c++/13 -fsyntax-only"
[[ $(grep -cF -- "$std" "$TMP/calls") -eq 2 ]] || { cat "$TMP/calls"; fail "LIBSTDCXX: headers not swapped"; }
grep -q "^2 of 2 translation units compile against LibTorch 2.6.0, libstdc++ 13 headers$" "$TMP/out4" ||
  { cat "$TMP/out4"; fail "LIBSTDCXX: summary"; }

# 5. Headers under a path with a space, CUDA and libstdc++ on: every such
#    path reaches the compiler as one argument.
T2S="$TMP/torch 2"
cp -r "$T2" "$T2S"
cat > "$TMP/bin/cxx" <<STUB
#!/usr/bin/env bash
printf '%s\n' "\$@" >> "$TMP/args"
STUB
: > "$TMP/args"
write_commands good1.cc
env PATH="$TMP/bin:$PATH" TORCH2_ROOT="$T2S" JOBS=1 WITH_CUDA=1 LIBSTDCXX=13 \
  bash "$SRC/scripts/check_torch2.sh" "$TMP/build" > "$TMP/out6" 2>&1 ||
  { cat "$TMP/out6"; fail "path with a space: non-zero exit"; }
for dir in "$T2S$TORCH" "$T2S/usr/include" "$T2S/cuda-shim" "$T2S/cuda/usr/include" \
           "$T2S/stdlib/usr/include/c++/13" "$T2S/stdlib/usr/include/x86_64-linux-gnu/c++/13"; do
  grep -qxF -- "$dir" "$TMP/args" || { cat "$TMP/args"; fail "path with a space split: $dir"; }
done

# 5b. Newer LibTorch's layout: torch/version.h only includes
#     torch/headeronly/version.h, which holds the numbers; the summary
#     still names the version, and from 2.14 on the units are C++20.
T2H=$TMP/torch2h
mkdir -p "$T2H/usr/include/torch/csrc/api/include/torch" "$T2H/usr/include/torch/headeronly"
printf '#include <torch/headeronly/version.h>\n' > "$T2H/usr/include/torch/csrc/api/include/torch/version.h"
printf '#define TORCH_VERSION_MAJOR 2\n#define TORCH_VERSION_MINOR 14\n#define TORCH_VERSION_PATCH 1\n' \
  > "$T2H/usr/include/torch/headeronly/version.h"
printf '#!/usr/bin/env bash\necho "$*" >> "%s"\n' "$TMP/calls" > "$TMP/bin/cxx"
write_commands good1.cc
: > "$TMP/calls"
env PATH="$TMP/bin:$PATH" TORCH2_ROOT="$T2H" JOBS=1 bash "$SRC/scripts/check_torch2.sh" "$TMP/build" \
  > "$TMP/out5b" 2>&1 || { cat "$TMP/out5b"; fail "headeronly layout: non-zero exit"; }
grep -q "^1 of 1 LibTorch translation units compile against LibTorch 2.14.1 headers as C++20$" "$TMP/out5b" ||
  { cat "$TMP/out5b"; fail "headeronly layout: version not read"; }
# 2.14 needs C++20 (the project's CMake switches to it): replayed so; 2.6 as C++17.
grep -q -- "-std=gnu++20 .*-fsyntax-only /src/good1.cc" "$TMP/calls" || { cat "$TMP/calls"; fail "2.14: not C++20"; }
grep -q -- "gnu++17" "$TMP/calls" && { cat "$TMP/calls"; fail "2.14: C++17 left"; }
: > "$TMP/calls"
env PATH="$TMP/bin:$PATH" TORCH2_ROOT="$T2" JOBS=1 bash "$SRC/scripts/check_torch2.sh" "$TMP/build" \
  > "$TMP/out5d" 2>&1 || { cat "$TMP/out5d"; fail "2.6 again: non-zero exit"; }
grep -q -- "-std=gnu++17 .*-fsyntax-only /src/good1.cc" "$TMP/calls" || { cat "$TMP/calls"; fail "2.6: not C++17"; }

# 6. Not a build folder: exit 2 with the reason.
rc=0; env TORCH2_ROOT="$T2" bash "$SRC/scripts/check_torch2.sh" "$TMP/nowhere" 2> "$TMP/err5" || rc=$?
[[ $rc -eq 2 ]] || fail "missing build folder: exit $rc, want 2"
grep -q "not a Ninja build folder" "$TMP/err5" || { cat "$TMP/err5"; fail "no reason given"; }
echo "PASS"
