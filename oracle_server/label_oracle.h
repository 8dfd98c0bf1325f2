// The label oracle's core: budgets, validation, authentication and
// evaluation over a LabelStore, independent of gRPC. The gRPC service
// (label_oracle_service.h) is a thin adapter over this class.
#ifndef ORACLE_SERVER_LABEL_ORACLE_H_
#define ORACLE_SERVER_LABEL_ORACLE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
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
  // The operator's secret. Set: calls carrying it act as the operator, and
  // only they may create experiments or read experiments whose token they do
  // not hold. Empty: an open server (anyone may create experiments).
  std::string admin_token;
  // Server-wide caps on evaluations over all experiments: per client identity
  // (Caller::peer) and in total. 0: no cap.
  int64_t max_evaluations_per_client = 0;
  int64_t max_evaluations_total = 0;
  // Evaluate returns per-class accuracy and the confusion matrix only when
  // every class is predicted for at least this many test images; otherwise
  // only the accuracy (see EvaluateResponse in proto/oracle.proto). 0: always
  // returns them (tests, trusted setups).
  int64_t evaluate_min_predictions_per_class = 100;
};

// Most ids a denied QueryLabels row keeps of those asked, so that a refused
// or oversized request cannot grow the audit log without bound.
inline constexpr int64_t kMaxDeniedIdsKept = 100;

// Who makes a call, as the transport saw it.
struct Caller {
  Caller() = default;
  // A caller known by its token only. Implicit, so in-process callers and
  // tests can pass the token alone.
  Caller(const char* token) : token(token) {}         // NOLINT
  Caller(std::string token) : token(std::move(token)) {}  // NOLINT
  Caller(std::string token, std::string peer)
      : token(std::move(token)), peer(std::move(peer)) {}

  std::string token;  // the x-oracle-token value: the admin token, an
                      // experiment's token, or "" when none
  std::string peer;   // network address without port ("" when unknown): the
                      // client identity of the per-client evaluation cap
};

// The role a call is made in, recorded in its audit row.
enum class Role {
  kOpen,    // a server without an admin token: every caller
  kAdmin,   // the caller presented the admin token
  kClient,  // anyone else on a server with an admin token
};

// "open", "admin" or "client".
absl::string_view RoleName(Role role);

// Implements the RPCs of oracle.v1.LabelOracle (see proto/oracle.proto for
// the contract and the roles). Each method takes the caller (the token it
// presented and its address) and returns the response or a status with the
// most specific code: INVALID_ARGUMENT (bad request, naming the offending
// value), NOT_FOUND (unknown experiment), UNAUTHENTICATED (no token, or one
// that opens neither the server nor the experiment), PERMISSION_DENIED (a
// non-admin token on an operator-only call), ALREADY_EXISTS (re-creating with
// different settings), RESOURCE_EXHAUSTED (budget or an evaluation cap), or
// the store's error (e.g. UNAVAILABLE), in which case nothing was revealed.
// Every QueryLabels and Evaluate call about an existing experiment appends
// exactly one audit row, which records the caller's role and peer. A denied
// QueryLabels row (invalid or refused) keeps at most the first
// kMaxDeniedIdsKept ids asked; its detail then gives the count.
// Thread-safe: budget checks and reveals are atomic in the store.
//
// QueryLabels and Evaluate also come in an asynchronous form for servers that
// must not park a thread while the store commits: it validates and
// authenticates on the calling thread, hands the write to the store's
// asynchronous form and calls `done` exactly once with what the synchronous
// form would return, either on the calling thread before returning or on a
// thread of the store's once the write is durable. The request and caller are
// not referenced after the call returns. `done` must not block on another
// call to this oracle. The synchronous forms wait for the asynchronous ones.
class LabelOracle {
 public:
  using QueryLabelsDone = absl::AnyInvocable<
      void(absl::StatusOr<oracle::v1::QueryLabelsResponse>) &&>;
  using EvaluateDone =
      absl::AnyInvocable<void(absl::StatusOr<oracle::v1::EvaluateResponse>) &&>;

  // Loads the labels held by `store` (which it owns). INVALID_ARGUMENT if a
  // budget, batch or cap option is not positive or a limit is negative.
  static absl::StatusOr<std::unique_ptr<LabelOracle>> Create(
      const OracleOptions& options, std::unique_ptr<LabelStore> store);

  LabelOracle(const LabelOracle&) = delete;
  LabelOracle& operator=(const LabelOracle&) = delete;

  // Idempotent by name. Joining an existing experiment with a token needs
  // that token (request.token(), or the caller's when that is empty) unless
  // the caller is the operator. With an admin token set, only the operator
  // creates: anyone else gets UNAUTHENTICATED (no token) or
  // PERMISSION_DENIED for a name that does not exist yet.
  absl::StatusOr<oracle::v1::Experiment> CreateExperiment(
      const oracle::v1::CreateExperimentRequest& request, const Caller& caller);

  absl::StatusOr<oracle::v1::QueryLabelsResponse> QueryLabels(
      const oracle::v1::QueryLabelsRequest& request, const Caller& caller);
  void QueryLabelsAsync(const oracle::v1::QueryLabelsRequest& request,
                        const Caller& caller, QueryLabelsDone done);

  absl::StatusOr<oracle::v1::BudgetStatus> GetBudget(
      const oracle::v1::GetBudgetRequest& request, const Caller& caller);

  absl::StatusOr<oracle::v1::EvaluateResponse> Evaluate(
      const oracle::v1::EvaluateRequest& request, const Caller& caller);
  void EvaluateAsync(const oracle::v1::EvaluateRequest& request,
                     const Caller& caller, EvaluateDone done);

  // With an experiment named, the caller must be allowed to read it; with
  // none, only rows of experiments the caller may read are listed (all for
  // the operator). Rows hold no labels.
  absl::StatusOr<oracle::v1::ListQueriesResponse> ListQueries(
      const oracle::v1::ListQueriesRequest& request, const Caller& caller);

  // The role `caller` acts in.
  Role RoleOf(const Caller& caller) const;

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

  // Appends `row` as a DENIED_INVALID row for `denial` (its detail is the
  // denial, followed by "; " and `row.detail` when that is not empty) and
  // calls `done` with `denial`, or with the store's error if the row could
  // not be written.
  void DenyAsync(absl::Status denial, AuditRecord row,
                 absl::AnyInvocable<void(absl::Status) &&> done);

  // OK if a caller in `role` presenting `token` may use `experiment`, else
  // UNAUTHENTICATED.
  absl::Status Authorize(const ExperimentRecord& experiment, Role role,
                         absl::string_view token) const;

  const OracleOptions options_;
  // Hex SHA-256 of options_.admin_token; empty when none.
  const std::string admin_token_sha256_;
  const std::unique_ptr<LabelStore> store_;
  const int64_t train_count_;
  const std::vector<uint8_t> test_labels_;
};

// Converts a stored audit row to its wire form.
oracle::v1::AuditRow ToProto(const AuditRecord& row);

}  // namespace oracle_server

#endif  // ORACLE_SERVER_LABEL_ORACLE_H_
