#!/usr/bin/env bash
# Writes a throw-away PKI for TLS tests into DIR with the openssl command line
# (EC P-256 keys, valid for 2 days):
#
#   ca.pem ca.key              test CA
#   server.pem server.key      signed by ca; CN and subjectAltName
#                              DNS:localhost, IP:127.0.0.1
#   client.pem client.key      signed by ca; clientAuth
#   other_ca.pem other_ca.key  a second, unrelated CA
#   other_client.pem .key      signed by other_ca; clientAuth
#
# Usage: make_test_certs.sh DIR
set -euo pipefail

if (($# != 1)); then
  echo "usage: $0 DIR" >&2
  exit 2
fi
dir=$1
mkdir -p "$dir"
cd "$dir"

cat >openssl.cnf <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
EOF

new_key() {
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" \
    2>/dev/null
}

# new_ca NAME CN
new_ca() {
  new_key "$1.key"
  openssl req -config openssl.cnf -new -x509 -key "$1.key" -days 2 \
    -subj "/CN=$2" -extensions ca -out "$1.pem"
}

# new_leaf NAME CA EXTENSIONS CN
new_leaf() {
  new_key "$1.key"
  openssl req -config openssl.cnf -new -key "$1.key" -subj "/CN=$4" \
    -out "$1.csr"
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" \
    -CAcreateserial -days 2 -extfile openssl.cnf -extensions "$3" \
    -out "$1.pem" 2>/dev/null
  rm -f "$1.csr"
}

new_ca ca "fewlabels test CA"
new_ca other_ca "fewlabels other test CA"
new_leaf server ca server localhost
new_leaf client ca client "test client"
new_leaf other_client other_ca client "other test client"
