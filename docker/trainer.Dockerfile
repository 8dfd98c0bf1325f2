# The trainer on CUDA. NOT BUILT OR RUN HERE: the machine this was written on
# has no container engine and no network; only `docker-compose config` was
# checked. Verify the base image tag and the LibTorch URL before relying on it.
#
#   docker build -f docker/trainer.Dockerfile -t fewlabels-trainer .
#   docker run --gpus all -v runs:/runs fewlabels-trainer --oracle=HOST:50051 \
#     --out_dir=/runs/r1 --budget=100
#
# Ubuntu 24.04 ships the same gRPC (1.51), protobuf (3.21) and Abseil
# (20220623) as Debian 12, so the code builds against the versions it is
# developed with. LibTorch is the official C++11-ABI CUDA zip matching the
# base image's CUDA; its own include dir carries google/protobuf headers,
# which the CMake layout keeps away from generated code (see shared GPU.md).

# Fashion-MNIST from Debian's dataset package, the same files the oracle uses.
FROM debian:12-slim AS dataset
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      dataset-fashion-mnist \
 && rm -rf /var/lib/apt/lists/*

FROM nvidia/cuda:12.8.1-cudnn-devel-ubuntu24.04
ARG LIBTORCH_URL=https://download.pytorch.org/libtorch/cu128/libtorch-cxx11-abi-shared-with-deps-2.7.0%2Bcu128.zip
# Compute capabilities to build for: A100 (8.0), L4/RTX 40 (8.9), H100/H200
# (9.0). Set, so that torch's CMake does not probe for a GPU at build time.
ENV TORCH_CUDA_ARCH_LIST="8.0;8.9;9.0"
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build pkg-config ca-certificates curl unzip \
      libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler \
      libabsl-dev libsqlite3-dev zlib1g-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*
RUN curl -fsSL -o /tmp/libtorch.zip "${LIBTORCH_URL}" \
 && unzip -q /tmp/libtorch.zip -d /opt \
 && rm /tmp/libtorch.zip
ENV LD_LIBRARY_PATH=/opt/libtorch/lib
COPY --from=dataset /usr/share/datasets/fashion-mnist /usr/share/datasets/fashion-mnist

WORKDIR /src
COPY . .
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH=/opt/libtorch \
      -DFEWLABELS_BUILD_TRAINER=ON -DFEWLABELS_BUILD_TESTS=OFF \
 && ninja -C /build trainer \
 && install -m 0755 /build/trainer/trainer /usr/local/bin/trainer \
 && rm -rf /build

VOLUME /runs
ENTRYPOINT ["trainer"]
CMD ["--oracle=oracle:50051", "--out_dir=/runs/run", "--budget=100"]
