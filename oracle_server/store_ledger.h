// The backend-neutral half of a LabelStore: the in-memory ledger of
// experiments, spent budgets, revealed ids and audit counters; the rules that
// decide each Reveal, RecordEvaluation and AppendAudit; and group commit
// (writes queued while a commit is in flight are decided in arrival order and
// committed in one transaction). A database backend supplies only the write
// transaction: read the current stamp under its write lock, load the rows
// the ledger is built from, write a decided group's rows, commit.
#ifndef ORACLE_SERVER_STORE_LEDGER_H_
#define ORACLE_SERVER_STORE_LEDGER_H_

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "oracle_server/label_store.h"

namespace oracle_server {

// What identifies the committed state a ledger was built from: the audit
// head, and a counter a backend bumps whenever experiments change behind the
// audit log's back (0 where the backend has none). A write transaction whose
// stamp differs from the ledger's reloads the ledger before deciding.
struct LedgerStamp {
  int64_t head_sequence = 0;
  std::string head_hash;
  int64_t experiments_version = 0;

  bool operator==(const LedgerStamp& other) const {
    return head_sequence == other.head_sequence &&
           head_hash == other.head_hash &&
           experiments_version == other.experiments_version;
  }
  bool operator!=(const LedgerStamp& other) const { return !(*this == other); }
};

// The rows a ledger is built from, as a backend loads them.
struct LedgerSnapshot {
  // Audit rows of one (experiment, kind, outcome, peer), counted.
  struct AuditCount {
    std::string experiment;
    std::string kind;
    std::string outcome;  // OutcomeName
    std::string peer;
    int64_t count = 0;
  };

  LedgerStamp stamp;
  std::vector<ExperimentRecord> experiments;
  // (experiment id, sample id) of every revealed row. Rows naming an unknown
  // experiment are ignored; ids out of range count as spent but are not
  // marked (VerifyAuditLog reports both).
  std::vector<std::pair<int64_t, int64_t>> revealed;
  std::vector<AuditCount> audit_counts;
};

// What a decided group writes: audit rows in sequence order with prev_hash
// and hash set, and the revealed rows of its granted reveals. The backend
// also records rows.back() as the new audit head.
struct GroupWrite {
  std::vector<AuditRecord> rows;
  std::vector<RevealedRecord> revealed;
};

// One write transaction of a backend, open and holding the lock that
// serialises writers (of this process and of any other on the database).
class LedgerTransaction {
 public:
  virtual ~LedgerTransaction() = default;
  // The stamp as committed now.
  virtual absl::StatusOr<LedgerStamp> ReadStamp() = 0;
  // Everything the ledger is built from, as committed now.
  virtual absl::StatusOr<LedgerSnapshot> LoadSnapshot() = 0;
  // Inserts the rows of `write` (never empty) and moves the audit head to
  // its last row.
  virtual absl::Status WriteGroup(const GroupWrite& write) = 0;
};

class LedgerBackend {
 public:
  virtual ~LedgerBackend() = default;
  // Begins a write transaction, runs `body` in it, and commits if `body`
  // returns OK (durably, before returning), else rolls back. Returns the
  // first error: body's, or the commit's (everything is rolled back then).
  virtual absl::Status InWriteTransaction(
      absl::FunctionRef<absl::Status(LedgerTransaction&)> body) = 0;
};

struct LedgerOptions {
  // Train labels: ids are in [0, train_count).
  int64_t train_count = 0;
  // Most writes committed together in one transaction; must be positive.
  int max_group_size = 256;
};

// INVALID_ARGUMENT naming the first id of `ids` outside [0, train_count).
absl::Status CheckTrainIds(const std::vector<int64_t>& ids,
                           int64_t train_count);

// Sets result->labels to the labels of `ids` if the reveal was granted.
void AddRevealedLabels(const std::vector<uint8_t>& train_labels,
                       const std::vector<int64_t>& ids, RevealResult* result);

// Checks that `row` reveals nothing (AppendAudit's precondition);
// INVALID_ARGUMENT otherwise.
absl::Status CheckAuditRowRevealsNothing(const AuditRecord& row);

// Thread-safe. Writes are queued; a committer thread owned by the ledger
// takes everything queued (up to max_group_size writes) as one group,
// decides each write in arrival order against the state left by the writes
// before it, commits the group in one transaction, and then (outside the
// ledger's lock) completes each write: its `done` runs on the committer
// thread, or the synchronous caller returns. A failed commit fails every
// write of its group and changes nothing. Destruction waits for every queued
// write to be committed (or to fail) and completed.
class StoreLedger {
 public:
  // `backend` must outlive the ledger. The ledger starts empty (stamp of an
  // empty log); call Reset with the backend's snapshot before writing.
  StoreLedger(const LedgerOptions& options, LedgerBackend* backend);
  ~StoreLedger();

  StoreLedger(const StoreLedger&) = delete;
  StoreLedger& operator=(const StoreLedger&) = delete;

  // Replaces the state with `snapshot`. No write may be in flight: not even
  // one whose transaction has committed but that the ledger has not yet
  // taken in, which a backend's write lock does not cover; so only for the
  // initial state. To reload later, use ReloadAtNextWrite.
  void Reset(const LedgerSnapshot& snapshot);

  // Makes the next group reload the state from its own transaction's
  // snapshot before deciding, as when another connection wrote. Safe at any
  // time, also while a group is being committed.
  void ReloadAtNextWrite();

  // Adds a newly inserted experiment (nothing revealed, no audit rows); one
  // the ledger knows already is left as it is. Safe at any time.
  void AddExperiment(const ExperimentRecord& experiment);

  // For a backend with an experiments version: adds `experiment`, inserted
  // by a transaction that found the stamp `seen` and left it `after`, if the
  // ledger's stamp is `seen` (nobody else wrote in between); otherwise leaves
  // the ledger to reload at its next write. No write may be in flight.
  void AddExperimentIfAt(const ExperimentRecord& experiment,
                         const LedgerStamp& seen, const LedgerStamp& after);

  // The experiment named `name`, if the ledger knows it.
  std::optional<ExperimentRecord> FindExperiment(absl::string_view name);
  // All experiments in id order.
  std::vector<ExperimentRecord> Experiments();
  // NOT_FOUND for an experiment the ledger does not know.
  absl::StatusOr<ExperimentUsage> Usage(absl::string_view name);
  // The stamp of the committed state the ledger holds.
  LedgerStamp Stamp();

  // The writes, as LabelStore describes them. Reveal does not check ids
  // against train_count and leaves RevealResult::labels empty (the store
  // has the labels); AppendAudit does not check the row. The synchronous
  // forms wait for the commit; the asynchronous ones return at once and call
  // `done` exactly once on the committer thread, after the group's commit
  // (`done` must not wait for another write of this ledger).
  absl::StatusOr<RevealResult> Reveal(const RevealRequest& request);
  absl::StatusOr<EvaluationResult> RecordEvaluation(
      const EvaluationRequest& request);
  absl::StatusOr<int64_t> AppendAudit(const AuditRecord& row);
  void RevealAsync(const RevealRequest& request, LabelStore::RevealDone done);
  void RecordEvaluationAsync(const EvaluationRequest& request,
                             LabelStore::EvaluationDone done);
  void AppendAuditAsync(const AuditRecord& row, LabelStore::AuditDone done);

  // Tests only: waits up to `timeout` until at least `n` writes are queued
  // behind the one being committed; returns whether they are.
  bool AwaitQueuedWritesForTesting(int n, absl::Duration timeout);

 private:
  struct Write;
  struct ExperimentState;
  struct AuditCounters;
  struct GroupPlan;

  void ResetLocked(const LedgerSnapshot& snapshot)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues `write` for the committer thread.
  void SubmitWrite(std::unique_ptr<Write> write) ABSL_LOCKS_EXCLUDED(mu_);
  // The committer thread: commits queued groups until stopping_ is set and
  // the queue is empty.
  void CommitLoop() ABSL_LOCKS_EXCLUDED(mu_);
  // Decides and commits `group` in one transaction; the status of a failed
  // transaction (every write of the group fails with it).
  absl::Status CommitGroup(const std::vector<Write*>& group)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Decides every write of `group` in order against the committed state and
  // the earlier writes of the group; fills `plan` (rows not yet hashed).
  void PlanGroupLocked(const std::vector<Write*>& group, GroupPlan* plan)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Makes the decisions of a committed `plan` part of the state, or (when
  // `committed` is false) forgets them.
  void FinishGroupLocked(const GroupPlan& plan, bool committed)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const LedgerOptions options_;
  LedgerBackend* const backend_;

  absl::Mutex mu_;
  // Writes waiting to be committed, the group in flight first.
  std::deque<std::unique_ptr<Write>> writers_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Committed state. Experiments by name (std::map: pointers stay valid).
  std::map<std::string, ExperimentState> experiments_ ABSL_GUARDED_BY(mu_);
  // Audit row counts by experiment name (also for names of no experiment).
  std::map<std::string, AuditCounters> counters_ ABSL_GUARDED_BY(mu_);
  // EVALUATED audit rows by peer, and in total (for the server-wide caps).
  std::map<std::string, int64_t> evaluations_by_peer_ ABSL_GUARDED_BY(mu_);
  int64_t evaluations_total_ ABSL_GUARDED_BY(mu_) = 0;
  LedgerStamp stamp_ ABSL_GUARDED_BY(mu_);
  // Set by ReloadAtNextWrite, cleared by every reload.
  bool reload_requested_ ABSL_GUARDED_BY(mu_) = false;

  std::thread committer_;  // last: started once everything else exists
};

// The writes of a LabelStore whose state lives in a StoreLedger, shared by
// the database stores: each checks that the store is writable (and the ids
// or the audit row), hands the write to the ledger, and adds the revealed
// labels to a granted reveal. A store supplies the ledger, its train labels
// and whether it may write.
class LedgerLabelStore : public LabelStore {
 public:
  absl::StatusOr<RevealResult> Reveal(const RevealRequest& request) final;
  absl::StatusOr<EvaluationResult> RecordEvaluation(
      const EvaluationRequest& request) final;
  absl::StatusOr<int64_t> AppendAudit(const AuditRecord& row) final;
  void RevealAsync(const RevealRequest& request, RevealDone done) final;
  void RecordEvaluationAsync(const EvaluationRequest& request,
                             EvaluationDone done) final;
  void AppendAuditAsync(const AuditRecord& row, AuditDone done) final;

  // Tests only: waits up to `timeout` until at least `n` writes are queued
  // behind the one being committed; returns whether they are.
  bool AwaitQueuedWritesForTesting(int n, absl::Duration timeout);

 protected:
  // The store's ledger; valid while the store is.
  virtual StoreLedger& ledger() = 0;
  // Train labels by sample id, never changed after the store opened.
  virtual const std::vector<uint8_t>& train_labels() const = 0;
  // FAILED_PRECONDITION when the store is open read-only.
  virtual absl::Status CheckWritable() const = 0;
};

}  // namespace oracle_server

#endif  // ORACLE_SERVER_STORE_LEDGER_H_
