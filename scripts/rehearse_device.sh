#!/usr/bin/env bash
# Rehearses a device call on this Debian machine: runs COMMAND as the lent
# GPU machine would see the tree, as far as a CPU machine can, so that a
# broken bundle path or script shows up here and not in device time.
#
#   scripts/rehearse_device.sh 'COMMAND'        # as root (unshare -m)
#
# What is the same as a device call (docs/GPU_RUNS.md, ../shared/GPU.md):
#  - COMMAND runs under bash in a fresh copy of the working tree (tracked
#    files and untracked ones git does not ignore, plus the carried .gpu/),
#    with OUT set to an empty folder, which is kept and printed at the end.
#  - In a private mount namespace, Debian's gRPC, protobuf, Abseil, re2,
#    c-ares and PostgreSQL development files and tools, the data set under
#    /usr/share/datasets and anything under /opt are hidden: the scripts
#    must take the carried bundle (.gpu/deps.tar.xz, unpacked to /opt/deps)
#    and .gpu/data, as there.
#  - python3's `torch` is a stand-in whose CMake prefix is Debian's
#    LibTorch 1.13 (CPU): torch.cuda.is_available() is False, so the
#    scripts run their CPU sizes; REHEARSE_CUDA=1 makes it True, which only
#    a build-only path can use (nothing here runs CUDA).
# What is not: no GPU, no CUDA LibTorch 2.11, g++ 12 not 13, CMake 3.25 not
# 4 (scripts/check_torch2.sh covers the headers), 2 cores not 16 (a
# deadline such as SWEEP_SECONDS also has to hold the much slower build).
# The runtime libraries of Debian's gRPC stay visible (the trainer's
# LibTorch needs some of them); the bundle's come first in LD_LIBRARY_PATH.
#
# Needs root and unshare(1); exits 2 without them. Exits with COMMAND's
# status. REHEARSE_DIR (default a fresh /tmp/rehearse-XXXX) holds the copy
# (tree/), OUT (out/) and the stand-in (python/); given again, it reuses the
# tree's ignored files (the build) and empties OUT, but files deleted from
# the working tree since stay in the copy (start a fresh folder then).
set -euo pipefail

if [[ "${1:-}" == --inside ]]; then
  # In the private namespace: hide, then run. Arguments: --inside DIR.
  dir=$2
  mount --make-rprivate /
  empty=$dir/empty
  lib=/usr/lib/x86_64-linux-gnu
  for d in /usr/include/grpcpp /usr/include/grpc /usr/include/grpc++ \
           /usr/include/absl /usr/include/google/protobuf /usr/include/re2 \
           /usr/include/postgresql /usr/share/datasets \
           "$lib"/cmake/grpc "$lib"/cmake/absl "$lib"/cmake/protobuf \
           "$lib"/cmake/re2 "$lib"/cmake/c-ares; do
    if [[ -d $d ]]; then mount --bind "$empty" "$d"; fi
  done
  mount -t tmpfs tmpfs /opt   # writable: gpu_env.sh unpacks to /opt/deps
  for f in /usr/bin/protoc /usr/bin/grpc_cpp_plugin /usr/bin/pg_config \
           "$lib"/pkgconfig/grpc*.pc "$lib"/pkgconfig/protobuf*.pc \
           "$lib"/pkgconfig/absl_*.pc "$lib"/pkgconfig/re2.pc \
           "$lib"/pkgconfig/libcares.pc; do
    if [[ -e $f ]]; then mount --bind /dev/null "$f"; fi
  done
  export PYTHONPATH=$dir/python${PYTHONPATH:+:$PYTHONPATH}
  export OUT=$dir/out
  cd "$dir/tree"
  exec bash -c "$(cat "$dir/command")"
fi

COMMAND=${1:?usage: scripts/rehearse_device.sh 'COMMAND'}
ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
die() { echo "rehearse_device: $*" >&2; exit 2; }
[[ $(id -u) == 0 ]] || die "needs root (a private mount namespace)"
command -v unshare >/dev/null || die "needs unshare (util-linux)"
[[ -f $ROOT_DIR/.gpu/deps.tar.xz ]] ||
  die "no .gpu/deps.tar.xz: run scripts/make_gpu_bundle.sh first"
TORCH_PREFIX=/usr/lib/x86_64-linux-gnu/cmake
[[ -f $TORCH_PREFIX/Torch/TorchConfig.cmake ]] ||
  die "no Debian LibTorch ($TORCH_PREFIX/Torch): scripts/deps.sh installs it"

dir=${REHEARSE_DIR:-$(mktemp -d /tmp/rehearse-XXXX)}
# OUT starts empty every time; the tree's ignored files (a build folder) are
# kept from an earlier rehearsal in the same REHEARSE_DIR, as the device
# machine keeps ignored build outputs between calls while it stays warm.
rm -rf "$dir/out"
mkdir -p "$dir/tree" "$dir/out" "$dir/empty" "$dir/python/torch/lib"
# The device's copy: tracked and untracked-but-not-ignored files, and .gpu.
# (--ignore-failed-read: a tracked file deleted from the working tree is
# not copied, as on the device; tar warns about it.)
(cd "$ROOT_DIR" && git ls-files -co --exclude-standard -z |
   tar --null --ignore-failed-read -T - -cf - && tar -cf - .gpu) |
  tar -xf - -C "$dir/tree" -i
printf '%s\n' "$COMMAND" > "$dir/command"
cat > "$dir/python/torch/__init__.py" <<PY
# Stand-in for the device machine's Python torch (scripts/rehearse_device.sh).
import os
__version__ = "1.13-debian-stand-in"
class _Utils:
    cmake_prefix_path = "$TORCH_PREFIX"
utils = _Utils()
class _Cuda:
    @staticmethod
    def is_available():
        return os.environ.get("REHEARSE_CUDA") == "1"
cuda = _Cuda()
class _Version:
    cuda = None
version = _Version()
PY

echo "rehearse_device: tree $dir/tree, OUT $dir/out" >&2
status=0
unshare -m "$ROOT_DIR/scripts/rehearse_device.sh" --inside "$dir" || status=$?
echo "rehearse_device: exit $status; OUT: $(ls "$dir/out" | tr '\n' ' ')" >&2
exit "$status"
