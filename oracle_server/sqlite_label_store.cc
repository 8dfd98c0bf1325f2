#include "oracle_server/sqlite_label_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <limits>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/status_macros.h"
#include "oracle_server/audit_chain.h"
#include "oracle_server/label_import.h"

namespace oracle_server {
namespace {

// Version 2 added audit.role and audit.peer; a version 1 database is migrated
// in place when opened for writing, and read as is (empty role and peer) when
// opened read-only.
constexpr char kSchemaVersion[] = "2";
constexpr char kSchemaVersion1[] = "1";

constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS metadata (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS datasets (
  split TEXT PRIMARY KEY CHECK (split IN ('train', 'test')),
  source_path TEXT NOT NULL,
  content_sha256 TEXT NOT NULL,
  count INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS labels (
  split TEXT NOT NULL CHECK (split IN ('train', 'test')),
  id INTEGER NOT NULL,
  label INTEGER NOT NULL CHECK (label >= 0 AND label < 10),
  PRIMARY KEY (split, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS experiments (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  label_budget INTEGER NOT NULL,
  token_sha256 TEXT NOT NULL,
  created_unix_micros INTEGER NOT NULL,
  evaluation_cap INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS revealed (
  experiment_id INTEGER NOT NULL REFERENCES experiments (id),
  sample_id INTEGER NOT NULL,
  audit_seq INTEGER NOT NULL,
  PRIMARY KEY (experiment_id, sample_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit (
  seq INTEGER PRIMARY KEY,
  time_us INTEGER NOT NULL,
  experiment TEXT NOT NULL,
  client TEXT NOT NULL,
  strategy TEXT NOT NULL,
  round INTEGER NOT NULL,
  kind TEXT NOT NULL,
  ids_asked TEXT NOT NULL,
  ids_revealed TEXT NOT NULL,
  outcome TEXT NOT NULL,
  detail TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL,
  role TEXT NOT NULL DEFAULT '',
  peer TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS audit_by_experiment ON audit (experiment, seq);
)sql";

// SqliteErrorStatus of `rc`, with the connection's message when there is
// one.
absl::Status SqliteError(sqlite3* db, int rc, absl::string_view what) {
  return SqliteErrorStatus(
      rc, absl::StrCat(what, ": ",
                       db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc)));
}

// A prepared statement, finalized on destruction.
class Statement {
 public:
  static absl::StatusOr<Statement> Prepare(sqlite3* db, absl::string_view sql) {
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()),
                                &stmt, nullptr);
    if (rc != SQLITE_OK) {
      return SqliteError(db, rc, absl::StrCat("prepare \"", sql, "\""));
    }
    return Statement(db, stmt, /*owned=*/true);
  }

  // Uses `stmt`, prepared and owned by someone else; resets it on
  // destruction.
  static Statement Borrow(sqlite3* db, sqlite3_stmt* stmt) {
    return Statement(db, stmt, /*owned=*/false);
  }

  Statement(Statement&& other) noexcept
      : db_(other.db_),
        stmt_(std::exchange(other.stmt_, nullptr)),
        owned_(other.owned_) {}
  Statement& operator=(Statement&&) = delete;
  ~Statement() {
    if (stmt_ == nullptr) return;
    if (owned_) {
      sqlite3_finalize(stmt_);
    } else {
      Reset();
    }
  }

  Statement& Bind(int index, int64_t value) {
    sqlite3_bind_int64(stmt_, index, value);
    return *this;
  }
  Statement& Bind(int index, absl::string_view value) {
    sqlite3_bind_text(stmt_, index, value.data(),
                      static_cast<int>(value.size()), SQLITE_TRANSIENT);
    return *this;
  }

  // Advances; true if a row is available, false when done.
  absl::StatusOr<bool> Step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return SqliteError(db_, rc, sqlite3_sql(stmt_));
  }

  // Runs a statement that returns no rows.
  absl::Status Run() {
    ASSIGN_OR_RETURN(bool has_row, Step());
    (void)has_row;
    return absl::OkStatus();
  }

  // Clears bindings and rewinds for another execution.
  void Reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }

  int64_t Int(int column) const { return sqlite3_column_int64(stmt_, column); }
  std::string Text(int column) const {
    const unsigned char* text = sqlite3_column_text(stmt_, column);
    int size = sqlite3_column_bytes(stmt_, column);
    return text == nullptr
               ? std::string()
               : std::string(reinterpret_cast<const char*>(text), size);
  }

 private:
  Statement(sqlite3* db, sqlite3_stmt* stmt, bool owned)
      : db_(db), stmt_(stmt), owned_(owned) {}

  sqlite3* db_;
  sqlite3_stmt* stmt_;
  bool owned_;
};

absl::Status Exec(sqlite3* db, const char* sql) {
  char* error = nullptr;
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, &error);
  if (rc == SQLITE_OK) return absl::OkStatus();
  std::string message = error != nullptr ? error : sqlite3_errstr(rc);
  sqlite3_free(error);
  return SqliteError(nullptr, rc, absl::StrCat(sql, ": ", message));
}


constexpr char kSelectAuditHead[] =
    "SELECT (SELECT value FROM metadata WHERE key = 'audit_head_seq'), "
    "(SELECT value FROM metadata WHERE key = 'audit_head_hash')";
constexpr char kUpdateMetadata[] =
    "UPDATE metadata SET value = ? WHERE key = ?";
constexpr char kInsertRevealed[] =
    "INSERT INTO revealed (experiment_id, sample_id, audit_seq) "
    "VALUES (?, ?, ?)";
constexpr char kInsertAudit[] =
    "INSERT INTO audit (seq, time_us, experiment, client, strategy, round, "
    "kind, ids_asked, ids_revealed, outcome, detail, prev_hash, hash, role, "
    "peer) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";


// Columns: id, name, label_budget, token_sha256, created_unix_micros,
// evaluation_cap.
constexpr char kExperimentColumns[] =
    "id, name, label_budget, token_sha256, created_unix_micros, "
    "evaluation_cap";

ExperimentRecord ReadExperiment(const Statement& stmt) {
  ExperimentRecord record;
  record.id = stmt.Int(0);
  record.name = stmt.Text(1);
  record.label_budget = stmt.Int(2);
  record.token_sha256 = stmt.Text(3);
  record.created_unix_micros = stmt.Int(4);
  record.evaluation_cap = stmt.Int(5);
  return record;
}

constexpr char kAuditColumns[] =
    "seq, time_us, experiment, client, strategy, round, kind, ids_asked, "
    "ids_revealed, outcome, detail, prev_hash, hash, role, peer";
// The same columns from a version 1 database (opened read-only).
constexpr char kAuditColumnsV1[] =
    "seq, time_us, experiment, client, strategy, round, kind, ids_asked, "
    "ids_revealed, outcome, detail, prev_hash, hash, '', ''";

absl::StatusOr<AuditRecord> ReadAudit(const Statement& stmt) {
  AuditRecord row;
  row.sequence = stmt.Int(0);
  row.time_unix_micros = stmt.Int(1);
  row.experiment = stmt.Text(2);
  row.client = stmt.Text(3);
  row.strategy = stmt.Text(4);
  row.round = static_cast<int32_t>(stmt.Int(5));
  row.kind = stmt.Text(6);
  ASSIGN_OR_RETURN(row.ids_asked, ParseAuditIds(stmt.Text(7), row.sequence));
  ASSIGN_OR_RETURN(row.ids_revealed, ParseAuditIds(stmt.Text(8), row.sequence));
  absl::StatusOr<Outcome> outcome = ParseOutcome(stmt.Text(9));
  if (!outcome.ok()) {
    return absl::DataLossError(absl::StrCat("audit row ", row.sequence, ": ",
                                            outcome.status().message()));
  }
  row.outcome = *outcome;
  row.detail = stmt.Text(10);
  row.prev_hash = stmt.Text(11);
  row.hash = stmt.Text(12);
  row.role = stmt.Text(13);
  row.peer = stmt.Text(14);
  return row;
}

}  // namespace

absl::Status SqliteErrorStatus(int rc, absl::string_view message) {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_PROTOCOL:
    case SQLITE_FULL:
    case SQLITE_NOMEM:
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
      return absl::UnavailableError(message);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::DataLossError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::StatusOr<std::unique_ptr<SqliteLabelStore>> SqliteLabelStore::Open(
    const StoreOptions& options) {
  int flags = SQLITE_OPEN_NOMUTEX;
  flags |= options.read_only ? SQLITE_OPEN_READONLY
                             : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(options.db_path.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    absl::Status status = SqliteError(
        db, rc, absl::StrCat("cannot open database ", options.db_path));
    sqlite3_close(db);
    // At start a database that cannot be opened is missing (or its folder
    // is), not a passing condition.
    if ((rc & 0xff) == SQLITE_CANTOPEN) {
      return absl::NotFoundError(status.message());
    }
    return status;
  }
  if (options.max_group_size <= 0) {
    sqlite3_close(db);
    return absl::InvalidArgumentError(absl::StrCat(
        "max_group_size must be positive, got ", options.max_group_size));
  }
  std::unique_ptr<SqliteLabelStore> store(new SqliteLabelStore(options, db));
  absl::MutexLock db_lock(&store->db_mu_);
  RETURN_IF_ERROR(store->Initialize());
  return store;
}

SqliteLabelStore::SqliteLabelStore(const StoreOptions& options, sqlite3* db)
    : options_(options), db_(db) {}

SqliteLabelStore::~SqliteLabelStore() {
  // Commits (or fails) and completes every queued write first.
  ledger_.reset();
  absl::MutexLock db_lock(&db_mu_);
  for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
  sqlite3_close(db_);
}

absl::Status SqliteLabelStore::Initialize() {
  sqlite3_busy_timeout(db_, options_.busy_timeout_ms);
  RETURN_IF_ERROR(Exec(db_, "PRAGMA foreign_keys = ON"));
  if (options_.read_only) {
    absl::StatusOr<std::string> version = ReadSchemaVersionLocked();
    if (!version.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat(options_.db_path, " is not a label oracle database (",
                       version.status().message(), ")"));
    }
    if (*version == kSchemaVersion1) {
      schema_v1_ = true;
    } else if (*version != kSchemaVersion) {
      return absl::FailedPreconditionError(
          absl::StrCat(options_.db_path, " has schema version ", *version,
                       ", expected ", kSchemaVersion1, " or ", kSchemaVersion));
    }
  } else {
    ASSIGN_OR_RETURN(std::string mode, JournalModeWalLocked());
    if (mode != "wal" && options_.db_path != ":memory:") {
      return absl::FailedPreconditionError(absl::StrCat(
          options_.db_path, ": cannot switch to WAL journal mode (got \"", mode,
          "\")"));
    }
    RETURN_IF_ERROR(Exec(db_, "PRAGMA synchronous = FULL"));
    // 64 MiB of page cache: the revealed and audit B-trees of a busy server
    // stay in memory instead of being re-read for every group.
    RETURN_IF_ERROR(Exec(db_, "PRAGMA cache_size = -65536"));

    // Read the label files before taking the write lock.
    std::optional<ImportedLabels> train;
    std::optional<ImportedLabels> test;
    if (!options_.train_labels_path.empty()) {
      ASSIGN_OR_RETURN(train, ReadLabelFile(options_.train_labels_path,
                                            options_.train_count));
    }
    if (!options_.test_labels_path.empty()) {
      ASSIGN_OR_RETURN(
          test, ReadLabelFile(options_.test_labels_path, options_.test_count));
    }
    RETURN_IF_ERROR(InTransactionLocked([&]() -> absl::Status {
      RETURN_IF_ERROR(CreateSchemaLocked());
      RETURN_IF_ERROR(ImportOrCheckLocked(
          Split::kTrain, train.has_value() ? &train->info : nullptr,
          train.has_value() ? train->labels : std::vector<uint8_t>()));
      return ImportOrCheckLocked(
          Split::kTest, test.has_value() ? &test->info : nullptr,
          test.has_value() ? test->labels : std::vector<uint8_t>());
    }));
  }
  ASSIGN_OR_RETURN(train_labels_, ReadLabelsLocked(Split::kTrain));
  ASSIGN_OR_RETURN(test_labels_, ReadLabelsLocked(Split::kTest));
  LedgerOptions ledger_options;
  ledger_options.train_count = static_cast<int64_t>(train_labels_.size());
  ledger_options.max_group_size = options_.max_group_size;
  ledger_ = std::make_unique<StoreLedger>(
      ledger_options, static_cast<LedgerBackend*>(this));
  ASSIGN_OR_RETURN(LedgerSnapshot snapshot, LoadSnapshotLocked());
  ledger_->Reset(snapshot);
  return absl::OkStatus();
}

absl::StatusOr<std::string> SqliteLabelStore::JournalModeWalLocked() {
  ASSIGN_OR_RETURN(Statement journal,
                   Statement::Prepare(db_, "PRAGMA journal_mode = WAL"));
  ASSIGN_OR_RETURN(bool has_mode, journal.Step());
  return has_mode ? journal.Text(0) : std::string();
}

absl::StatusOr<std::string> SqliteLabelStore::ReadSchemaVersionLocked() {
  ASSIGN_OR_RETURN(
      Statement version,
      Statement::Prepare(
          db_, "SELECT value FROM metadata WHERE key = 'schema_version'"));
  ASSIGN_OR_RETURN(bool has_version, version.Step());
  if (!has_version) return absl::NotFoundError("no schema version");
  return version.Text(0);
}

absl::Status SqliteLabelStore::CreateSchemaLocked() {
  RETURN_IF_ERROR(Exec(db_, kSchema));
  ASSIGN_OR_RETURN(Statement insert,
                   Statement::Prepare(db_,
                                      "INSERT OR IGNORE INTO metadata "
                                      "(key, value) VALUES (?, ?)"));
  for (const auto& [key, value] :
       {std::pair<const char*, const char*>{"schema_version", kSchemaVersion},
        {"audit_head_seq", "0"},
        {"audit_head_hash", kGenesisHash}}) {
    RETURN_IF_ERROR(insert.Bind(1, key).Bind(2, value).Run());
    insert.Reset();
  }
  ASSIGN_OR_RETURN(std::string version, ReadSchemaVersionLocked());
  if (version == kSchemaVersion1) {
    // Rows written before roles keep empty role and peer, which the hash
    // chain leaves out, so their hashes still verify.
    RETURN_IF_ERROR(Exec(db_,
                         "ALTER TABLE audit ADD COLUMN role TEXT NOT NULL "
                         "DEFAULT '';"
                         "ALTER TABLE audit ADD COLUMN peer TEXT NOT NULL "
                         "DEFAULT '';"
                         "UPDATE metadata SET value = '2' "
                         "WHERE key = 'schema_version';"));
    ASSIGN_OR_RETURN(version, ReadSchemaVersionLocked());
  }
  if (version != kSchemaVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat(options_.db_path, " has schema version ", version,
                     ", expected ", kSchemaVersion));
  }
  return absl::OkStatus();
}

absl::Status SqliteLabelStore::ImportOrCheckLocked(
    Split split, const DatasetSplitInfo* file,
    const std::vector<uint8_t>& labels) {
  ASSIGN_OR_RETURN(Statement existing,
                   Statement::Prepare(db_,
                                      "SELECT source_path, content_sha256, "
                                      "count FROM datasets WHERE split = ?"));
  existing.Bind(1, SplitName(split));
  ASSIGN_OR_RETURN(bool imported_before, existing.Step());
  if (imported_before) {
    if (file != nullptr && (existing.Text(1) != file->content_sha256 ||
                            existing.Int(2) != file->count)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "database ", options_.db_path, " holds ", SplitName(split),
          " labels imported from ", existing.Text(0), " (", existing.Int(2),
          " labels, sha256 ", existing.Text(1), ") but ", file->source_path,
          " differs (", file->count, " labels, sha256 ", file->content_sha256,
          "); use the original label files or a new database"));
    }
    return absl::OkStatus();
  }
  if (file == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("database ", options_.db_path, " has no ",
                     SplitName(split), " labels and no label file was given"));
  }
  ASSIGN_OR_RETURN(Statement insert_dataset,
                   Statement::Prepare(db_,
                                      "INSERT INTO datasets (split, "
                                      "source_path, content_sha256, count) "
                                      "VALUES (?, ?, ?, ?)"));
  RETURN_IF_ERROR(insert_dataset.Bind(1, SplitName(split))
                      .Bind(2, file->source_path)
                      .Bind(3, file->content_sha256)
                      .Bind(4, file->count)
                      .Run());
  ASSIGN_OR_RETURN(
      Statement insert_label,
      Statement::Prepare(
          db_, "INSERT INTO labels (split, id, label) VALUES (?, ?, ?)"));
  for (size_t id = 0; id < labels.size(); ++id) {
    RETURN_IF_ERROR(insert_label.Bind(1, SplitName(split))
                        .Bind(2, static_cast<int64_t>(id))
                        .Bind(3, int64_t{labels[id]})
                        .Run());
    insert_label.Reset();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint8_t>> SqliteLabelStore::ReadLabelsLocked(
    Split split) {
  ASSIGN_OR_RETURN(Statement dataset,
                   Statement::Prepare(db_,
                                      "SELECT source_path, content_sha256, "
                                      "count FROM datasets WHERE split = ?"));
  dataset.Bind(1, SplitName(split));
  ASSIGN_OR_RETURN(bool has_dataset, dataset.Step());
  if (!has_dataset) {
    return absl::FailedPreconditionError(absl::StrCat(
        "database ", options_.db_path, " has no ", SplitName(split), " labels"));
  }
  DatasetSplitInfo recorded;
  recorded.source_path = dataset.Text(0);
  recorded.content_sha256 = dataset.Text(1);
  recorded.count = dataset.Int(2);
  ASSIGN_OR_RETURN(
      Statement select,
      Statement::Prepare(
          db_, "SELECT id, label FROM labels WHERE split = ? ORDER BY id"));
  select.Bind(1, SplitName(split));
  std::vector<uint8_t> labels;
  while (true) {
    ASSIGN_OR_RETURN(bool has_row, select.Step());
    if (!has_row) break;
    if (select.Int(0) != static_cast<int64_t>(labels.size())) {
      return absl::DataLossError(absl::StrCat(options_.db_path, ": ",
                                              SplitName(split), " label ",
                                              labels.size(), " is missing"));
    }
    labels.push_back(static_cast<uint8_t>(select.Int(1)));
  }
  RETURN_IF_ERROR(CheckLabelsMatchRecord(
      absl::StrCat("database ", options_.db_path), split, recorded, labels));
  return labels;
}

// A group's write transaction, open on the store's connection.
class SqliteLabelStore::Transaction final : public LedgerTransaction {
 public:
  explicit Transaction(SqliteLabelStore* store) : store_(store) {}

  absl::StatusOr<LedgerStamp> ReadStamp() override {
    store_->db_mu_.AssertHeld();
    ASSIGN_OR_RETURN(auto head, store_->GetAuditHeadLocked());
    LedgerStamp stamp;
    stamp.head_sequence = head.first;
    stamp.head_hash = std::move(head.second);
    return stamp;
  }
  absl::StatusOr<LedgerSnapshot> LoadSnapshot() override {
    store_->db_mu_.AssertHeld();
    return store_->LoadSnapshotLocked();
  }
  absl::Status WriteGroup(const GroupWrite& write) override {
    store_->db_mu_.AssertHeld();
    return store_->WriteGroupLocked(write);
  }

 private:
  SqliteLabelStore* const store_;
};

absl::StatusOr<sqlite3_stmt*> SqliteLabelStore::CachedStatement(
    const char* sql) {
  auto it = statements_.find(sql);
  if (it != statements_.end()) return it->second;
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt,
                              nullptr);
  if (rc != SQLITE_OK) {
    return SqliteError(db_, rc, absl::StrCat("prepare \"", sql, "\""));
  }
  statements_.emplace(sql, stmt);
  return stmt;
}

absl::Status SqliteLabelStore::InTransactionLocked(
    const std::function<absl::Status()>& body) {
  ASSIGN_OR_RETURN(sqlite3_stmt * begin, CachedStatement("BEGIN IMMEDIATE"));
  RETURN_IF_ERROR(Statement::Borrow(db_, begin).Run());
  absl::Status status = body();
  if (status.ok() && options_.before_commit) status = options_.before_commit();
  if (status.ok()) {
    absl::StatusOr<sqlite3_stmt*> commit = CachedStatement("COMMIT");
    status =
        commit.ok() ? Statement::Borrow(db_, *commit).Run() : commit.status();
    if (status.ok()) return status;
  }
  // Rolls back whatever the body wrote; harmless if SQLite already did.
  if (!sqlite3_get_autocommit(db_)) {
    Exec(db_, "ROLLBACK").IgnoreError();
  }
  return status;
}

absl::Status SqliteLabelStore::CheckWritable() const {
  if (options_.read_only) {
    return absl::FailedPreconditionError(
        absl::StrCat(options_.db_path, " is open read-only"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::pair<int64_t, std::string>>
SqliteLabelStore::GetAuditHeadLocked() {
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt, CachedStatement(kSelectAuditHead));
  Statement head = Statement::Borrow(db_, stmt);
  ASSIGN_OR_RETURN(bool has_head, head.Step());
  int64_t sequence = 0;
  if (!has_head || !absl::SimpleAtoi(head.Text(0), &sequence)) {
    return absl::DataLossError("audit head is missing from metadata");
  }
  return std::make_pair(sequence, head.Text(1));
}

absl::StatusOr<LedgerSnapshot> SqliteLabelStore::LoadSnapshotLocked() {
  LedgerSnapshot snapshot;
  {
    ASSIGN_OR_RETURN(
        Statement select,
        Statement::Prepare(db_, absl::StrCat("SELECT ", kExperimentColumns,
                                             " FROM experiments")));
    while (true) {
      ASSIGN_OR_RETURN(bool has_row, select.Step());
      if (!has_row) break;
      snapshot.experiments.push_back(ReadExperiment(select));
    }
  }
  {
    ASSIGN_OR_RETURN(Statement select,
                     Statement::Prepare(db_,
                                        "SELECT experiment_id, sample_id "
                                        "FROM revealed"));
    while (true) {
      ASSIGN_OR_RETURN(bool has_row, select.Step());
      if (!has_row) break;
      snapshot.revealed.emplace_back(select.Int(0), select.Int(1));
    }
  }
  {
    ASSIGN_OR_RETURN(
        Statement select,
        Statement::Prepare(
            db_, absl::StrCat("SELECT experiment, kind, outcome, ",
                              schema_v1_ ? "''" : "peer",
                              ", COUNT(*) FROM audit GROUP BY experiment, "
                              "kind, outcome",
                              schema_v1_ ? "" : ", peer")));
    while (true) {
      ASSIGN_OR_RETURN(bool has_row, select.Step());
      if (!has_row) break;
      snapshot.audit_counts.push_back({select.Text(0), select.Text(1),
                                       select.Text(2), select.Text(3),
                                       select.Int(4)});
    }
  }
  ASSIGN_OR_RETURN(auto head, GetAuditHeadLocked());
  snapshot.stamp.head_sequence = head.first;
  snapshot.stamp.head_hash = std::move(head.second);
  return snapshot;
}

absl::Status SqliteLabelStore::InWriteTransaction(
    absl::FunctionRef<absl::Status(LedgerTransaction&)> body) {
  absl::MutexLock db_lock(&db_mu_);
  Transaction transaction(this);
  return InTransactionLocked([&] { return body(transaction); });
}

absl::Status SqliteLabelStore::WriteGroupLocked(const GroupWrite& write) {
  ASSIGN_OR_RETURN(sqlite3_stmt * insert_audit, CachedStatement(kInsertAudit));
  for (const AuditRecord& row : write.rows) {
    RETURN_IF_ERROR(Statement::Borrow(db_, insert_audit)
                        .Bind(1, row.sequence)
                        .Bind(2, row.time_unix_micros)
                        .Bind(3, row.experiment)
                        .Bind(4, row.client)
                        .Bind(5, row.strategy)
                        .Bind(6, int64_t{row.round})
                        .Bind(7, row.kind)
                        .Bind(8, FormatAuditIds(row.ids_asked))
                        .Bind(9, FormatAuditIds(row.ids_revealed))
                        .Bind(10, OutcomeName(row.outcome))
                        .Bind(11, row.detail)
                        .Bind(12, row.prev_hash)
                        .Bind(13, row.hash)
                        .Bind(14, row.role)
                        .Bind(15, row.peer)
                        .Run());
  }
  ASSIGN_OR_RETURN(sqlite3_stmt * insert_revealed,
                   CachedStatement(kInsertRevealed));
  for (const RevealedRecord& revealed : write.revealed) {
    RETURN_IF_ERROR(Statement::Borrow(db_, insert_revealed)
                        .Bind(1, revealed.experiment_id)
                        .Bind(2, revealed.sample_id)
                        .Bind(3, revealed.audit_sequence)
                        .Run());
  }
  ASSIGN_OR_RETURN(sqlite3_stmt * update, CachedStatement(kUpdateMetadata));
  RETURN_IF_ERROR(Statement::Borrow(db_, update)
                      .Bind(1, absl::StrCat(write.rows.back().sequence))
                      .Bind(2, "audit_head_seq")
                      .Run());
  return Statement::Borrow(db_, update)
      .Bind(1, write.rows.back().hash)
      .Bind(2, "audit_head_hash")
      .Run();
}

absl::StatusOr<DatasetInfo> SqliteLabelStore::GetDatasetInfo() {
  absl::MutexLock lock(&db_mu_);
  ASSIGN_OR_RETURN(Statement select,
                   Statement::Prepare(db_,
                                      "SELECT split, source_path, "
                                      "content_sha256, count FROM datasets"));
  DatasetInfo info;
  while (true) {
    ASSIGN_OR_RETURN(bool has_row, select.Step());
    if (!has_row) break;
    DatasetSplitInfo& split =
        select.Text(0) == SplitName(Split::kTrain) ? info.train : info.test;
    split.source_path = select.Text(1);
    split.content_sha256 = select.Text(2);
    split.count = select.Int(3);
  }
  return info;
}

absl::StatusOr<std::vector<uint8_t>> SqliteLabelStore::LoadLabels(Split split) {
  return split == Split::kTrain ? train_labels_ : test_labels_;
}

absl::StatusOr<ExperimentRecord> SqliteLabelStore::CreateExperiment(
    const ExperimentRecord& experiment, bool* created) {
  RETURN_IF_ERROR(CheckWritable());
  absl::MutexLock db_lock(&db_mu_);
  if (std::optional<ExperimentRecord> known =
          ledger_->FindExperiment(experiment.name)) {
    if (created != nullptr) *created = false;
    return *std::move(known);
  }
  static constexpr char kSelect[] =
      "SELECT id, name, label_budget, token_sha256, created_unix_micros, "
      "evaluation_cap FROM experiments WHERE name = ?";
  ExperimentRecord stored;
  bool inserted = false;
  RETURN_IF_ERROR(InTransactionLocked([&]() -> absl::Status {
    ASSIGN_OR_RETURN(sqlite3_stmt * select_stmt, CachedStatement(kSelect));
    Statement select = Statement::Borrow(db_, select_stmt);
    select.Bind(1, experiment.name);
    ASSIGN_OR_RETURN(bool exists, select.Step());
    if (exists) {
      // Created by another connection since this store loaded its state.
      stored = ReadExperiment(select);
      return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(
        Statement insert,
        Statement::Prepare(db_,
                           "INSERT INTO experiments (name, label_budget, "
                           "token_sha256, created_unix_micros, evaluation_cap) "
                           "VALUES (?, ?, ?, ?, ?)"));
    stored = experiment;
    stored.created_unix_micros = absl::ToUnixMicros(absl::Now());
    RETURN_IF_ERROR(insert.Bind(1, stored.name)
                        .Bind(2, stored.label_budget)
                        .Bind(3, stored.token_sha256)
                        .Bind(4, stored.created_unix_micros)
                        .Bind(5, stored.evaluation_cap)
                        .Run());
    stored.id = sqlite3_last_insert_rowid(db_);
    inserted = true;
    return absl::OkStatus();
  }));
  ledger_->AddExperiment(stored);
  if (!inserted) {
    // Another connection created it, perhaps more: reload everything at the
    // next write. Not Reset here: db_mu_ does not keep out a group that has
    // committed but is not yet in the ledger.
    ledger_->ReloadAtNextWrite();
  }
  if (created != nullptr) *created = inserted;
  return stored;
}

absl::StatusOr<ExperimentRecord> SqliteLabelStore::GetExperiment(
    absl::string_view name) {
  std::optional<ExperimentRecord> experiment = ledger_->FindExperiment(name);
  if (!experiment.has_value()) {
    return absl::NotFoundError(
        absl::StrCat("no experiment named \"", name, "\""));
  }
  return *std::move(experiment);
}

absl::StatusOr<std::vector<ExperimentRecord>>
SqliteLabelStore::ListExperiments() {
  return ledger_->Experiments();
}

absl::StatusOr<ExperimentUsage> SqliteLabelStore::GetUsage(
    absl::string_view name) {
  return ledger_->Usage(name);
}

absl::StatusOr<std::vector<AuditRecord>> SqliteLabelStore::ListAudit(
    absl::string_view experiment, int64_t after_sequence, int64_t limit) {
  absl::MutexLock lock(&db_mu_);
  ASSIGN_OR_RETURN(
      Statement select,
      Statement::Prepare(
          db_, absl::StrCat("SELECT ",
                            schema_v1_ ? kAuditColumnsV1 : kAuditColumns,
                            " FROM audit WHERE seq > ? AND (? = '' OR "
                            "experiment = ?) ORDER BY seq LIMIT ?")));
  select.Bind(1, after_sequence)
      .Bind(2, experiment)
      .Bind(3, experiment)
      .Bind(4, limit);
  std::vector<AuditRecord> rows;
  while (true) {
    ASSIGN_OR_RETURN(bool has_row, select.Step());
    if (!has_row) break;
    ASSIGN_OR_RETURN(AuditRecord row, ReadAudit(select));
    rows.push_back(std::move(row));
  }
  return rows;
}

absl::StatusOr<std::pair<int64_t, std::string>>
SqliteLabelStore::GetAuditHead() {
  absl::MutexLock lock(&db_mu_);
  return GetAuditHeadLocked();
}

absl::StatusOr<std::vector<RevealedRecord>> SqliteLabelStore::ListRevealed() {
  absl::MutexLock lock(&db_mu_);
  ASSIGN_OR_RETURN(Statement select,
                   Statement::Prepare(db_,
                                      "SELECT experiment_id, sample_id, "
                                      "audit_seq FROM revealed ORDER BY "
                                      "experiment_id, sample_id"));
  std::vector<RevealedRecord> revealed;
  while (true) {
    ASSIGN_OR_RETURN(bool has_row, select.Step());
    if (!has_row) break;
    revealed.push_back({select.Int(0), select.Int(1), select.Int(2)});
  }
  return revealed;
}

}  // namespace oracle_server
