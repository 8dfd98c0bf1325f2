// LabelStore on SQLite: one database file in WAL mode with synchronous=FULL,
// so every write is on disk before the call that made it returns. Concurrent
// writes are group-committed: one transaction and one fsync for all of them.
#ifndef ORACLE_SERVER_SQLITE_LABEL_STORE_H_
#define ORACLE_SERVER_SQLITE_LABEL_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "oracle_server/label_store.h"
#include "oracle_server/store_ledger.h"

struct sqlite3;
struct sqlite3_stmt;

namespace oracle_server {

struct StoreOptions {
  // Database file; ":memory:" for a private in-memory database.
  std::string db_path = "oracle.db";
  // IDX label files imported into a new database and, for an existing one,
  // checked against the labels it holds. Empty: no check (existing database
  // only).
  std::string train_labels_path =
      "/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz";
  std::string test_labels_path =
      "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz";
  // Number of labels each file must hold.
  int64_t train_count = 60000;
  int64_t test_count = 10000;
  // Open without writing: no import, no label file check, every write fails
  // with FAILED_PRECONDITION. The database must exist.
  bool read_only = false;
  // How long a write waits for another connection's lock before failing
  // with UNAVAILABLE.
  int busy_timeout_ms = 5000;
  // Most Reveal / RecordEvaluation / AppendAudit calls committed together in
  // one transaction (group commit); must be positive.
  int max_group_size = 256;
  // Tests only: called inside every write transaction just before COMMIT; a
  // non-OK status rolls the transaction back and is returned (to every call
  // of the group).
  std::function<absl::Status()> before_commit;
};

// Writes are group-committed by a StoreLedger (store_ledger.h): calls that
// arrive while a commit is in flight are decided in arrival order and
// committed together in one transaction; a failed commit fails every call of
// its group and changes nothing.
//
// Experiments, spent counts, revealed ids and audit counters are kept in
// memory, loaded at Open and updated after each successful commit; so only
// one SqliteLabelStore may write a database at a time (a read-only store sees
// experiments and usage as of its Open, audit and revealed rows live).
// Another writer is detected at the next write, which then reloads.
class SqliteLabelStore final : public LedgerLabelStore, private LedgerBackend {
 public:
  // Opens (creating if needed) the database of `options`. A new database
  // imports both label files in one transaction; an existing one is checked
  // against them. Returns NOT_FOUND / DATA_LOSS / INVALID_ARGUMENT /
  // FAILED_PRECONDITION from reading the IDX files (wrong magic, wrong
  // count, a label outside [0, 10)), FAILED_PRECONDITION if the database
  // holds labels whose content hash differs from the files' or (whether or
  // not files are given, read-only too) from the hash it recorded at import,
  // NOT_FOUND for a database file that cannot be opened (missing when opened
  // read-only, or its folder missing), else as SqliteErrorStatus. A database of an older
  // schema (version 1: audit rows without role and peer) is migrated in
  // place when opened for writing and read as it is when opened read-only.
  static absl::StatusOr<std::unique_ptr<SqliteLabelStore>> Open(
      const StoreOptions& options);

  ~SqliteLabelStore() override;

  SqliteLabelStore(const SqliteLabelStore&) = delete;
  SqliteLabelStore& operator=(const SqliteLabelStore&) = delete;

  absl::StatusOr<DatasetInfo> GetDatasetInfo() override;
  absl::StatusOr<std::vector<uint8_t>> LoadLabels(Split split) override;
  absl::StatusOr<ExperimentRecord> CreateExperiment(
      const ExperimentRecord& experiment, bool* created) override;
  absl::StatusOr<ExperimentRecord> GetExperiment(
      absl::string_view name) override;
  absl::StatusOr<std::vector<ExperimentRecord>> ListExperiments() override;
  absl::StatusOr<ExperimentUsage> GetUsage(absl::string_view name) override;
  absl::StatusOr<std::vector<AuditRecord>> ListAudit(
      absl::string_view experiment, int64_t after_sequence,
      int64_t limit) override;
  absl::StatusOr<std::pair<int64_t, std::string>> GetAuditHead() override;
  absl::StatusOr<std::vector<RevealedRecord>> ListRevealed() override;

 private:
  class Transaction;

  SqliteLabelStore(const StoreOptions& options, sqlite3* db);

  absl::Status Initialize() ABSL_EXCLUSIVE_LOCKS_REQUIRED(db_mu_);
  // Switches to WAL; returns the journal mode now in effect.
  absl::StatusOr<std::string> JournalModeWalLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(db_mu_);
  absl::StatusOr<std::string> ReadSchemaVersionLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(db_mu_);
  // Creates missing tables and metadata; inside a transaction.
  absl::Status CreateSchemaLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(db_mu_);
  // Imports `labels` of `split` described by `file` into an empty database,
  // or checks `file` against what an existing one holds (no check when
  // `file` is null); inside a transaction.
  absl::Status ImportOrCheckLocked(Split split, const DatasetSplitInfo* file,
                                   const std::vector<uint8_t>& labels)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(db_mu_);
  // The labels of `split` as stored, indexed by sample id.
  // FAILED_PRECONDITION if the database records no such labels, or if their
  // content hash is not the one recorded when they were imported.
  absl::StatusOr<std::vector<uint8_t>> ReadLabelsLocked(Split split)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(db_mu_);
  // Runs `body` in a BEGIN IMMEDIATE transaction; commits if it and
  // options_.before_commit succeed, else rolls back.
  absl::Status InTransactionLocked(const std::function<absl::Status()>& body)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(db_mu_);
  // LedgerLabelStore's view of this store.
  StoreLedger& ledger() override { return *ledger_; }
  const std::vector<uint8_t>& train_labels() const override {
    return train_labels_;
  }
  absl::Status CheckWritable() const override;
  // The statement for `sql` (a string with static storage duration),
  // prepared on first use and kept until the store is destroyed; callers
  // reset it after use.
  absl::StatusOr<sqlite3_stmt*> CachedStatement(const char* sql)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(db_mu_);
  absl::StatusOr<std::pair<int64_t, std::string>> GetAuditHeadLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(db_mu_);
  // What the ledger is built from, as the database holds it.
  absl::StatusOr<LedgerSnapshot> LoadSnapshotLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(db_mu_);
  // Inserts the rows of `write` and the new audit head; inside the group's
  // transaction.
  absl::Status WriteGroupLocked(const GroupWrite& write)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(db_mu_);

  // LedgerBackend: a BEGIN IMMEDIATE transaction under db_mu_.
  absl::Status InWriteTransaction(
      absl::FunctionRef<absl::Status(LedgerTransaction&)> body) override
      ABSL_LOCKS_EXCLUDED(db_mu_);

  const StoreOptions options_;
  // Held by the writer committing a group (or CreateExperiment) and by
  // readers of the connection.
  absl::Mutex db_mu_;
  sqlite3* const db_ ABSL_PT_GUARDED_BY(db_mu_);
  // Prepared statements by the address of their SQL text (which must have
  // static storage duration).
  std::unordered_map<const char*, sqlite3_stmt*> statements_
      ABSL_GUARDED_BY(db_mu_);

  // Decides and group-commits the writes; built at Open once the number of
  // train labels is known. Lock order: db_mu_ before the ledger's lock.
  std::unique_ptr<StoreLedger> ledger_;

  // Opened read-only on a version 1 database (no audit.role, audit.peer).
  bool schema_v1_ = false;

  // Labels by sample id, loaded once at Open and never changed.
  std::vector<uint8_t> train_labels_;
  std::vector<uint8_t> test_labels_;
};

// The status for SQLite result code `rc` (primary or extended) with
// `message`, as the LabelStore contract wants store failures: UNAVAILABLE
// for conditions that may pass and are worth a retry (busy or locked
// database, I/O error, disk full, out of memory, a database that became
// read-only or cannot be opened), DATA_LOSS for a corrupt file or one that
// is not a database, INTERNAL otherwise. Never RESOURCE_EXHAUSTED, which
// callers take as "over budget".
absl::Status SqliteErrorStatus(int rc, absl::string_view message);

}  // namespace oracle_server

#endif  // ORACLE_SERVER_SQLITE_LABEL_STORE_H_
