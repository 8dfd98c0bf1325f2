// Client side of the label oracle (proto/oracle.proto) behind a plain C++
// interface, so that torch translation units can use it without seeing any
// generated protobuf header.
#ifndef TRAINER_RPC_ORACLE_CLIENT_H_
#define TRAINER_RPC_ORACLE_CLIENT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/tls_options.h"
#include "trainer/rpc/rpc_retry.h"

namespace trainer {

// An experiment as the oracle knows it.
struct ExperimentInfo {
  int64_t id = 0;            // the oracle's row id
  std::string name;          // the experiment's name
  int64_t label_budget = 0;  // labels it may reveal in total
  bool created = false;      // true if this call created it
};

// Answer to one QueryLabels call.
struct LabelBatch {
  std::vector<int32_t> labels;  // labels[i] is the label of the i-th asked id
  int64_t newly_revealed = 0;   // ids that cost budget in this call
  int64_t remaining = 0;        // budget left after this call
  int64_t audit_sequence = 0;   // the oracle's audit row of this call
};

// An experiment's spending so far.
struct BudgetInfo {
  std::string experiment;        // its name
  int64_t label_budget = 0;      // labels it may reveal in total
  int64_t spent = 0;             // distinct labels revealed
  int64_t remaining = 0;         // label_budget - spent
  int64_t requests_granted = 0;  // QueryLabels calls granted
  int64_t requests_denied = 0;   // QueryLabels calls denied
  int64_t evaluations = 0;       // Evaluate calls scored
  int64_t evaluation_cap = 0;    // Evaluate calls allowed in total
};

// Score of one set of test predictions.
struct Evaluation {
  double accuracy = 0.0;                   // fraction correct, in [0, 1]
  // Index = true class. This and `confusion` are both empty when the oracle
  // withheld them (a class was predicted for fewer test images than its
  // --evaluate_min_predictions_per_class), else both full.
  std::vector<double> per_class_accuracy;
  int num_classes = 0;                     // C
  // C x C counts, row-major, row = true class, column = predicted class.
  std::vector<int64_t> confusion;
  int64_t evaluations_left = 0;  // Evaluate calls still allowed
};

// The label oracle as the trainer sees it. Error codes are the oracle's own
// (RESOURCE_EXHAUSTED when over budget or past the evaluation cap,
// INVALID_ARGUMENT, UNAUTHENTICATED, ...), or UNAVAILABLE / DEADLINE_EXCEEDED
// once an implementation that retries has given up, or CANCELLED when it was
// asked to stop retrying. Implementations are thread-safe.
class OracleClient {
 public:
  virtual ~OracleClient() = default;

  // Creates the experiment or returns the existing one of that name.
  // label_budget 0 means the server's default; `token` is the experiment's
  // secret (empty: none), which later calls must carry (see
  // OracleClientOptions::token).
  virtual absl::StatusOr<ExperimentInfo> CreateExperiment(
      const std::string& name, int64_t label_budget,
      const std::string& token) = 0;

  // Reveals the labels of `ids` (train indices), all or nothing. Ids already
  // revealed to the experiment cost nothing, so repeating a call is free.
  // `client`, `strategy` and `round` go into the oracle's audit row.
  virtual absl::StatusOr<LabelBatch> QueryLabels(
      const std::string& experiment, const std::vector<int64_t>& ids,
      const std::string& client, const std::string& strategy, int round) = 0;

  virtual absl::StatusOr<BudgetInfo> GetBudget(
      const std::string& experiment) = 0;

  // Scores one predicted class per test image, in test order. Counts against
  // the experiment's evaluation cap.
  virtual absl::StatusOr<Evaluation> Evaluate(
      const std::string& experiment, const std::vector<int32_t>& predictions,
      const std::string& client, const std::string& note) = 0;
};

// How to reach the oracle.
struct OracleClientOptions {
  // "host:port" of the oracle.
  std::string target;
  // Sent as metadata "x-oracle-token" on every call; empty: not sent.
  std::string token;
  // Deadline of each attempt of each call.
  absl::Duration call_deadline = absl::Seconds(30);
  // Retries on UNAVAILABLE and DEADLINE_EXCEEDED; every call is repeated,
  // Evaluate included (a retried Evaluate may count twice against the cap if
  // the first attempt reached the oracle).
  RetryPolicy retry;
  // Polled after each failed attempt and while waiting to retry: once true, a
  // retrying call returns CANCELLED instead of trying again (see
  // CallWithRetry). Empty: never. Must be thread-safe and outlive the client.
  std::function<bool()> stop_requested;
  // Largest message sent or received.
  int max_message_bytes = 64 << 20;
  // TLS files (CA, and client certificate for mutual TLS); empty: plaintext.
  common::ClientTlsOptions tls;
};

// Returns a client over a gRPC channel to options.target (TLS if
// options.tls.enabled()), INVALID_ARGUMENT if the options are unusable, or the
// errors of common::MakeChannelCredentials for unusable TLS files. Connects
// lazily: an absent oracle shows up as retries on the first call. Retries are
// logged to stderr.
absl::StatusOr<std::unique_ptr<OracleClient>> MakeGrpcOracleClient(
    const OracleClientOptions& options);

}  // namespace trainer

#endif  // TRAINER_RPC_ORACLE_CLIENT_H_
