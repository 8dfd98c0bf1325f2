// Where the PEM files for TLS on the project's gRPC connections live. Plain
// structs (no gRPC header), so torch targets may hold them in their option
// structs; common/tls_credentials.h turns them into gRPC credentials.
#ifndef COMMON_TLS_OPTIONS_H_
#define COMMON_TLS_OPTIONS_H_

#include <string>

namespace common {

// A server's TLS files. All empty: plaintext.
struct ServerTlsOptions {
  // Certificate chain of the server, leaf first (PEM). Its subjectAltName must
  // name every host or IP address clients dial.
  std::string cert_file;
  // Private key of that certificate (PEM, unencrypted).
  std::string key_file;
  // If set, mutual TLS: clients must present a certificate signed by one of
  // these CA certificates (PEM). Needs cert_file and key_file.
  std::string client_ca_file;

  bool enabled() const {
    return !cert_file.empty() || !key_file.empty() || !client_ca_file.empty();
  }
};

// A client's TLS files. All empty: plaintext.
struct ClientTlsOptions {
  // CA certificates (PEM) that the server's certificate must chain to; empty
  // with TLS on: gRPC's default roots.
  std::string ca_file;
  // Client certificate (PEM) for a server that requires mutual TLS; set
  // together with key_file.
  std::string cert_file;
  // Private key of cert_file (PEM, unencrypted).
  std::string key_file;

  bool enabled() const {
    return !ca_file.empty() || !cert_file.empty() || !key_file.empty();
  }
};

}  // namespace common

#endif  // COMMON_TLS_OPTIONS_H_
