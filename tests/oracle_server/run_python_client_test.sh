#!/usr/bin/env bash
# Starts oracle_server on a fresh database in a temp dir at a port the OS
# picks, runs python_client.py against it with Debian's /usr/bin/python3 (the
# only interpreter with python3-grpcio), then stops the server with SIGTERM
# and expects a clean exit.
#
# With MAKE_CERTS (tests/common/make_test_certs.sh) the server runs mutual TLS
# on a throw-away PKI: the client with a certificate from the right CA must
# pass every check, while a plaintext client, a client without a certificate,
# one with a certificate from another CA and one trusting another CA must be
# refused (UNAVAILABLE). oracle_health_probe (next to ORACLE_SERVER) must
# answer SERVING over TLS and fail in plaintext.
#
# Usage: run_python_client_test.sh ORACLE_SERVER STUBS_DIR PYTHON_CLIENT
#            [MAKE_CERTS]
# Env:   FEWLABELS_DATASET_DIR (default /usr/share/datasets/fashion-mnist)
set -euo pipefail

if (($# != 3 && $# != 4)); then
  echo "usage: $0 ORACLE_SERVER STUBS_DIR PYTHON_CLIENT [MAKE_CERTS]" >&2
  exit 2
fi
server_bin=$1
stubs_dir=$2
client=$3
make_certs=${4:-}
dataset=${FEWLABELS_DATASET_DIR:-/usr/share/datasets/fashion-mnist}
train_labels=$dataset/train-labels-idx1-ubyte.gz

work=$(mktemp -d /tmp/oracle_python_client.XXXXXX)
server_pid=""
cleanup() {
  if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid"
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

server_tls=()
client_tls=()
if [[ -n $make_certs ]]; then
  pki=$work/pki
  bash "$make_certs" "$pki"
  server_tls=(--tls_cert="$pki/server.pem" --tls_key="$pki/server.key"
    --tls_client_ca="$pki/ca.pem")
  client_tls=(--tls_ca "$pki/ca.pem" --tls_cert "$pki/client.pem"
    --tls_key "$pki/client.key")
fi

"$server_bin" --host=127.0.0.1 --port=0 --port_file="$work/port" \
  --db="$work/oracle.db" --train_labels="$train_labels" \
  --test_labels="$dataset/t10k-labels-idx1-ubyte.gz" "${server_tls[@]}" \
  >"$work/server.log" 2>&1 &
server_pid=$!

# Wait (at most 30 s) for the port file the server writes once it listens.
port=""
for ((i = 0; i < 300; i++)); do
  if [[ -s $work/port ]]; then
    port=$(tr -d '[:space:]' <"$work/port")
    [[ $port =~ ^[0-9]+$ ]] && break
  fi
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "oracle_server exited at startup; log:" >&2
    cat "$work/server.log" >&2
    exit 1
  fi
  sleep 0.1
done
if ! [[ $port =~ ^[0-9]+$ ]]; then
  echo "oracle_server wrote no port file within 30 s; log:" >&2
  cat "$work/server.log" >&2
  exit 1
fi

client_status=0
PYTHONPATH="$stubs_dir" /usr/bin/python3 "$client" \
  --server "127.0.0.1:$port" --train_labels "$train_labels" \
  "${client_tls[@]}" || client_status=$?

if [[ -n $make_certs ]]; then
  # expect_refused NAME CLIENT_FLAGS...
  expect_refused() {
    local name=$1
    shift
    if ! PYTHONPATH="$stubs_dir" /usr/bin/python3 "$client" \
      --server "127.0.0.1:$port" --expect_refused "$@"; then
      echo "FAIL: $name was not refused" >&2
      client_status=1
    fi
  }
  expect_refused "plaintext client"
  expect_refused "TLS client without certificate" --tls_ca "$pki/ca.pem"
  expect_refused "client certificate from another CA" --tls_ca "$pki/ca.pem" \
    --tls_cert "$pki/other_client.pem" --tls_key "$pki/other_client.key"
  expect_refused "client trusting another CA" --tls_ca "$pki/other_ca.pem" \
    --tls_cert "$pki/client.pem" --tls_key "$pki/client.key"

  probe=$(dirname "$server_bin")/oracle_health_probe
  if ! "$probe" --server="127.0.0.1:$port" --tls_ca="$pki/ca.pem" \
    --tls_cert="$pki/client.pem" --tls_key="$pki/client.key" >/dev/null; then
    echo "FAIL: oracle_health_probe over TLS" >&2
    client_status=1
  fi
  if "$probe" --server="127.0.0.1:$port" --timeout=5s >/dev/null 2>&1; then
    echo "FAIL: plaintext oracle_health_probe was answered" >&2
    client_status=1
  fi
fi

kill -TERM "$server_pid"
server_status=0
wait "$server_pid" || server_status=$?
server_pid=""
if ((server_status != 0)); then
  echo "oracle_server exited with status $server_status after SIGTERM; log:" >&2
  cat "$work/server.log" >&2
  exit 1
fi
if ((client_status != 0)); then
  echo "python_client failed (status $client_status); server log:" >&2
  cat "$work/server.log" >&2
fi
exit "$client_status"
