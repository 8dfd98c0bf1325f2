#!/usr/bin/env bash
# Packs what the GPU machine lacks into .gpu/ (ignored by git), following
# shared/GPU.md: Debian 12's gRPC/protobuf/Abseil/re2/c-ares/OpenSSL/SQLite
# runtime + headers relocated to /opt/deps, the Fashion-MNIST files, and the
# calibration reference (shared/tools/fixmatch_ref.py, never project code:
# it reads the label file) when the shared folder has it.
#   scripts/make_gpu_bundle.sh   ->  .gpu/deps.tar.xz  .gpu/data/*.gz
#                                    .gpu/tools/fixmatch_ref.py
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=/opt/deps
rm -rf .gpu/debs .gpu/root && mkdir -p .gpu/debs .gpu/root .gpu/data
(cd .gpu/debs && apt-get download -q \
  libgrpc++-dev libgrpc++1.51 libgrpc-dev libgrpc29 libprotobuf-dev libprotobuf32 \
  libprotobuf-lite32 libprotoc32 protobuf-compiler protobuf-compiler-grpc libabsl-dev \
  libabsl20220623 libre2-9 libre2-dev libc-ares-dev libc-ares2 libssl-dev libssl3 \
  zlib1g-dev libsqlite3-dev libsqlite3-0 pkgconf pkgconf-bin libpkgconf3 2>/dev/null)
for f in .gpu/debs/*.deb; do dpkg -x "$f" .gpu/root; done
find .gpu/root -name '*.a' -delete
rm -rf .gpu/root/usr/share/doc .gpu/root/usr/share/man
find .gpu/root -name '*.pc' -exec sed -i \
  -e "s#^prefix=/usr#prefix=$PREFIX/usr#" -e "s#^libdir=/usr#libdir=$PREFIX/usr#" \
  -e "s#^includedir=/usr#includedir=$PREFIX/usr#" {} +
tar cJf .gpu/deps.tar.xz -C .gpu/root .
rm -rf .gpu/debs .gpu/root
cp /usr/share/datasets/fashion-mnist/*.gz .gpu/data/
if [[ -f ../shared/tools/fixmatch_ref.py ]]; then
  mkdir -p .gpu/tools && cp ../shared/tools/fixmatch_ref.py .gpu/tools/
fi
du -sh .gpu/deps.tar.xz .gpu/data
