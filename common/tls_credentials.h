// gRPC credentials from common::ServerTlsOptions / ClientTlsOptions: the one
// place that reads certificate and key files. Includes gRPC headers:
// torch-free targets only.
#ifndef COMMON_TLS_CREDENTIALS_H_
#define COMMON_TLS_CREDENTIALS_H_

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include <memory>

#include "absl/status/statusor.h"
#include "common/tls_options.h"

namespace common {

// Insecure credentials if !options.enabled(), else TLS with the files'
// contents (read now, once). The files are checked here rather than at the
// first handshake: NOT_FOUND for a missing file, PERMISSION_DENIED for an
// unreadable one, INVALID_ARGUMENT for a cert without its key (or the
// reverse), a client CA without a server certificate, a file that holds no
// PEM certificate or key, or a key that does not belong to the certificate.
// Messages name the file and the flag-like field.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerTlsOptions& options);

// As MakeServerCredentials, for a channel.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>>
MakeChannelCredentials(const ClientTlsOptions& options);

}  // namespace common

#endif  // COMMON_TLS_CREDENTIALS_H_
