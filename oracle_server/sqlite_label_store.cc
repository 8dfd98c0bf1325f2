#include "oracle_server/sqlite_label_store.h"

#include <sqlite3.h>

#include <optional>
#include <unordered_set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/idx_file.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "oracle_server/audit_chain.h"

namespace oracle_server {
namespace {

constexpr char kSchemaVersion[] = "1";

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
  hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_experiment ON audit (experiment, seq);
)sql";

// Maps a SQLite result code to the most specific canonical code.
absl::Status SqliteError(sqlite3* db, int rc, absl::string_view what) {
  std::string message = absl::StrCat(
      what, ": ", db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_PROTOCOL:
      return absl::UnavailableError(message);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::DataLossError(message);
    case SQLITE_FULL:
      return absl::ResourceExhaustedError(message);
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
      return absl::FailedPreconditionError(message);
    case SQLITE_CANTOPEN:
      return absl::NotFoundError(message);
    default:
      return absl::InternalError(message);
  }
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
    return Statement(db, stmt);
  }

  Statement(Statement&& other) noexcept
      : db_(other.db_), stmt_(std::exchange(other.stmt_, nullptr)) {}
  Statement& operator=(Statement&&) = delete;
  ~Statement() { sqlite3_finalize(stmt_); }

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
  Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}

  sqlite3* db_;
  sqlite3_stmt* stmt_;
};

absl::Status Exec(sqlite3* db, const char* sql) {
  char* error = nullptr;
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, &error);
  if (rc == SQLITE_OK) return absl::OkStatus();
  std::string message = error != nullptr ? error : sqlite3_errstr(rc);
  sqlite3_free(error);
  return SqliteError(nullptr, rc, absl::StrCat(sql, ": ", message));
}

std::string FormatIds(const std::vector<int64_t>& ids) {
  return absl::StrJoin(ids, ",");
}

absl::StatusOr<std::vector<int64_t>> ParseIds(absl::string_view text,
                                              int64_t sequence) {
  std::vector<int64_t> ids;
  if (text.empty()) return ids;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    int64_t id = 0;
    if (!absl::SimpleAtoi(part, &id)) {
      return absl::DataLossError(absl::StrCat(
          "audit row ", sequence, ": malformed id list \"", text, "\""));
    }
    ids.push_back(id);
  }
  return ids;
}

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
    "ids_revealed, outcome, detail, prev_hash, hash";

absl::StatusOr<AuditRecord> ReadAudit(const Statement& stmt) {
  AuditRecord row;
  row.sequence = stmt.Int(0);
  row.time_unix_micros = stmt.Int(1);
  row.experiment = stmt.Text(2);
  row.client = stmt.Text(3);
  row.strategy = stmt.Text(4);
  row.round = static_cast<int32_t>(stmt.Int(5));
  row.kind = stmt.Text(6);
  ASSIGN_OR_RETURN(row.ids_asked, ParseIds(stmt.Text(7), row.sequence));
  ASSIGN_OR_RETURN(row.ids_revealed, ParseIds(stmt.Text(8), row.sequence));
  absl::StatusOr<Outcome> outcome = ParseOutcome(stmt.Text(9));
  if (!outcome.ok()) {
    return absl::DataLossError(absl::StrCat("audit row ", row.sequence, ": ",
                                            outcome.status().message()));
  }
  row.outcome = *outcome;
  row.detail = stmt.Text(10);
  row.prev_hash = stmt.Text(11);
  row.hash = stmt.Text(12);
  return row;
}

// Labels read from an IDX file, with what is recorded about them.
struct ImportedLabels {
  DatasetSplitInfo info;
  std::vector<uint8_t> labels;
};

absl::StatusOr<ImportedLabels> ReadLabelFile(const std::string& path,
                                             int64_t count) {
  ImportedLabels imported;
  ASSIGN_OR_RETURN(imported.labels, common::ReadIdxLabels(path, count));
  for (size_t i = 0; i < imported.labels.size(); ++i) {
    if (imported.labels[i] >= common::kNumClasses) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": label ", imported.labels[i], " of sample ", i,
                       " is not in [0, ", common::kNumClasses, ")"));
    }
  }
  imported.info.source_path = path;
  imported.info.count = static_cast<int64_t>(imported.labels.size());
  imported.info.content_sha256 = common::Sha256Hex(
      absl::string_view(reinterpret_cast<const char*>(imported.labels.data()),
                        imported.labels.size()));
  return imported;
}

}  // namespace

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
    return status;
  }
  std::unique_ptr<SqliteLabelStore> store(new SqliteLabelStore(options, db));
  absl::MutexLock lock(&store->mu_);
  RETURN_IF_ERROR(store->Initialize());
  return store;
}

SqliteLabelStore::SqliteLabelStore(const StoreOptions& options, sqlite3* db)
    : options_(options), db_(db) {}

SqliteLabelStore::~SqliteLabelStore() { sqlite3_close(db_); }

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
  } else {
    ASSIGN_OR_RETURN(std::string mode, JournalModeWalLocked());
    if (mode != "wal" && options_.db_path != ":memory:") {
      return absl::FailedPreconditionError(absl::StrCat(
          options_.db_path, ": cannot switch to WAL journal mode (got \"", mode,
          "\")"));
    }
    RETURN_IF_ERROR(Exec(db_, "PRAGMA synchronous = FULL"));

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
    RETURN_IF_ERROR(InTransaction([&]() -> absl::Status {
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
  return labels;
}

absl::Status SqliteLabelStore::InTransaction(
    const std::function<absl::Status()>& body) {
  RETURN_IF_ERROR(Exec(db_, "BEGIN IMMEDIATE"));
  absl::Status status = body();
  if (status.ok() && options_.before_commit) status = options_.before_commit();
  if (status.ok()) {
    status = Exec(db_, "COMMIT");
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

absl::Status SqliteLabelStore::AppendAuditLocked(AuditRecord* row) {
  ASSIGN_OR_RETURN(auto head, GetAuditHeadLocked());
  row->sequence = head.first + 1;
  row->prev_hash = std::move(head.second);
  row->hash = AuditRowHash(row->prev_hash, *row);

  ASSIGN_OR_RETURN(
      Statement insert,
      Statement::Prepare(db_, absl::StrCat("INSERT INTO audit (", kAuditColumns,
                                           ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
                                           "?, ?, ?, ?, ?)")));
  RETURN_IF_ERROR(insert.Bind(1, row->sequence)
                      .Bind(2, row->time_unix_micros)
                      .Bind(3, row->experiment)
                      .Bind(4, row->client)
                      .Bind(5, row->strategy)
                      .Bind(6, int64_t{row->round})
                      .Bind(7, row->kind)
                      .Bind(8, FormatIds(row->ids_asked))
                      .Bind(9, FormatIds(row->ids_revealed))
                      .Bind(10, OutcomeName(row->outcome))
                      .Bind(11, row->detail)
                      .Bind(12, row->prev_hash)
                      .Bind(13, row->hash)
                      .Run());
  ASSIGN_OR_RETURN(
      Statement update,
      Statement::Prepare(db_, "UPDATE metadata SET value = ? WHERE key = ?"));
  RETURN_IF_ERROR(update.Bind(1, absl::StrCat(row->sequence))
                      .Bind(2, "audit_head_seq")
                      .Run());
  update.Reset();
  return update.Bind(1, row->hash).Bind(2, "audit_head_hash").Run();
}

absl::StatusOr<ExperimentRecord> SqliteLabelStore::GetExperimentLocked(
    absl::string_view name) {
  ASSIGN_OR_RETURN(Statement select,
                   Statement::Prepare(
                       db_, absl::StrCat("SELECT ", kExperimentColumns,
                                         " FROM experiments WHERE name = ?")));
  select.Bind(1, name);
  ASSIGN_OR_RETURN(bool found, select.Step());
  if (!found) {
    return absl::NotFoundError(
        absl::StrCat("no experiment named \"", name, "\""));
  }
  return ReadExperiment(select);
}

absl::StatusOr<int64_t> SqliteLabelStore::CountRevealedLocked(
    int64_t experiment_id) {
  ASSIGN_OR_RETURN(
      Statement count,
      Statement::Prepare(
          db_, "SELECT COUNT(*) FROM revealed WHERE experiment_id = ?"));
  count.Bind(1, experiment_id);
  RETURN_IF_ERROR(count.Step().status());
  return count.Int(0);
}

absl::StatusOr<DatasetInfo> SqliteLabelStore::GetDatasetInfo() {
  absl::MutexLock lock(&mu_);
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
  absl::MutexLock lock(&mu_);
  ExperimentRecord stored;
  bool inserted = false;
  RETURN_IF_ERROR(InTransaction([&]() -> absl::Status {
    absl::StatusOr<ExperimentRecord> existing =
        GetExperimentLocked(experiment.name);
    if (existing.ok()) {
      stored = *std::move(existing);
      return absl::OkStatus();
    }
    if (!absl::IsNotFound(existing.status())) return existing.status();
    ASSIGN_OR_RETURN(
        Statement insert,
        Statement::Prepare(db_,
                           "INSERT INTO experiments (name, label_budget, "
                           "token_sha256, created_unix_micros, evaluation_cap) "
                           "VALUES (?, ?, ?, ?, ?)"));
    RETURN_IF_ERROR(insert.Bind(1, experiment.name)
                        .Bind(2, experiment.label_budget)
                        .Bind(3, experiment.token_sha256)
                        .Bind(4, absl::ToUnixMicros(absl::Now()))
                        .Bind(5, experiment.evaluation_cap)
                        .Run());
    ASSIGN_OR_RETURN(stored, GetExperimentLocked(experiment.name));
    inserted = true;
    return absl::OkStatus();
  }));
  if (created != nullptr) *created = inserted;
  return stored;
}

absl::StatusOr<ExperimentRecord> SqliteLabelStore::GetExperiment(
    absl::string_view name) {
  absl::MutexLock lock(&mu_);
  return GetExperimentLocked(name);
}

absl::StatusOr<std::vector<ExperimentRecord>>
SqliteLabelStore::ListExperiments() {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(
      Statement select,
      Statement::Prepare(db_, absl::StrCat("SELECT ", kExperimentColumns,
                                           " FROM experiments ORDER BY id")));
  std::vector<ExperimentRecord> experiments;
  while (true) {
    ASSIGN_OR_RETURN(bool has_row, select.Step());
    if (!has_row) break;
    experiments.push_back(ReadExperiment(select));
  }
  return experiments;
}

absl::StatusOr<ExperimentUsage> SqliteLabelStore::GetUsage(
    absl::string_view name) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(ExperimentRecord experiment, GetExperimentLocked(name));
  ExperimentUsage usage;
  ASSIGN_OR_RETURN(usage.spent, CountRevealedLocked(experiment.id));
  ASSIGN_OR_RETURN(
      Statement counts,
      Statement::Prepare(
          db_,
          "SELECT "
          "  COALESCE(SUM(kind = 'query' AND outcome = 'GRANTED'), 0), "
          "  COALESCE(SUM(kind = 'query' AND outcome LIKE 'DENIED%'), 0), "
          "  COALESCE(SUM(kind = 'evaluate' AND outcome = 'EVALUATED'), 0) "
          "FROM audit WHERE experiment = ?"));
  counts.Bind(1, experiment.name);
  RETURN_IF_ERROR(counts.Step().status());
  usage.requests_granted = counts.Int(0);
  usage.requests_denied = counts.Int(1);
  usage.evaluations = counts.Int(2);
  return usage;
}

absl::StatusOr<RevealResult> SqliteLabelStore::Reveal(
    const RevealRequest& request) {
  RETURN_IF_ERROR(CheckWritable());
  for (int64_t id : request.ids) {
    if (id < 0 || id >= static_cast<int64_t>(train_labels_.size())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "train id ", id, " is not in [0, ", train_labels_.size(), ")"));
    }
  }
  absl::MutexLock lock(&mu_);
  RevealResult result;
  RETURN_IF_ERROR(InTransaction([&]() -> absl::Status {
    result = RevealResult();
    ASSIGN_OR_RETURN(ExperimentRecord experiment,
                     GetExperimentLocked(request.experiment));
    ASSIGN_OR_RETURN(int64_t spent, CountRevealedLocked(experiment.id));
    ASSIGN_OR_RETURN(Statement seen,
                     Statement::Prepare(db_,
                                        "SELECT 1 FROM revealed WHERE "
                                        "experiment_id = ? AND sample_id = ?"));
    std::unordered_set<int64_t> new_ids;
    std::vector<int64_t> new_in_order;
    for (int64_t id : request.ids) {
      if (new_ids.count(id) > 0) continue;
      seen.Bind(1, experiment.id).Bind(2, id);
      ASSIGN_OR_RETURN(bool revealed_before, seen.Step());
      seen.Reset();
      if (!revealed_before) {
        new_ids.insert(id);
        new_in_order.push_back(id);
      }
    }
    const int64_t remaining = experiment.label_budget - spent;

    AuditRecord row;
    row.time_unix_micros = request.time_unix_micros;
    row.experiment = experiment.name;
    row.client = request.client;
    row.strategy = request.strategy;
    row.round = request.round;
    row.kind = kKindQuery;
    row.ids_asked = request.ids;
    if (static_cast<int64_t>(new_in_order.size()) > remaining) {
      row.outcome = Outcome::kDeniedBudget;
      row.detail = absl::StrCat("requested ", new_in_order.size(),
                                " new labels but only ", remaining, " remain");
      RETURN_IF_ERROR(AppendAuditLocked(&row));
      result.granted = false;
      result.spent = spent;
      result.remaining = remaining;
      result.requested_new = static_cast<int64_t>(new_in_order.size());
      result.audit_sequence = row.sequence;
      return absl::OkStatus();
    }
    row.outcome = Outcome::kGranted;
    row.ids_revealed = new_in_order;
    RETURN_IF_ERROR(AppendAuditLocked(&row));
    ASSIGN_OR_RETURN(Statement insert,
                     Statement::Prepare(db_,
                                        "INSERT INTO revealed (experiment_id, "
                                        "sample_id, audit_seq) VALUES (?, ?, "
                                        "?)"));
    for (int64_t id : new_in_order) {
      RETURN_IF_ERROR(insert.Bind(1, experiment.id)
                          .Bind(2, id)
                          .Bind(3, row.sequence)
                          .Run());
      insert.Reset();
    }
    result.granted = true;
    result.requested_new = static_cast<int64_t>(new_in_order.size());
    result.newly_revealed = std::move(new_in_order);
    result.spent = spent + result.requested_new;
    result.remaining = remaining - result.requested_new;
    result.audit_sequence = row.sequence;
    return absl::OkStatus();
  }));
  if (result.granted) {
    result.labels.reserve(request.ids.size());
    for (int64_t id : request.ids) result.labels.push_back(train_labels_[id]);
  }
  return result;
}

absl::StatusOr<EvaluationResult> SqliteLabelStore::RecordEvaluation(
    const EvaluationRequest& request) {
  RETURN_IF_ERROR(CheckWritable());
  absl::MutexLock lock(&mu_);
  EvaluationResult result;
  RETURN_IF_ERROR(InTransaction([&]() -> absl::Status {
    ASSIGN_OR_RETURN(ExperimentRecord experiment,
                     GetExperimentLocked(request.experiment));
    ASSIGN_OR_RETURN(
        Statement count,
        Statement::Prepare(db_,
                           "SELECT COUNT(*) FROM audit WHERE experiment = ? "
                           "AND kind = 'evaluate' AND outcome = 'EVALUATED'"));
    count.Bind(1, experiment.name);
    RETURN_IF_ERROR(count.Step().status());
    const int64_t evaluations = count.Int(0);

    AuditRecord row;
    row.time_unix_micros = request.time_unix_micros;
    row.experiment = experiment.name;
    row.client = request.client;
    row.kind = kKindEvaluate;
    result.evaluation_cap = experiment.evaluation_cap;
    if (evaluations >= experiment.evaluation_cap) {
      row.outcome = Outcome::kDeniedEvaluationCap;
      row.detail = absl::StrCat("evaluation cap of ", experiment.evaluation_cap,
                                " reached");
      result.allowed = false;
      result.evaluations = evaluations;
    } else {
      row.outcome = Outcome::kEvaluated;
      row.detail = request.detail;
      result.allowed = true;
      result.evaluations = evaluations + 1;
    }
    RETURN_IF_ERROR(AppendAuditLocked(&row));
    result.audit_sequence = row.sequence;
    return absl::OkStatus();
  }));
  return result;
}

absl::StatusOr<int64_t> SqliteLabelStore::AppendAudit(const AuditRecord& row) {
  RETURN_IF_ERROR(CheckWritable());
  if (!row.ids_revealed.empty() || row.outcome == Outcome::kGranted) {
    return absl::InvalidArgumentError(
        "AppendAudit is for rows that reveal nothing; use Reveal");
  }
  absl::MutexLock lock(&mu_);
  AuditRecord copy = row;
  RETURN_IF_ERROR(InTransaction([&]() { return AppendAuditLocked(&copy); }));
  return copy.sequence;
}

absl::StatusOr<std::vector<AuditRecord>> SqliteLabelStore::ListAudit(
    absl::string_view experiment, int64_t after_sequence, int64_t limit) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(
      Statement select,
      Statement::Prepare(
          db_, absl::StrCat("SELECT ", kAuditColumns,
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
  absl::MutexLock lock(&mu_);
  return GetAuditHeadLocked();
}

absl::StatusOr<std::pair<int64_t, std::string>>
SqliteLabelStore::GetAuditHeadLocked() {
  ASSIGN_OR_RETURN(
      Statement head,
      Statement::Prepare(db_,
                         "SELECT (SELECT value FROM metadata WHERE key = "
                         "'audit_head_seq'), (SELECT value FROM metadata "
                         "WHERE key = 'audit_head_hash')"));
  ASSIGN_OR_RETURN(bool has_head, head.Step());
  int64_t sequence = 0;
  if (!has_head || !absl::SimpleAtoi(head.Text(0), &sequence)) {
    return absl::DataLossError("audit head is missing from metadata");
  }
  return std::make_pair(sequence, head.Text(1));
}

absl::StatusOr<std::vector<RevealedRecord>> SqliteLabelStore::ListRevealed() {
  absl::MutexLock lock(&mu_);
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
