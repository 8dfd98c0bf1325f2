#include "trainer/rpc/grpc_clients.h"

#include <grpc/grpc.h>

#include <algorithm>
#include <cstdint>

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

}  // namespace trainer
