// The gRPC clients over a caller-supplied channel and RetryEnv, for tests
// (an in-process channel, a fake clock). Includes gRPC headers: torch-free
// targets only. Everyone else uses MakeGrpcOracleClient and
// MakeGrpcSelectorClient.
#ifndef TRAINER_RPC_GRPC_CLIENTS_H_
#define TRAINER_RPC_GRPC_CLIENTS_H_

#include <grpcpp/channel.h>
#include <grpcpp/support/channel_arguments.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/tls_options.h"
#include "trainer/rpc/oracle_client.h"
#include "trainer/rpc/rpc_retry.h"
#include "trainer/rpc/selector_client.h"

namespace trainer {

// Channel arguments of both clients: message size limits, and reconnect
// backoff capped at retry.max_backoff so that a returning server is noticed
// by the next retry.
grpc::ChannelArguments ClientChannelArguments(int max_message_bytes,
                                              const RetryPolicy& retry);

// What both clients' factories need to open a channel.
struct ClientChannelOptions {
  // "host:port" of the server.
  std::string target;
  // Only checked here (positive): the clients apply it per call.
  absl::Duration call_deadline;
  int max_message_bytes = 0;
  RetryPolicy retry;
  common::ClientTlsOptions tls;
};

// Checks `options` and opens a lazily connecting channel to options.target
// (TLS if options.tls.enabled()). `server` names the peer in messages
// ("oracle", "selector"). Returns INVALID_ARGUMENT for an empty target, one
// without a port, or a non-positive call_deadline or max_message_bytes, and
// the errors of common::MakeChannelCredentials for unusable TLS files.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeClientChannel(
    absl::string_view server, const ClientChannelOptions& options);

// options.target is used only in messages and options.stop_requested not at
// all; calls go over `channel` and wait on `env`.
std::unique_ptr<OracleClient> NewGrpcOracleClient(
    std::shared_ptr<grpc::ChannelInterface> channel,
    const OracleClientOptions& options, RetryEnv env);

// options.target is used only in messages and options.stop_requested not at
// all; calls go over `channel` and wait on `env`.
std::unique_ptr<SelectorClient> NewGrpcSelectorClient(
    std::shared_ptr<grpc::ChannelInterface> channel,
    const SelectorClientOptions& options, RetryEnv env);

}  // namespace trainer

#endif  // TRAINER_RPC_GRPC_CLIENTS_H_
