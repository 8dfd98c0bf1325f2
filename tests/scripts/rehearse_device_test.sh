#!/usr/bin/env bash
# scripts/rehearse_device.sh on a small git repository holding a copy of the
# script and a stand-in bundle (no build): the command sees Debian's gRPC
# headers, protoc, the data set and /opt hidden, a writable empty /opt, the
# stand-in torch (CUDA off, on with REHEARSE_CUDA=1), an empty OUT, and a
# copy of the tree with tracked, untracked-but-not-ignored and .gpu files
# but no ignored ones; the command's status comes back; outside, nothing
# changed; a second run in the same folder empties OUT and keeps the tree's
# ignored files. Skipped (77) unless root with a working unshare -m.
#   rehearse_device_test.sh <source_dir>
set -euo pipefail
SRC=${1:?usage: rehearse_device_test.sh <source_dir>}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
if [[ $(id -u) != 0 ]] || ! unshare -m true 2>/dev/null; then
  echo "SKIP: needs root and unshare -m"; exit 77
fi
[[ -f /usr/include/grpcpp/grpcpp.h ]] || { echo "SKIP: no Debian gRPC headers to hide"; exit 77; }
[[ -f /usr/lib/x86_64-linux-gnu/cmake/Torch/TorchConfig.cmake ]] ||
  { echo "SKIP: no Debian LibTorch"; exit 77; }
PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3

R=$TMP/repo
mkdir -p "$R/scripts" "$R/.gpu"
cp "$SRC/scripts/rehearse_device.sh" "$R/scripts/"
echo stand-in > "$R/.gpu/deps.tar.xz"
printf '.gpu/\nignored.txt\n' > "$R/.gitignore"
echo tracked > "$R/tracked.txt"
git -C "$R" init -q && git -C "$R" add . &&
  git -C "$R" -c user.name=t -c user.email=t@t commit -qm init
echo untracked > "$R/untracked.txt"
echo ignored > "$R/ignored.txt"
echo deleted > "$R/deleted.txt"
git -C "$R" add deleted.txt && git -C "$R" -c user.name=t -c user.email=t@t commit -qm deleted
rm "$R/deleted.txt"   # tracked, deleted from the working tree: not copied

# The command writes what it sees to OUT/seen; the checks read it after.
CHECK='
seen=$(
  echo "pwd_is_tree=$([[ $(pwd) == */tree ]] && echo yes)"
  echo "grpcpp=$([[ -e /usr/include/grpcpp/grpcpp.h ]] && echo visible || echo hidden)"
  echo "protobuf=$([[ -e /usr/include/google/protobuf/message.h ]] && echo visible || echo hidden)"
  echo "protoc=$(protoc --version >/dev/null 2>&1 && echo works || echo fails)"
  echo "datasets=$(ls /usr/share/datasets | wc -l)"
  echo "opt=$(ls /opt | wc -l)"
  echo "opt_writable=$(mkdir -p /opt/deps && touch /opt/deps/x && echo yes)"
  echo "out_empty=$([[ -d $OUT && -z $(ls -A "$OUT") ]] && echo yes)"
  echo "deleted=$([[ -e deleted.txt ]] && echo copied || echo absent)"
  echo "tracked=$(cat tracked.txt 2>/dev/null) untracked=$(cat untracked.txt 2>/dev/null) ignored=$(cat ignored.txt 2>/dev/null) bundle=$(cat .gpu/deps.tar.xz 2>/dev/null)"
  echo "torch=$(PY -c "import torch;print(torch.utils.cmake_prefix_path, torch.cuda.is_available())")"
)
echo "$seen" > "$OUT/seen"
exit 7'
CHECK=${CHECK//PY -c/$PY -c}
rc=0
REHEARSE_DIR=$TMP/r1 bash "$R/scripts/rehearse_device.sh" "$CHECK" 2>"$TMP/err" || rc=$?
[[ $rc == 7 ]] || { cat "$TMP/err"; fail "exit status $rc, not the command's 7"; }
seen=$TMP/r1/out/seen
[[ -f $seen ]] || fail "OUT/seen not written (OUT not kept under REHEARSE_DIR/out)"
expect() { grep -qx -- "$1" "$seen" || { cat "$seen"; fail "expected '$1'"; }; }
expect 'pwd_is_tree=yes'
expect 'grpcpp=hidden'
expect 'protobuf=hidden'
expect 'protoc=fails'
expect 'datasets=0'
expect 'opt=0'
expect 'opt_writable=yes'
expect 'out_empty=yes'
expect 'deleted=absent'
expect 'tracked=tracked untracked=untracked ignored= bundle=stand-in'
expect 'torch=/usr/lib/x86_64-linux-gnu/cmake False'

# The same REHEARSE_DIR again: OUT is emptied, the tree's ignored files (a
# build folder there) are kept, its other files copied anew.
echo build-output > "$TMP/r1/tree/ignored.txt"
echo changed > "$R/tracked.txt"
REHEARSE_DIR=$TMP/r1 bash "$R/scripts/rehearse_device.sh" \
  'ls -A "$OUT" > /tmp/rehearse-test-out.$$; mv /tmp/rehearse-test-out.$$ "$OUT/listing"; cat ignored.txt tracked.txt > "$OUT/tree"' \
  2>/dev/null || fail "second run in the same REHEARSE_DIR failed"
[[ ! -s $TMP/r1/out/listing ]] || { cat "$TMP/r1/out/listing"; fail "OUT not emptied"; }
[[ $(cat "$TMP/r1/out/tree") == $'build-output\nchanged' ]] ||
  { cat "$TMP/r1/out/tree"; fail "ignored file not kept or tracked file not copied anew"; }

# REHEARSE_CUDA=1 turns the stand-in's CUDA on.
REHEARSE_CUDA=1 REHEARSE_DIR=$TMP/r2 bash "$R/scripts/rehearse_device.sh" \
  "$PY -c 'import torch;print(torch.cuda.is_available())' > \$OUT/cuda" 2>/dev/null ||
  fail "REHEARSE_CUDA=1 run failed"
[[ $(cat "$TMP/r2/out/cuda") == True ]] || fail "REHEARSE_CUDA=1: stand-in says no CUDA"

# Outside the namespace nothing was hidden or written.
[[ -f /usr/include/grpcpp/grpcpp.h ]] || fail "grpcpp hidden outside the rehearsal"
[[ ! -e /opt/deps/x ]] || fail "/opt written outside the rehearsal"

# Without a bundle: a clear error, exit 2.
rm "$R/.gpu/deps.tar.xz"
rc=0
bash "$R/scripts/rehearse_device.sh" true 2>"$TMP/err" || rc=$?
[[ $rc == 2 ]] && grep -q 'make_gpu_bundle' "$TMP/err" ||
  { cat "$TMP/err"; fail "no bundle: exit $rc"; }
echo "PASS"
