// The gRPC clients over a caller-supplied channel and RetryEnv, for tests
// (an in-process channel, a fake clock). Includes gRPC headers: torch-free
// targets only. Everyone else uses MakeGrpcOracleClient and
// MakeGrpcSelectorClient.
#ifndef TRAINER_RPC_GRPC_CLIENTS_H_
#define TRAINER_RPC_GRPC_CLIENTS_H_

#include <grpcpp/channel.h>
#include <grpcpp/support/channel_arguments.h>

#include <memory>

#include "trainer/rpc/oracle_client.h"
#include "trainer/rpc/rpc_retry.h"
#include "trainer/rpc/selector_client.h"

namespace trainer {

// Channel arguments of both clients: message size limits, and reconnect
// backoff capped at retry.max_backoff so that a returning server is noticed
// by the next retry.
grpc::ChannelArguments ClientChannelArguments(int max_message_bytes,
                                              const RetryPolicy& retry);

// options.target is used only in messages; calls go over `channel`.
std::unique_ptr<OracleClient> NewGrpcOracleClient(
    std::shared_ptr<grpc::ChannelInterface> channel,
    const OracleClientOptions& options, RetryEnv env);

// options.target is used only in messages; calls go over `channel`.
std::unique_ptr<SelectorClient> NewGrpcSelectorClient(
    std::shared_ptr<grpc::ChannelInterface> channel,
    const SelectorClientOptions& options, RetryEnv env);

}  // namespace trainer

#endif  // TRAINER_RPC_GRPC_CLIENTS_H_
