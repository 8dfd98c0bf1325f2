#include "trainer/rpc/selector_client.h"

#include <grpcpp/client_context.h>

#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/status_macros.h"
#include "proto/selector.grpc.pb.h"
#include "trainer/rpc/grpc_clients.h"

namespace trainer {
namespace {

namespace pb = ::selector::v1;

class GrpcSelectorClient final : public SelectorClient {
 public:
  GrpcSelectorClient(std::shared_ptr<grpc::ChannelInterface> channel,
                     SelectorClientOptions options, RetryEnv env)
      : stub_(pb::Selector::NewStub(std::move(channel))),
        options_(std::move(options)),
        env_(std::move(env)) {}

  absl::StatusOr<std::vector<int64_t>> Select(
      const SelectorQuery& query) override {
    absl::Status valid = ValidateSelectorQuery(query);
    if (!valid.ok()) return valid;

    pb::SelectRequest request;
    request.set_count(query.count);
    request.mutable_pool_ids()->Add(query.pool_ids.begin(),
                                    query.pool_ids.end());
    request.set_embedding_dim(query.embedding_dim);
    request.mutable_embeddings()->Add(query.embeddings.begin(),
                                      query.embeddings.end());
    request.set_num_classes(query.num_classes);
    request.mutable_probabilities()->Add(query.probabilities.begin(),
                                         query.probabilities.end());
    request.mutable_labelled_ids()->Add(query.labelled_ids.begin(),
                                        query.labelled_ids.end());
    for (int64_t label : query.labelled_labels) {
      request.add_labelled_labels(static_cast<int32_t>(label));
    }
    request.set_round(query.round);
    request.set_seed(query.seed);

    pb::SelectResponse response;
    absl::Status status =
        CallWithRetry(options_.retry, env_, "selector", options_.target, [&] {
          grpc::ClientContext context;
          context.set_deadline(
              absl::ToChronoTime(absl::Now() + options_.call_deadline));
          response.Clear();
          return common::FromGrpcStatus(
              stub_->Select(&context, request, &response));
        });
    if (!status.ok()) return status;

    std::vector<int64_t> ids(response.ids().begin(), response.ids().end());
    absl::Status selection = ValidateSelection(query, ids);
    if (!selection.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "selector at ", options_.target, ": ", selection.message()));
    }
    return ids;
  }

 private:
  const std::unique_ptr<pb::Selector::StubInterface> stub_;
  const SelectorClientOptions options_;
  const RetryEnv env_;
};

}  // namespace

absl::Status ValidateSelectorQuery(const SelectorQuery& query) {
  const size_t n = query.pool_ids.size();
  if (query.count < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("count must not be negative, got ", query.count));
  }
  if (query.embedding_dim < 0 || query.num_classes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("embedding_dim and num_classes must not be negative, got ",
                     query.embedding_dim, " and ", query.num_classes));
  }
  if (query.embeddings.size() != n * query.embedding_dim) {
    return absl::InvalidArgumentError(
        absl::StrCat("embeddings hold ", query.embeddings.size(),
                     " floats, expected ", n, " pool ids x ",
                     query.embedding_dim, " dims = ", n * query.embedding_dim));
  }
  if (!query.probabilities.empty() &&
      query.probabilities.size() != n * query.num_classes) {
    return absl::InvalidArgumentError(
        absl::StrCat("probabilities hold ", query.probabilities.size(),
                     " floats, expected 0 or ", n, " pool ids x ",
                     query.num_classes, " classes = ", n * query.num_classes));
  }
  if (!query.labelled_labels.empty() &&
      query.labelled_labels.size() != query.labelled_ids.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "labelled_labels has ", query.labelled_labels.size(), " entries for ",
        query.labelled_ids.size(), " labelled ids"));
  }
  absl::flat_hash_set<int64_t> pool;
  pool.reserve(n);
  for (int64_t id : query.pool_ids) {
    if (!pool.insert(id).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("pool id ", id, " appears more than once"));
    }
  }
  absl::flat_hash_set<int64_t> labelled_in_pool;
  for (int64_t id : query.labelled_ids) {
    if (pool.contains(id)) labelled_in_pool.insert(id);
  }
  const int64_t available =
      static_cast<int64_t>(n) - static_cast<int64_t>(labelled_in_pool.size());
  if (query.count > available) {
    return absl::InvalidArgumentError(
        absl::StrCat("asked for ", query.count, " ids but only ", available,
                     " unlabelled pool ids remain"));
  }
  return absl::OkStatus();
}

absl::Status ValidateSelection(const SelectorQuery& query,
                               const std::vector<int64_t>& ids) {
  if (static_cast<int64_t>(ids.size()) != query.count) {
    return absl::FailedPreconditionError(
        absl::StrCat("returned ", ids.size(), " ids, expected ", query.count));
  }
  const absl::flat_hash_set<int64_t> pool(query.pool_ids.begin(),
                                          query.pool_ids.end());
  const absl::flat_hash_set<int64_t> labelled(query.labelled_ids.begin(),
                                              query.labelled_ids.end());
  absl::flat_hash_set<int64_t> seen;
  seen.reserve(ids.size());
  for (int64_t id : ids) {
    if (!pool.contains(id)) {
      return absl::FailedPreconditionError(
          absl::StrCat("returned id ", id, " which is not in the pool"));
    }
    if (labelled.contains(id)) {
      return absl::FailedPreconditionError(
          absl::StrCat("returned id ", id, " which is already labelled"));
    }
    if (!seen.insert(id).second) {
      return absl::FailedPreconditionError(
          absl::StrCat("returned id ", id, " more than once"));
    }
  }
  return absl::OkStatus();
}

std::unique_ptr<SelectorClient> NewGrpcSelectorClient(
    std::shared_ptr<grpc::ChannelInterface> channel,
    const SelectorClientOptions& options, RetryEnv env) {
  return std::make_unique<GrpcSelectorClient>(std::move(channel), options,
                                              std::move(env));
}

absl::StatusOr<std::unique_ptr<SelectorClient>> MakeGrpcSelectorClient(
    const SelectorClientOptions& options) {
  ASSIGN_OR_RETURN(
      std::shared_ptr<grpc::Channel> channel,
      MakeClientChannel(
          "selector", {options.target, options.call_deadline,
                       options.max_message_bytes, options.retry, options.tls}));
  RetryEnv env = RetryEnv::Real();
  env.stop_requested = options.stop_requested;
  return NewGrpcSelectorClient(std::move(channel), options, std::move(env));
}

}  // namespace trainer
