// Durable storage behind the label oracle: the hidden labels, experiments,
// which train labels each experiment has seen, and the hash-chained audit log.
#ifndef ORACLE_SERVER_LABEL_STORE_H_
#define ORACLE_SERVER_LABEL_STORE_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace oracle_server {

enum class Split { kTrain, kTest };

// "train" or "test".
absl::string_view SplitName(Split split);

// What an audit row records. The names (OutcomeName) are what the database
// stores and what the hash chain covers; they match oracle.v1.Outcome.
enum class Outcome {
  kGranted,
  kDeniedBudget,
  kDeniedInvalid,
  kEvaluated,
  kDeniedEvaluationCap,
};

// "GRANTED", "DENIED_BUDGET", "DENIED_INVALID", "EVALUATED",
// "DENIED_EVALUATION_CAP".
absl::string_view OutcomeName(Outcome outcome);

// Inverse of OutcomeName; INVALID_ARGUMENT for any other string.
absl::StatusOr<Outcome> ParseOutcome(absl::string_view name);

// Audit row kinds.
inline constexpr char kKindQuery[] = "query";
inline constexpr char kKindEvaluate[] = "evaluate";

// One label file as imported: where it came from and what it held.
struct DatasetSplitInfo {
  std::string source_path;     // path the labels were imported from
  std::string content_sha256;  // hex SHA-256 of the decoded label bytes
  int64_t count = 0;           // number of labels
};

struct DatasetInfo {
  DatasetSplitInfo train;
  DatasetSplitInfo test;
};

struct ExperimentRecord {
  int64_t id = 0;                   // assigned by the store, > 0
  std::string name;                 // unique
  int64_t label_budget = 0;         // distinct train labels it may see
  std::string token_sha256;         // hex SHA-256 of the token; empty: none
  int64_t created_unix_micros = 0;  // creation time
  int64_t evaluation_cap = 0;       // evaluations allowed
};

// One row of the audit log. `sequence`, `prev_hash` and `hash` are assigned
// by the store when the row is appended.
struct AuditRecord {
  int64_t sequence = 0;               // 1, 2, 3, ... with no gaps
  int64_t time_unix_micros = 0;       // when the call was decided
  std::string experiment;             // experiment name
  std::string client;                 // who asked (free text from the caller)
  std::string strategy;               // selection strategy (free text)
  int32_t round = 0;                  // active-learning round
  std::string kind;                   // kKindQuery or kKindEvaluate
  std::vector<int64_t> ids_asked;     // train ids in the request, as sent
  std::vector<int64_t> ids_revealed;  // ids newly revealed by this row
  Outcome outcome = Outcome::kDeniedInvalid;
  std::string detail;     // denial reason or evaluation summary
  std::string prev_hash;  // hash of the previous row (genesis: 0s)
  std::string hash;       // SHA256(prev_hash + canonical row)
  std::string role;       // caller's role ("admin", "client", "open"); old
                          // rows: empty
  std::string peer;       // caller's address without port; old rows: empty
};

// One row of the revealed table: `sample_id` was revealed to the experiment
// by audit row `audit_sequence`.
struct RevealedRecord {
  int64_t experiment_id = 0;
  int64_t sample_id = 0;
  int64_t audit_sequence = 0;
};

// Counters for one experiment, derived from the revealed and audit tables.
struct ExperimentUsage {
  int64_t spent = 0;             // distinct train labels revealed
  int64_t requests_granted = 0;  // query rows GRANTED
  int64_t requests_denied = 0;   // query rows DENIED_*
  int64_t evaluations = 0;       // evaluate rows EVALUATED
};

// A request to reveal train labels, decided atomically by the store.
struct RevealRequest {
  std::string experiment;        // experiment name (must exist)
  std::vector<int64_t> ids;      // valid, distinct train ids (not checked)
  std::string client;            // copied into the audit row
  std::string strategy;          // copied into the audit row
  int32_t round = 0;             // copied into the audit row
  int64_t time_unix_micros = 0;  // copied into the audit row
  std::string role;              // copied into the audit row
  std::string peer;              // copied into the audit row
};

struct RevealResult {
  bool granted = false;                 // false: over budget, nothing revealed
  int64_t requested_new = 0;            // asked ids not revealed before
  std::vector<int64_t> newly_revealed;  // ids that cost budget (if granted)
  std::vector<int> labels;              // labels[i] of ids[i] (if granted)
  int64_t spent = 0;                    // distinct labels revealed after
  int64_t remaining = 0;                // budget left after
  int64_t audit_sequence = 0;           // the row this call appended
};

// A request to count one evaluation against an experiment's cap.
struct EvaluationRequest {
  std::string experiment;        // experiment name (must exist)
  std::string client;            // copied into the audit row
  std::string detail;            // audit detail if the evaluation is allowed
  int64_t time_unix_micros = 0;  // copied into the audit row
  std::string role;              // copied into the audit row
  std::string peer;              // copied into the audit row; the identity
                                 // counted against max_per_peer
  // Server-wide caps on EVALUATED rows, over all experiments: in total, and
  // with this row's `peer`. 0: no cap.
  int64_t max_total = 0;
  int64_t max_per_peer = 0;
};

struct EvaluationResult {
  bool allowed = false;        // false: a cap was already reached
  int64_t evaluations = 0;     // evaluations counted after this call
  int64_t evaluation_cap = 0;  // the experiment's cap
  int64_t audit_sequence = 0;  // the row this call appended
  std::string denial;          // if not allowed: which cap (the audit detail)
};

// Storage for the oracle. Implementations are thread-safe. Every method that
// writes is atomic and durable when it returns OK: either all of its rows are
// committed or none is. Storage failures are UNAVAILABLE (transient, e.g. the
// database is locked) or INTERNAL / DATA_LOSS.
class LabelStore {
 public:
  virtual ~LabelStore() = default;

  // Where the labels came from and their content hashes.
  virtual absl::StatusOr<DatasetInfo> GetDatasetInfo() = 0;

  // All labels of `split`, indexed by sample id.
  virtual absl::StatusOr<std::vector<uint8_t>> LoadLabels(Split split) = 0;

  // Inserts `experiment` (its id and created time are ignored) unless an
  // experiment of that name exists. Returns the stored experiment and sets
  // `*created` to whether this call inserted it.
  virtual absl::StatusOr<ExperimentRecord> CreateExperiment(
      const ExperimentRecord& experiment, bool* created) = 0;

  // NOT_FOUND if there is no experiment named `name`.
  virtual absl::StatusOr<ExperimentRecord> GetExperiment(
      absl::string_view name) = 0;

  // All experiments in id order.
  virtual absl::StatusOr<std::vector<ExperimentRecord>> ListExperiments() = 0;

  // NOT_FOUND if there is no experiment named `name`.
  virtual absl::StatusOr<ExperimentUsage> GetUsage(absl::string_view name) = 0;

  // In one transaction: counts the ids of `request` not yet revealed to the
  // experiment; if they fit in what is left of its budget, records them as
  // revealed and appends a GRANTED audit row, else appends a DENIED_BUDGET
  // row and reveals nothing. NOT_FOUND for an unknown experiment.
  virtual absl::StatusOr<RevealResult> Reveal(const RevealRequest& request) = 0;

  // In one transaction: if the experiment has fewer EVALUATED rows than its
  // cap, and the whole log fewer than request.max_total and fewer with
  // request.peer than request.max_per_peer (where those are set), appends an
  // EVALUATED row with `request.detail`, else a DENIED_EVALUATION_CAP row.
  // NOT_FOUND for an unknown experiment.
  virtual absl::StatusOr<EvaluationResult> RecordEvaluation(
      const EvaluationRequest& request) = 0;

  // Appends `row` (sequence and hashes are assigned) and returns its
  // sequence. For rows that reveal nothing: `row.ids_revealed` must be empty
  // and the outcome must not be GRANTED (else INVALID_ARGUMENT).
  virtual absl::StatusOr<int64_t> AppendAudit(const AuditRecord& row) = 0;

  // Asynchronous forms of the three writes, for servers that must not park a
  // thread per call while a commit is in flight. Each decides exactly as its
  // synchronous form and calls `done` once with the same result, after the
  // write is durable (or has failed). `done` may run on the calling thread
  // before the call returns or on a thread of the store's; it must not call
  // back into the store's writes synchronously. The request is copied.
  // These defaults run the synchronous form on the calling thread; a store
  // with group commit overrides them so the caller never waits for a commit.
  using RevealDone = absl::AnyInvocable<void(absl::StatusOr<RevealResult>) &&>;
  using EvaluationDone =
      absl::AnyInvocable<void(absl::StatusOr<EvaluationResult>) &&>;
  using AuditDone = absl::AnyInvocable<void(absl::StatusOr<int64_t>) &&>;
  virtual void RevealAsync(const RevealRequest& request, RevealDone done);
  virtual void RecordEvaluationAsync(const EvaluationRequest& request,
                                     EvaluationDone done);
  virtual void AppendAuditAsync(const AuditRecord& row, AuditDone done);

  // Up to `limit` audit rows with sequence > `after_sequence`, in sequence
  // order; only rows of `experiment` unless it is empty.
  virtual absl::StatusOr<std::vector<AuditRecord>> ListAudit(
      absl::string_view experiment, int64_t after_sequence, int64_t limit) = 0;

  // Sequence and hash of the newest audit row as recorded by the store's
  // own bookkeeping (sequence 0 and 64 zeros when the log is empty).
  virtual absl::StatusOr<std::pair<int64_t, std::string>> GetAuditHead() = 0;

  // Every revealed row, ordered by experiment id and sample id.
  virtual absl::StatusOr<std::vector<RevealedRecord>> ListRevealed() = 0;
};

}  // namespace oracle_server

#endif  // ORACLE_SERVER_LABEL_STORE_H_
