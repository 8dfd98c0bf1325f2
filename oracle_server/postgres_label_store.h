// LabelStore on PostgreSQL (libpq). The same tables as the SQLite store and
// the same audit hash chain, so VerifyAuditLog and `oraclectl verify` work
// unchanged. Several oracle processes may share one database: every write
// transaction first locks the audit head row (SELECT ... FOR UPDATE), and a
// process whose ledger is behind what that row says reloads it inside the
// transaction before deciding, so no budget is ever overspent together.
#ifndef ORACLE_SERVER_POSTGRES_LABEL_STORE_H_
#define ORACLE_SERVER_POSTGRES_LABEL_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
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

typedef struct pg_conn PGconn;

namespace oracle_server {

struct PostgresStoreOptions {
  // libpq connection string ("host=/run/postgresql dbname=oracle", or a
  // postgresql:// URI). The database must exist; the store creates its
  // tables in it.
  std::string conninfo;
  // IDX label files, imported into a new database and checked against an
  // existing one, as for the SQLite store. Empty: no check (existing
  // database only). Ignored when labels_table is set.
  std::string train_labels_path =
      "/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz";
  std::string test_labels_path =
      "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz";
  int64_t train_count = 60000;
  int64_t test_count = 10000;
  // Instead of IDX files: existing tables (optionally schema-qualified,
  // "schema.table") with columns id (0, 1, ... without gaps) and label
  // (0..9). Both or neither. The labels stay in these tables; the store
  // records their content hash at the first open and refuses to open when
  // it changed (at every open, also one without these options, which reads
  // the recorded tables).
  std::string labels_table;
  std::string test_labels_table;
  // Open without writing: no import, every write fails with
  // FAILED_PRECONDITION. The schema must exist.
  bool read_only = false;
  // Most writes committed together in one transaction; must be positive.
  int max_group_size = 256;
  // Tests only: called inside every write transaction just before COMMIT; a
  // non-OK status rolls the transaction back and is returned (to every call
  // of the group).
  std::function<absl::Status()> before_commit;
};

// Thread-safe. Writes are group-committed by a StoreLedger on one
// connection; reads (experiments, usage, audit, revealed) go to the database
// on a second connection, so they see what every process committed.
// Storage errors as PostgresErrorStatus says.
class PostgresLabelStore final : public LedgerLabelStore, private LedgerBackend {
 public:
  // Connects, creates the schema if missing (serialised with other processes
  // by an advisory lock), imports or checks the labels and loads the ledger.
  // UNAVAILABLE if the server cannot be reached; FAILED_PRECONDITION for a
  // database that holds other labels or is not an oracle database (read
  // only), or whose labels (in `labels` or the recorded labels tables, with
  // or without the table options, read-only too) no longer have the content
  // hash recorded at import; the IDX reader's errors as for
  // SqliteLabelStore; INVALID_ARGUMENT for a labels table with gaps or bad
  // labels.
  static absl::StatusOr<std::unique_ptr<PostgresLabelStore>> Open(
      const PostgresStoreOptions& options);

  ~PostgresLabelStore() override;

  PostgresLabelStore(const PostgresLabelStore&) = delete;
  PostgresLabelStore& operator=(const PostgresLabelStore&) = delete;

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

  PostgresLabelStore(const PostgresStoreOptions& options, PGconn* write_conn,
                     PGconn* read_conn);

  absl::Status Initialize() ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  // LedgerLabelStore's view of this store.
  StoreLedger& ledger() override { return *ledger_; }
  const std::vector<uint8_t>& train_labels() const override {
    return train_labels_;
  }
  absl::Status CheckWritable() const override;
  // Runs `body` between BEGIN and COMMIT on the write connection; rolls
  // back on any error (including options_.before_commit's when
  // `with_hook`).
  absl::Status InTransactionLocked(const std::function<absl::Status()>& body,
                                   bool with_hook)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  // Locks the metadata rows every writer locks, and returns the stamp.
  absl::StatusOr<LedgerStamp> LockStampLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  absl::StatusOr<LedgerSnapshot> LoadSnapshotLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  absl::Status WriteGroupLocked(const GroupWrite& write)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);

  // LedgerBackend: a transaction on the write connection under write_mu_.
  absl::Status InWriteTransaction(
      absl::FunctionRef<absl::Status(LedgerTransaction&)> body) override
      ABSL_LOCKS_EXCLUDED(write_mu_);

  const PostgresStoreOptions options_;
  absl::Mutex write_mu_;
  PGconn* const write_conn_ ABSL_PT_GUARDED_BY(write_mu_);
  absl::Mutex read_mu_;
  PGconn* const read_conn_ ABSL_PT_GUARDED_BY(read_mu_);

  std::unique_ptr<StoreLedger> ledger_;

  // Labels by sample id, loaded once at Open and never changed.
  std::vector<uint8_t> train_labels_;
  std::vector<uint8_t> test_labels_;
};

// The status for a failed statement with SQLSTATE `sqlstate` ("" when the
// connection is lost or the server sent none) and `message`, as the
// LabelStore contract wants store failures: UNAVAILABLE for conditions that
// may pass and are worth a retry (no state, classes 08 connection, 40
// serialization or deadlock, 53 insufficient resources such as a full disk
// or no memory, 57 shutdown or cancel, 55P03 lock not available, 25006 a
// read-only transaction as on a standby), DATA_LOSS for XX001 and XX002
// (corrupt data or index), INTERNAL otherwise. Never RESOURCE_EXHAUSTED,
// which callers take as "over budget".
absl::Status PostgresErrorStatus(absl::string_view sqlstate,
                                 absl::string_view message);

}  // namespace oracle_server

#endif  // ORACLE_SERVER_POSTGRES_LABEL_STORE_H_
