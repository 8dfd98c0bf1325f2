# shellcheck shell=bash
# Environment for building and running on a machine without the Debian
# packages but with a CUDA LibTorch from its Python torch (the lent GPU
# machine: Ubuntu, no gRPC/Abseil, no network; see shared/GPU.md). Source it:
#
#   source scripts/gpu_env.sh   # then: cmake ... "${GPU_CMAKE_ARGS[@]}"
#
# It unpacks the dependency bundle made here by scripts/make_gpu_bundle.sh
# (GPU_BUNDLE, default <repo>/.gpu: deps.tar.xz, data/*.gz) to /opt/deps
# unless /opt/deps already holds it (its *.pc files name that prefix), and
# sets:
#   PATH, LD_LIBRARY_PATH  the bundle's protoc/grpc_cpp_plugin/pkgconf and
#                          libraries, and the Python torch's lib folder;
#   TORCH_DIR              the Python torch's CMake folder (.../Torch);
#   DATA_DIR               <bundle>/data, when it holds the data set;
#   GPU_CMAKE_ARGS         (array) the CMake arguments for that toolchain:
#                          prefix path, protobuf/OpenSSL/zlib/SQLite/pkgconf
#                          hints, CUDA compiler, tests off.
# Returns non-zero (does not exit) when something is missing.

_gpu_env_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GPU_BUNDLE=${GPU_BUNDLE:-$_gpu_env_root/.gpu}
# Where the bundle lives unpacked; its *.pc files name /opt/deps.
_gpu_deps=${GPU_DEPS:-/opt/deps}

_gpu_env() {
  if [[ ! -x $_gpu_deps/usr/bin/protoc ]]; then
    if [[ ! -f $GPU_BUNDLE/deps.tar.xz ]]; then
      echo "gpu_env: no $_gpu_deps and no $GPU_BUNDLE/deps.tar.xz" \
        "(make it with scripts/make_gpu_bundle.sh and carry .gpu)" >&2
      return 1
    fi
    echo "gpu_env: unpacking $GPU_BUNDLE/deps.tar.xz to $_gpu_deps" >&2
    mkdir -p "$_gpu_deps" && tar xJf "$GPU_BUNDLE/deps.tar.xz" -C "$_gpu_deps" ||
      return 1
  fi
  local torch_cmake torch_lib
  torch_cmake=$(python3 -c "import torch;print(torch.utils.cmake_prefix_path)") ||
    { echo "gpu_env: python3 has no torch" >&2; return 1; }
  torch_lib=$(python3 -c "import torch,os;print(os.path.join(os.path.dirname(torch.__file__),'lib'))") ||
    return 1
  local d=$_gpu_deps/usr
  local lib=$d/lib/x86_64-linux-gnu
  case ":$PATH:" in *":$d/bin:"*) ;; *) export PATH=$d/bin:$PATH ;; esac
  case ":${LD_LIBRARY_PATH:-}:" in
    *":$lib:"*) ;;
    *) export LD_LIBRARY_PATH=$torch_lib:$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} ;;
  esac
  export TORCH_DIR=$torch_cmake/Torch
  if [[ -z "${DATA_DIR:-}" && -f $GPU_BUNDLE/data/train-images-idx3-ubyte.gz ]]; then
    export DATA_DIR=$GPU_BUNDLE/data
  fi
  GPU_CMAKE_ARGS=(
    -DCMAKE_PREFIX_PATH="$torch_cmake;$d"
    -DCMAKE_POLICY_VERSION_MINIMUM=3.5
    -DFEWLABELS_BUILD_TESTS=OFF
    -DOPENSSL_ROOT_DIR="$d" -DZLIB_ROOT="$d"
    -DPKG_CONFIG_EXECUTABLE="$d/bin/pkgconf"
    -DProtobuf_PROTOC_EXECUTABLE="$d/bin/protoc"
    -DProtobuf_INCLUDE_DIR="$d/include"
    -DProtobuf_LIBRARY="$lib/libprotobuf.so"
    -DGRPC_CPP_PLUGIN="$d/bin/grpc_cpp_plugin"
    -DSQLite3_INCLUDE_DIR="$d/include"
    -DSQLite3_LIBRARY="$lib/libsqlite3.so"
  )
  if [[ -x /usr/local/cuda/bin/nvcc ]]; then
    GPU_CMAKE_ARGS+=(-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc
                     -DCUDAToolkit_ROOT=/usr/local/cuda)
  fi
  GPU_CMAKE_ARGS+=(-DTORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}")
}
_gpu_env
