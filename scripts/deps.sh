#!/usr/bin/env bash
# Installs the Debian 12 packages this project needs, if any are missing.
# Idempotent and quiet; needs root (or sudo) only when something is missing.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libsqlite3-dev libpq-dev libgtest-dev libgmock-dev zlib1g-dev libssl-dev
  libtorch-dev libopenblas0-pthread dataset-fashion-mnist
  python3-grpcio python3-protobuf
)
if [[ "${1:-}" == "--with-test-tools" ]]; then
  PACKAGES+=(chromium clang docker-compose libclang-rt-14-dev openssl postgresql sqlite3 strace)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
echo "deps: installing ${missing[*]}" >&2
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
