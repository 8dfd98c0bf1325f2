#include "trainer/rpc/grpc_clients.h"

#include <grpc/grpc.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/tls_credentials.h"

namespace trainer {

grpc::ChannelArguments ClientChannelArguments(int max_message_bytes,
                                              const RetryPolicy& retry) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(max_message_bytes);
  args.SetMaxSendMessageSize(max_message_bytes);
  const int max_backoff_ms = static_cast<int>(std::clamp<int64_t>(
      absl::ToInt64Milliseconds(retry.max_backoff), 100, 120000));
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
              std::min(1000, max_backoff_ms));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, max_backoff_ms);
  return args;
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeClientChannel(
    absl::string_view server, const ClientChannelOptions& options) {
  if (options.target.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(server, " target is empty"));
  }
  if (options.target.back() == ':') {
    return absl::InvalidArgumentError(
        absl::StrCat(server, " target \"", options.target,
                     "\" has no port (use host:port)"));
  }
  if (options.call_deadline <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat(server, " call_deadline must be positive, got ",
                     absl::FormatDuration(options.call_deadline)));
  }
  if (options.max_message_bytes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(server, " max_message_bytes must be positive, got ",
                     options.max_message_bytes));
  }
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> credentials,
                   common::MakeChannelCredentials(options.tls));
  return grpc::CreateCustomChannel(
      options.target, credentials,
      ClientChannelArguments(options.max_message_bytes, options.retry));
}

}  // namespace trainer
