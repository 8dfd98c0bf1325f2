// The label oracle's core: budgets, validation, authentication and
// evaluation over a LabelStore, independent of gRPC. The gRPC service
// (label_oracle_service.h) is a thin adapter over this class.
#ifndef ORACLE_SERVER_LABEL_ORACLE_H_
#define ORACLE_SERVER_LABEL_ORACLE_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "oracle_server/label_store.h"
#include "proto/oracle.pb.h"

namespace oracle_server {

struct OracleOptions {
  // Label budget of an experiment created with label_budget 0.
  int64_t default_budget = 100;
  // Most ids one QueryLabels call may ask for.
  int64_t max_batch = 10000;
  // Evaluations each new experiment may run.
  int64_t eval_cap = 100;
};

// Implements the RPCs of oracle.v1.LabelOracle (see proto/oracle.proto for
// the contract). Each method takes the token the caller presented ("" when
// none) and returns the response or a status with the most specific code:
// INVALID_ARGUMENT (bad request, naming the offending value), NOT_FOUND
// (unknown experiment), UNAUTHENTICATED (missing or wrong token),
// ALREADY_EXISTS (re-creating with different settings), RESOURCE_EXHAUSTED
// (budget or evaluation cap), or the store's error (e.g. UNAVAILABLE), in
// which case nothing was revealed. Every QueryLabels and Evaluate call about
// an existing experiment appends exactly one audit row. Thread-safe: budget
// checks and reveals are atomic in the store.
class LabelOracle {
 public:
  // Loads the labels held by `store` (which it owns). INVALID_ARGUMENT if an
  // option is not positive.
  static absl::StatusOr<std::unique_ptr<LabelOracle>> Create(
      const OracleOptions& options, std::unique_ptr<LabelStore> store);

  LabelOracle(const LabelOracle&) = delete;
  LabelOracle& operator=(const LabelOracle&) = delete;

  // Idempotent by name. For an existing experiment with a token, the token
  // (request.token(), or `token` when that is empty) must match.
  absl::StatusOr<oracle::v1::Experiment> CreateExperiment(
      const oracle::v1::CreateExperimentRequest& request,
      absl::string_view token);

  absl::StatusOr<oracle::v1::QueryLabelsResponse> QueryLabels(
      const oracle::v1::QueryLabelsRequest& request, absl::string_view token);

  absl::StatusOr<oracle::v1::BudgetStatus> GetBudget(
      const oracle::v1::GetBudgetRequest& request, absl::string_view token);

  absl::StatusOr<oracle::v1::EvaluateResponse> Evaluate(
      const oracle::v1::EvaluateRequest& request, absl::string_view token);

  // With an experiment named, its token is required if it has one; with
  // none, rows of every experiment are listed (rows hold no labels).
  absl::StatusOr<oracle::v1::ListQueriesResponse> ListQueries(
      const oracle::v1::ListQueriesRequest& request, absl::string_view token);

  // The store, still owned by the oracle.
  LabelStore& store() { return *store_; }

  // Number of train labels (ids are in [0, train_count())) and of test
  // labels (predictions per evaluation).
  int64_t train_count() const { return train_count_; }
  int64_t test_count() const {
    return static_cast<int64_t>(test_labels_.size());
  }

 private:
  LabelOracle(const OracleOptions& options, std::unique_ptr<LabelStore> store,
              int64_t train_count, std::vector<uint8_t> test_labels);

  // Appends a DENIED_INVALID row of `kind` for `denial` and returns
  // `denial`, or the store's error if the row could not be written.
  absl::Status Deny(const absl::Status& denial, AuditRecord row);

  const OracleOptions options_;
  const std::unique_ptr<LabelStore> store_;
  const int64_t train_count_;
  const std::vector<uint8_t> test_labels_;
};

// Converts a stored audit row to its wire form.
oracle::v1::AuditRow ToProto(const AuditRecord& row);

}  // namespace oracle_server

#endif  // ORACLE_SERVER_LABEL_ORACLE_H_
