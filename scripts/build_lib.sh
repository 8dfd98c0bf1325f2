# shellcheck shell=bash
# Builds the main job's binaries (trainer, oracle_server, oraclectl,
# shuffle_dataset), shared by scripts/run.sh and scripts/bench_labels.sh.
# Source it, then:
#
#   fewlabels_build BUILD_DIR [TARGET...]   # environment, configure, build
#   fewlabels_env --no_install              # environment only (built before)
#   fewlabels_cpu_thread_waiting            # before CPU runs
#
# Which toolchain:
#  - LibTorch: TORCH_DIR (a folder with TorchConfig.cmake) when set; else the
#    Python torch's when `python3 -c 'import torch'` works and
#    torch.cuda.is_available(); else Debian's CPU LibTorch.
#  - Other dependencies: the Debian packages (scripts/deps.sh installs what is
#    missing), or, where gRPC is not installed but the GPU dependency bundle
#    is there (.gpu/deps.tar.xz from scripts/make_gpu_bundle.sh, or already
#    unpacked in /opt/deps), scripts/gpu_env.sh (no apt there).
# Build type: CMAKE_BUILD_TYPE when set; else a new folder gets the
# project's default (RelWithDebInfo, CMakeLists.txt) and an existing one
# keeps its own. scripts/test.sh does the same on the same folder, so the
# README's two commands never switch each other's flags (a switch
# recompiles everything: minutes on 2 cores).
# Exports what the binaries need at run time (LD_LIBRARY_PATH, DATA_DIR from
# the bundle) into the calling shell. Returns non-zero on failure.

_build_lib_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Prints the CUDA Python torch's CMake prefix, or fails.
fewlabels_cuda_python_torch() {
  command -v python3 >/dev/null 2>&1 || return 1
  python3 -c 'import sys, torch
if not torch.cuda.is_available(): sys.exit(1)
print(torch.utils.cmake_prefix_path)' 2>/dev/null
}

# For CPU runs: idle OpenMP threads sleep after 1,000 spins instead of
# libgomp's 300,000 (docs/BENCHMARKS.md, "Idle OpenMP threads"), unless
# GOMP_SPINCOUNT or OMP_WAIT_POLICY is already set. Exports into the calling
# shell; libgomp reads it when each trainer starts.
fewlabels_cpu_thread_waiting() {
  if [[ -z ${GOMP_SPINCOUNT:-}${OMP_WAIT_POLICY:-} ]]; then
    export GOMP_SPINCOUNT=1000
  fi
}

# fewlabels_env --install|--no_install: picks the toolchain as above and sets
# the CMake arguments in FEWLABELS_CMAKE_ARGS (array); --no_install only sets
# up the environment (for binaries built before) and never runs deps.sh.
fewlabels_env() {
  FEWLABELS_CMAKE_ARGS=()
  local bundle=${GPU_BUNDLE:-$_build_lib_root/.gpu}
  if [[ -z "${TORCH_DIR:-}" ]]; then
    local py_torch
    if py_torch=$(fewlabels_cuda_python_torch) && [[ -n "$py_torch" ]]; then
      echo "== CUDA Python torch found: using $py_torch/Torch"
      TORCH_DIR=$py_torch/Torch
    fi
  fi
  if [[ ! -f /usr/include/grpcpp/grpcpp.h ]] &&
     [[ -f $bundle/deps.tar.xz || -x /opt/deps/usr/bin/protoc ]]; then
    echo "== no Debian gRPC: using the dependency bundle (scripts/gpu_env.sh)"
    local keep_torch=${TORCH_DIR:-}
    # shellcheck source=gpu_env.sh
    source "$_build_lib_root/scripts/gpu_env.sh" || return 1
    [[ -n "$keep_torch" ]] && TORCH_DIR=$keep_torch
    FEWLABELS_CMAKE_ARGS+=("${GPU_CMAKE_ARGS[@]}")
  elif [[ "${1:-}" != --no_install ]]; then
    "$_build_lib_root/scripts/deps.sh" || return 1
  fi
  if [[ -n "${TORCH_DIR:-}" ]]; then
    [[ -f "$TORCH_DIR/TorchConfig.cmake" ]] ||
      { echo "TORCH_DIR=$TORCH_DIR has no TorchConfig.cmake" >&2; return 2; }
    FEWLABELS_CMAKE_ARGS+=(-DTorch_DIR="$TORCH_DIR")
  fi
}

fewlabels_build() {
  local build_dir=$1; shift
  local targets=("$@")
  [[ ${#targets[@]} -gt 0 ]] || targets=(trainer oracle_server_main oraclectl shuffle_dataset)
  fewlabels_env --install || return $?
  # Keep the generator of an existing build folder; else Ninja when present.
  local generator=Ninja
  if [[ -f $build_dir/Makefile && ! -f $build_dir/build.ninja ]] ||
     { [[ ! -f $build_dir/build.ninja ]] && ! command -v ninja >/dev/null; }; then
    generator="Unix Makefiles"
  fi
  # The configure and build output goes to BUILD_DIR/build.log; on failure
  # its errors and last lines go to stderr (Ninja prints a failed
  # compiler's messages on stdout, so without this they would be lost).
  mkdir -p "$build_dir" || return 1
  local log=$build_dir/build.log
  local build_type=()
  [[ -n ${CMAKE_BUILD_TYPE:-} ]] && build_type=(-DCMAKE_BUILD_TYPE="$CMAKE_BUILD_TYPE")
  echo "== building into $build_dir (log: $log)"
  if ! { cmake -S "$_build_lib_root" -B "$build_dir" -G "$generator" \
           "${build_type[@]}" "${FEWLABELS_CMAKE_ARGS[@]}" &&
         cmake --build "$build_dir" -j "$(nproc)" --target "${targets[@]}"; } >"$log" 2>&1; then
    {
      echo "== build failed; its first errors, then the end of $log:"
      grep -m 20 -E 'error|Error|FAILED' "$log"
      echo "..."
      tail -n 40 "$log"
    } >&2
    return 1
  fi
}
