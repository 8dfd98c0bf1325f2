// Client side of an out-of-process selection strategy (proto/selector.proto)
// behind a plain C++ interface: torch translation units use it without seeing
// any generated protobuf header.
#ifndef TRAINER_RPC_SELECTOR_CLIENT_H_
#define TRAINER_RPC_SELECTOR_CLIENT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/tls_options.h"
#include "trainer/rpc/rpc_retry.h"

namespace trainer {

// The pool's state as sent to a selector; mirrors selector.v1.SelectRequest.
struct SelectorQuery {
  int64_t count = 0;              // how many ids to return
  std::vector<int64_t> pool_ids;  // candidate train ids, labelled included
  int embedding_dim = 0;          // D
  std::vector<float> embeddings;  // pool_ids.size() x D, row-major
  int num_classes = 0;            // C; 0 when there are no probabilities
  // pool_ids.size() x C, row-major; empty before any model was trained.
  std::vector<float> probabilities;
  std::vector<int64_t> labelled_ids;  // already bought; never returned
  // The bought label of each labelled_ids entry, or empty.
  std::vector<int64_t> labelled_labels;
  int round = 0;                      // active-learning round
  uint64_t seed = 0;                  // for selectors that draw at random
};

// Returns INVALID_ARGUMENT naming the first problem if the query's sizes do
// not fit together (embeddings or probabilities of the wrong length, repeated
// pool ids, negative count, or more ids asked than unlabelled pool ids).
absl::Status ValidateSelectorQuery(const SelectorQuery& query);

// Returns FAILED_PRECONDITION naming the first problem unless `ids` holds
// exactly query.count distinct ids, each in query.pool_ids and none in
// query.labelled_ids: a selector that answers otherwise is broken.
absl::Status ValidateSelection(const SelectorQuery& query,
                               const std::vector<int64_t>& ids);

// An out-of-process selector. Implementations are thread-safe.
class SelectorClient {
 public:
  virtual ~SelectorClient() = default;

  // Returns the ids to label next, checked with ValidateSelection.
  // INVALID_ARGUMENT if ValidateSelectorQuery rejects `query` (nothing is
  // sent); the selector's own error otherwise.
  virtual absl::StatusOr<std::vector<int64_t>> Select(
      const SelectorQuery& query) = 0;
};

// How to reach a selector.
struct SelectorClientOptions {
  // "host:port" of the selector.
  std::string target;
  // Deadline of each attempt; a selector may do heavy work.
  absl::Duration call_deadline = absl::Minutes(10);
  // Retries on UNAVAILABLE and DEADLINE_EXCEEDED (Select is a function of its
  // request, so repeating it is safe). A call that ran into call_deadline has
  // used up the default max_total_wait already, so is not repeated.
  RetryPolicy retry;
  // Polled after each failed attempt and while waiting to retry: once true, a
  // retrying call returns CANCELLED instead of trying again (see
  // CallWithRetry). Empty: never. Must be thread-safe and outlive the client.
  std::function<bool()> stop_requested;
  // Largest message sent or received (60000 x 256 floats is 60 MB).
  int max_message_bytes = 256 << 20;
  // TLS files (CA, and client certificate for mutual TLS); empty: plaintext.
  common::ClientTlsOptions tls;
};

// Returns a client over a gRPC channel to options.target (TLS if
// options.tls.enabled()), INVALID_ARGUMENT if the options are unusable, or the
// errors of common::MakeChannelCredentials for unusable TLS files. Connects
// lazily.
absl::StatusOr<std::unique_ptr<SelectorClient>> MakeGrpcSelectorClient(
    const SelectorClientOptions& options);

}  // namespace trainer

#endif  // TRAINER_RPC_SELECTOR_CLIENT_H_
