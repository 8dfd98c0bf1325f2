# The label oracle: oracle_server, oraclectl and oracle_health_probe built on
# Debian 12, run from a slim image that holds only their runtime libraries and
# the Fashion-MNIST label files.
#
#   docker build -f docker/oracle.Dockerfile -t fewlabels-oracle .
#   docker run -p 50051:50051 -v oracle-data:/data fewlabels-oracle
#
# Build context: the repository root (.dockerignore keeps build dirs out).
# Extra arguments are passed to oracle_server, e.g. --default_budget=250.

FROM debian:12-slim AS build
# scripts/deps.sh without libtorch-dev (no trainer here), GoogleTest and the
# Python packages (tests are not built) and the dataset (runtime stage).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build pkg-config \
      libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler \
      libabsl-dev libsqlite3-dev libpq-dev zlib1g-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DFEWLABELS_BUILD_TRAINER=OFF -DFEWLABELS_BUILD_TESTS=OFF \
 && ninja -C /build oracle_server_main oraclectl oracle_health_probe \
 && install -D -m 0755 -t /out/usr/local/bin \
      /build/oracle_server/oracle_server \
      /build/oracle_server/oraclectl \
      /build/oracle_server/oracle_health_probe

FROM debian:12-slim
# The shared libraries the three binaries link (ldd), and the label files
# oracle_server imports into a new database.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libgrpc++1.51 libgrpc29 libprotobuf32 libabsl20220623 libc-ares2 \
      libre2-9 libpq5 libsqlite3-0 libssl3 zlib1g \
      dataset-fashion-mnist \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin oracle \
 && install -d -o oracle -g oracle -m 0750 /data
COPY --from=build /out/ /
USER oracle
VOLUME /data
EXPOSE 50051
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["oracle_health_probe", "--server=127.0.0.1:50051", "--timeout=3s"]
ENTRYPOINT ["oracle_server", "--host=0.0.0.0", "--port=50051", "--db=/data/oracle.db"]
CMD []
