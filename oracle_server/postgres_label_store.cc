#include "oracle_server/postgres_label_store.h"

#include <libpq-fe.h>

#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "oracle_server/audit_chain.h"
#include "oracle_server/label_import.h"

namespace oracle_server {
namespace {

constexpr char kSchemaVersion[] = "2";

// Free text that callers supply (experiment names, client, strategy, detail,
// role, peer) is stored as BYTEA: PostgreSQL text cannot hold a NUL byte or
// invalid UTF-8, and one such row must not fail its whole group.
constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS metadata (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS datasets (
  split TEXT PRIMARY KEY CHECK (split IN ('train', 'test')),
  source_path TEXT NOT NULL,
  content_sha256 TEXT NOT NULL,
  count BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS labels (
  split TEXT NOT NULL CHECK (split IN ('train', 'test')),
  id BIGINT NOT NULL,
  label SMALLINT NOT NULL CHECK (label >= 0 AND label < 10),
  PRIMARY KEY (split, id)
);
CREATE TABLE IF NOT EXISTS experiments (
  id BIGSERIAL PRIMARY KEY,
  name BYTEA NOT NULL UNIQUE,
  label_budget BIGINT NOT NULL,
  token_sha256 TEXT NOT NULL,
  created_unix_micros BIGINT NOT NULL,
  evaluation_cap BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS revealed (
  experiment_id BIGINT NOT NULL REFERENCES experiments (id),
  sample_id BIGINT NOT NULL,
  audit_seq BIGINT NOT NULL,
  PRIMARY KEY (experiment_id, sample_id)
);
CREATE TABLE IF NOT EXISTS audit (
  seq BIGINT PRIMARY KEY,
  time_us BIGINT NOT NULL,
  experiment BYTEA NOT NULL,
  client BYTEA NOT NULL,
  strategy BYTEA NOT NULL,
  round INTEGER NOT NULL,
  kind TEXT NOT NULL,
  ids_asked TEXT NOT NULL,
  ids_revealed TEXT NOT NULL,
  outcome TEXT NOT NULL,
  detail BYTEA NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL,
  role BYTEA NOT NULL,
  peer BYTEA NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_experiment ON audit (experiment, seq);
INSERT INTO metadata (key, value) VALUES
  ('schema_version', '2'), ('audit_head_seq', '0'),
  ('audit_head_hash', '0000000000000000000000000000000000000000000000000000000000000000'),
  ('experiments_version', '0')
  ON CONFLICT (key) DO NOTHING;
)sql";

// Serialises schema creation and label import across processes.
constexpr char kInitLock[] =
    "SELECT pg_advisory_xact_lock(7310575183440568421)";

// Every writer (group commit or CreateExperiment) locks these rows first, in
// this order. Ends in " FOR UPDATE" (11 characters), which a read-only store
// leaves out.
constexpr char kLockStamp[] =
    "SELECT key, value FROM metadata WHERE key IN ('audit_head_hash', "
    "'audit_head_seq', 'experiments_version') ORDER BY key FOR UPDATE";

using PgResult = std::unique_ptr<PGresult, decltype(&PQclear)>;

// Maps a libpq failure to the most specific canonical code.
absl::Status PgError(PGconn* conn, const PGresult* result,
                     absl::string_view what) {
  std::string message(absl::StripTrailingAsciiWhitespace(
      result != nullptr ? PQresultErrorMessage(result) : PQerrorMessage(conn)));
  if (message.empty()) message = PQerrorMessage(conn);
  std::string full = absl::StrCat("postgres: ", what, ": ", message);
  const char* state = result != nullptr
                          ? PQresultErrorField(result, PG_DIAG_SQLSTATE)
                          : nullptr;
  if (PQstatus(conn) != CONNECTION_OK || state == nullptr) {
    return PostgresErrorStatus("", full);
  }
  return PostgresErrorStatus(state, full);
}

// Runs `sql` with text `params`; the result of a statement that succeeded.
absl::StatusOr<PgResult> Run(PGconn* conn, const std::string& sql,
                             const std::vector<std::string>& params = {}) {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const std::string& param : params) values.push_back(param.c_str());
  PgResult result(
      params.empty()
          ? PQexec(conn, sql.c_str())
          : PQexecParams(conn, sql.c_str(), static_cast<int>(params.size()),
                         nullptr, values.data(), nullptr, nullptr, 0),
      PQclear);
  const ExecStatusType status = PQresultStatus(result.get());
  if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) return result;
  return PgError(conn, result.get(), sql.substr(0, 80));
}

std::string Text(const PGresult* result, int row, int column) {
  return std::string(PQgetvalue(result, row, column),
                     PQgetlength(result, row, column));
}

absl::StatusOr<int64_t> Int(const PGresult* result, int row, int column) {
  int64_t value = 0;
  if (!absl::SimpleAtoi(Text(result, row, column), &value)) {
    return absl::DataLossError(absl::StrCat(
        "postgres: column ", PQfname(result, column), " holds a non-integer \"",
        Text(result, row, column), "\""));
  }
  return value;
}

// A BYTEA value in PostgreSQL's hex input/output format.
std::string Bytea(absl::string_view bytes) {
  return absl::StrCat("\\x", absl::BytesToHexString(bytes));
}
absl::StatusOr<std::string> FromBytea(absl::string_view text) {
  if (!absl::ConsumePrefix(&text, "\\x") || text.size() % 2 != 0) {
    return absl::DataLossError("postgres: malformed bytea value");
  }
  return absl::HexStringToBytes(text);
}
absl::StatusOr<std::string> ByteaColumn(const PGresult* result, int row,
                                        int column) {
  return FromBytea(Text(result, row, column));
}

// COPY text format: backslash, tab, newline and carriage return escaped.
void AppendCopyField(absl::string_view value, std::string* out) {
  for (char c : value) {
    switch (c) {
      case '\\':
        out->append("\\\\");
        break;
      case '\t':
        out->append("\\t");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      default:
        out->push_back(c);
    }
  }
}

// Runs `copy_sql` (COPY ... FROM STDIN) with `data` in COPY text format.
absl::Status CopyIn(PGconn* conn, const std::string& copy_sql,
                    const std::string& data) {
  PgResult start(PQexec(conn, copy_sql.c_str()), PQclear);
  if (PQresultStatus(start.get()) != PGRES_COPY_IN) {
    return PgError(conn, start.get(), copy_sql);
  }
  if (PQputCopyData(conn, data.data(), static_cast<int>(data.size())) != 1 ||
      PQputCopyEnd(conn, nullptr) != 1) {
    return PgError(conn, nullptr, copy_sql);
  }
  absl::Status status;
  while (PGresult* raw = PQgetResult(conn)) {
    PgResult result(raw, PQclear);
    if (status.ok() && PQresultStatus(raw) != PGRES_COMMAND_OK) {
      status = PgError(conn, raw, copy_sql);
    }
  }
  return status;
}



constexpr char kExperimentColumns[] =
    "id, name, label_budget, token_sha256, created_unix_micros, "
    "evaluation_cap";

absl::StatusOr<ExperimentRecord> ReadExperiment(const PGresult* result,
                                                int row) {
  ExperimentRecord record;
  ASSIGN_OR_RETURN(record.id, Int(result, row, 0));
  ASSIGN_OR_RETURN(record.name, ByteaColumn(result, row, 1));
  ASSIGN_OR_RETURN(record.label_budget, Int(result, row, 2));
  record.token_sha256 = Text(result, row, 3);
  ASSIGN_OR_RETURN(record.created_unix_micros, Int(result, row, 4));
  ASSIGN_OR_RETURN(record.evaluation_cap, Int(result, row, 5));
  return record;
}

constexpr char kAuditColumns[] =
    "seq, time_us, experiment, client, strategy, round, kind, ids_asked, "
    "ids_revealed, outcome, detail, prev_hash, hash, role, peer";

absl::StatusOr<AuditRecord> ReadAudit(const PGresult* result, int r) {
  AuditRecord row;
  ASSIGN_OR_RETURN(row.sequence, Int(result, r, 0));
  ASSIGN_OR_RETURN(row.time_unix_micros, Int(result, r, 1));
  ASSIGN_OR_RETURN(row.experiment, ByteaColumn(result, r, 2));
  ASSIGN_OR_RETURN(row.client, ByteaColumn(result, r, 3));
  ASSIGN_OR_RETURN(row.strategy, ByteaColumn(result, r, 4));
  ASSIGN_OR_RETURN(int64_t round, Int(result, r, 5));
  row.round = static_cast<int32_t>(round);
  row.kind = Text(result, r, 6);
  ASSIGN_OR_RETURN(row.ids_asked, ParseAuditIds(Text(result, r, 7), row.sequence));
  ASSIGN_OR_RETURN(row.ids_revealed,
                   ParseAuditIds(Text(result, r, 8), row.sequence));
  absl::StatusOr<Outcome> outcome = ParseOutcome(Text(result, r, 9));
  if (!outcome.ok()) {
    return absl::DataLossError(absl::StrCat("audit row ", row.sequence, ": ",
                                            outcome.status().message()));
  }
  row.outcome = *outcome;
  ASSIGN_OR_RETURN(row.detail, ByteaColumn(result, r, 10));
  row.prev_hash = Text(result, r, 11);
  row.hash = Text(result, r, 12);
  ASSIGN_OR_RETURN(row.role, ByteaColumn(result, r, 13));
  ASSIGN_OR_RETURN(row.peer, ByteaColumn(result, r, 14));
  return row;
}

// `name` ("table" or "schema.table") as a quoted SQL identifier.
absl::StatusOr<std::string> QuoteTable(PGconn* conn, absl::string_view name) {
  std::vector<std::string> parts;
  for (absl::string_view part : absl::StrSplit(name, '.')) {
    if (part.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", name, "\" is not a table name"));
    }
    char* quoted = PQescapeIdentifier(conn, part.data(), part.size());
    if (quoted == nullptr) return PgError(conn, nullptr, "escape identifier");
    parts.emplace_back(quoted);
    PQfreemem(quoted);
  }
  return absl::StrJoin(parts, ".");
}

// The datasets.source_path of labels kept in a table.
constexpr char kTablePrefix[] = "table:";

// Labels of `table` (columns id and label), with their hash.
absl::StatusOr<ImportedLabels> ReadLabelTable(PGconn* conn,
                                              const std::string& table) {
  ASSIGN_OR_RETURN(std::string quoted, QuoteTable(conn, table));
  absl::StatusOr<PgResult> read = Run(
      conn, absl::StrCat("SELECT id, label FROM ", quoted, " ORDER BY id"));
  if (absl::IsInternal(read.status())) {
    // At start: a missing table or missing columns are the operator's to fix.
    return absl::FailedPreconditionError(
        absl::StrCat("labels table ", table, ": ", read.status().message()));
  }
  ASSIGN_OR_RETURN(PgResult result, std::move(read));
  ImportedLabels imported;
  const int rows = PQntuples(result.get());
  imported.labels.reserve(rows);
  for (int row = 0; row < rows; ++row) {
    ASSIGN_OR_RETURN(int64_t id, Int(result.get(), row, 0));
    ASSIGN_OR_RETURN(int64_t label, Int(result.get(), row, 1));
    if (id != row) {
      return absl::InvalidArgumentError(
          absl::StrCat("labels table ", table,
                       ": ids must be 0, 1, ... without gaps; "
                       "found ",
                       id, " where ", row, " was expected"));
    }
    if (label < 0 || label > 255) label = 255;  // reported just below
    imported.labels.push_back(static_cast<uint8_t>(label));
  }
  RETURN_IF_ERROR(
      CheckLabelValues(absl::StrCat("labels table ", table), imported.labels));
  imported.info.source_path = absl::StrCat(kTablePrefix, table);
  imported.info.count = rows;
  imported.info.content_sha256 = LabelContentSha256(imported.labels);
  return imported;
}

// A connection the server dropped (restart, failover) is opened again before
// its next use; if that fails too, the next statement reports UNAVAILABLE.
// The session settings every connection of the store runs with.
absl::Status ApplySessionSettings(PGconn* conn, bool read_only) {
  // Durable before the reply, whatever the server's default.
  return Run(conn,
             absl::StrCat(
                 "SET synchronous_commit = on; "
                 "SET client_min_messages = warning",
                 read_only ? "; SET default_transaction_read_only = on" : ""))
      .status();
}

absl::Status ReconnectIfLost(PGconn* conn, bool read_only) {
  if (PQstatus(conn) == CONNECTION_OK) return absl::OkStatus();
  PQreset(conn);
  if (PQstatus(conn) != CONNECTION_OK) {
    return PgError(conn, nullptr, "reconnect");
  }
  return ApplySessionSettings(conn, read_only);
}

// Run, once more after reconnecting if the connection turns out to have been
// dropped (server restart): for statements that are safe to repeat because
// they start a transaction or read outside one.
absl::StatusOr<PgResult> RunReconnecting(
    PGconn* conn, bool read_only, const std::string& sql,
    const std::vector<std::string>& params = {}) {
  RETURN_IF_ERROR(ReconnectIfLost(conn, read_only));
  absl::StatusOr<PgResult> result = Run(conn, sql, params);
  if (result.ok() || PQstatus(conn) == CONNECTION_OK) return result;
  RETURN_IF_ERROR(ReconnectIfLost(conn, read_only));
  return Run(conn, sql, params);
}

absl::StatusOr<PGconn*> Connect(const std::string& conninfo, bool read_only) {
  PGconn* conn = PQconnectdb(conninfo.c_str());
  if (PQstatus(conn) != CONNECTION_OK) {
    const std::string message = absl::StrCat(
        "postgres: cannot connect (",
        absl::StripTrailingAsciiWhitespace(PQerrorMessage(conn)), ")");
    absl::Status status = absl::StrContains(message, "does not exist")
                              ? absl::NotFoundError(message)
                              : absl::UnavailableError(message);
    PQfinish(conn);
    return status;
  }
  absl::Status status = ApplySessionSettings(conn, read_only);
  if (!status.ok()) {
    PQfinish(conn);
    return status;
  }
  return conn;
}

}  // namespace

absl::Status PostgresErrorStatus(absl::string_view sqlstate,
                                 absl::string_view message) {
  if (sqlstate.empty() || absl::StartsWith(sqlstate, "08") ||
      absl::StartsWith(sqlstate, "40") || absl::StartsWith(sqlstate, "53") ||
      absl::StartsWith(sqlstate, "57") || sqlstate == "55P03" ||
      sqlstate == "25006") {
    return absl::UnavailableError(message);
  }
  if (sqlstate == "XX001" || sqlstate == "XX002") {
    return absl::DataLossError(message);
  }
  return absl::InternalError(message);
}

// A group's write transaction, open on the write connection.
class PostgresLabelStore::Transaction final : public LedgerTransaction {
 public:
  explicit Transaction(PostgresLabelStore* store) : store_(store) {}

  absl::StatusOr<LedgerStamp> ReadStamp() override {
    store_->write_mu_.AssertHeld();
    return store_->LockStampLocked();
  }
  absl::StatusOr<LedgerSnapshot> LoadSnapshot() override {
    store_->write_mu_.AssertHeld();
    return store_->LoadSnapshotLocked();
  }
  absl::Status WriteGroup(const GroupWrite& write) override {
    store_->write_mu_.AssertHeld();
    return store_->WriteGroupLocked(write);
  }

 private:
  PostgresLabelStore* const store_;
};

absl::StatusOr<std::unique_ptr<PostgresLabelStore>> PostgresLabelStore::Open(
    const PostgresStoreOptions& options) {
  if (options.max_group_size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_group_size must be positive, got ", options.max_group_size));
  }
  if (options.labels_table.empty() != options.test_labels_table.empty()) {
    return absl::InvalidArgumentError(
        "labels_table and test_labels_table go together");
  }
  ASSIGN_OR_RETURN(PGconn * write_conn,
                   Connect(options.conninfo, options.read_only));
  absl::StatusOr<PGconn*> read_conn = Connect(options.conninfo, true);
  if (!read_conn.ok()) {
    PQfinish(write_conn);
    return read_conn.status();
  }
  std::unique_ptr<PostgresLabelStore> store(
      new PostgresLabelStore(options, write_conn, *read_conn));
  absl::MutexLock lock(&store->write_mu_);
  RETURN_IF_ERROR(store->Initialize());
  return store;
}

PostgresLabelStore::PostgresLabelStore(const PostgresStoreOptions& options,
                                       PGconn* write_conn, PGconn* read_conn)
    : options_(options), write_conn_(write_conn), read_conn_(read_conn) {}

PostgresLabelStore::~PostgresLabelStore() {
  // Commits (or fails) and completes every queued write first.
  ledger_.reset();
  absl::MutexLock write_lock(&write_mu_);
  absl::MutexLock read_lock(&read_mu_);
  PQfinish(write_conn_);
  PQfinish(read_conn_);
}

absl::Status PostgresLabelStore::Initialize() {
  // The labels each split is checked against (or imported from).
  std::optional<ImportedLabels> given[2];
  if (!options_.read_only) {
    if (!options_.labels_table.empty()) {
      ASSIGN_OR_RETURN(given[0],
                       ReadLabelTable(write_conn_, options_.labels_table));
      ASSIGN_OR_RETURN(given[1],
                       ReadLabelTable(write_conn_, options_.test_labels_table));
    } else {
      if (!options_.train_labels_path.empty()) {
        ASSIGN_OR_RETURN(given[0], ReadLabelFile(options_.train_labels_path,
                                                 options_.train_count));
      }
      if (!options_.test_labels_path.empty()) {
        ASSIGN_OR_RETURN(given[1], ReadLabelFile(options_.test_labels_path,
                                                 options_.test_count));
      }
    }
    RETURN_IF_ERROR(InTransactionLocked(
        [&]() -> absl::Status {
          RETURN_IF_ERROR(Run(write_conn_, kInitLock).status());
          RETURN_IF_ERROR(Run(write_conn_, kSchema).status());
          for (Split split : {Split::kTrain, Split::kTest}) {
            const std::optional<ImportedLabels>& file =
                given[split == Split::kTrain ? 0 : 1];
            ASSIGN_OR_RETURN(
                PgResult existing,
                Run(write_conn_,
                    "SELECT source_path, content_sha256, count FROM datasets "
                    "WHERE split = $1",
                    {std::string(SplitName(split))}));
            if (PQntuples(existing.get()) > 0) {
              const std::string source = Text(existing.get(), 0, 0);
              const std::string sha = Text(existing.get(), 0, 1);
              const std::string count = Text(existing.get(), 0, 2);
              if (file.has_value() &&
                  (sha != file->info.content_sha256 ||
                   count != absl::StrCat(file->info.count))) {
                return absl::FailedPreconditionError(absl::StrCat(
                    "database ", PQdb(write_conn_), " holds ", SplitName(split),
                    " labels imported from ", source, " (", count,
                    " labels, sha256 ", sha, ") but ", file->info.source_path,
                    " differs (", file->info.count, " labels, sha256 ",
                    file->info.content_sha256,
                    "); use the original labels or a new database"));
              }
              continue;
            }
            if (!file.has_value()) {
              return absl::FailedPreconditionError(absl::StrCat(
                  "database ", PQdb(write_conn_), " has no ", SplitName(split),
                  " labels and no label file was given"));
            }
            RETURN_IF_ERROR(
                Run(write_conn_,
                    "INSERT INTO datasets (split, source_path, "
                    "content_sha256, count) VALUES ($1, $2, $3, $4)",
                    {std::string(SplitName(split)), file->info.source_path,
                     file->info.content_sha256, absl::StrCat(file->info.count)})
                    .status());
            if (absl::StartsWith(file->info.source_path, kTablePrefix)) {
              continue;  // the labels stay in their table
            }
            std::string data;
            data.reserve(file->labels.size() * 12);
            for (size_t id = 0; id < file->labels.size(); ++id) {
              absl::StrAppend(&data, SplitName(split), "\t", id, "\t",
                              file->labels[id], "\n");
            }
            RETURN_IF_ERROR(CopyIn(write_conn_,
                                   "COPY labels (split, id, label) FROM STDIN",
                                   data));
          }
          return absl::OkStatus();
        },
        /*with_hook=*/false));
  }
  {
    absl::StatusOr<PgResult> version = Run(
        write_conn_, "SELECT value FROM metadata WHERE key = 'schema_version'");
    if (!version.ok() || PQntuples(version->get()) != 1 ||
        Text(version->get(), 0, 0) != kSchemaVersion) {
      return absl::FailedPreconditionError(absl::StrCat(
          "database ", PQdb(write_conn_),
          " has no label oracle schema of version ", kSchemaVersion));
    }
  }
  // The labels as the database describes them, checked against the hash
  // recorded at import whatever their source.
  for (Split split : {Split::kTrain, Split::kTest}) {
    ASSIGN_OR_RETURN(PgResult source,
                     Run(write_conn_,
                         "SELECT source_path, content_sha256, count FROM "
                         "datasets WHERE split = $1",
                         {std::string(SplitName(split))}));
    if (PQntuples(source.get()) != 1) {
      return absl::FailedPreconditionError(
          absl::StrCat("database ", PQdb(write_conn_), " has no ",
                       SplitName(split), " labels"));
    }
    DatasetSplitInfo recorded;
    recorded.source_path = Text(source.get(), 0, 0);
    recorded.content_sha256 = Text(source.get(), 0, 1);
    ASSIGN_OR_RETURN(recorded.count, Int(source.get(), 0, 2));
    std::vector<uint8_t>& labels =
        split == Split::kTrain ? train_labels_ : test_labels_;
    absl::string_view table = recorded.source_path;
    if (absl::ConsumePrefix(&table, kTablePrefix)) {
      ASSIGN_OR_RETURN(ImportedLabels imported,
                       ReadLabelTable(write_conn_, std::string(table)));
      labels = std::move(imported.labels);
      RETURN_IF_ERROR(CheckLabelsMatchRecord(
          absl::StrCat("labels table ", table), split, recorded, labels));
      continue;
    }
    ASSIGN_OR_RETURN(
        PgResult rows,
        Run(write_conn_,
            "SELECT id, label FROM labels WHERE split = $1 ORDER BY id",
            {std::string(SplitName(split))}));
    const int count = PQntuples(rows.get());
    labels.reserve(count);
    for (int row = 0; row < count; ++row) {
      ASSIGN_OR_RETURN(int64_t id, Int(rows.get(), row, 0));
      ASSIGN_OR_RETURN(int64_t label, Int(rows.get(), row, 1));
      if (id != row) {
        return absl::DataLossError(absl::StrCat("database ", PQdb(write_conn_),
                                                ": ", SplitName(split),
                                                " label ", row, " is missing"));
      }
      labels.push_back(static_cast<uint8_t>(label));
    }
    RETURN_IF_ERROR(CheckLabelsMatchRecord(
        absl::StrCat("database ", PQdb(write_conn_)), split, recorded, labels));
  }
  LedgerOptions ledger_options;
  ledger_options.train_count = static_cast<int64_t>(train_labels_.size());
  ledger_options.max_group_size = options_.max_group_size;
  ledger_ = std::make_unique<StoreLedger>(ledger_options,
                                          static_cast<LedgerBackend*>(this));
  LedgerSnapshot snapshot;
  RETURN_IF_ERROR(InTransactionLocked(
      [&]() -> absl::Status {
        ASSIGN_OR_RETURN(snapshot, LoadSnapshotLocked());
        return absl::OkStatus();
      },
      /*with_hook=*/false));
  ledger_->Reset(snapshot);
  return absl::OkStatus();
}

absl::Status PostgresLabelStore::CheckWritable() const {
  if (options_.read_only) {
    return absl::FailedPreconditionError("postgres store is open read-only");
  }
  return absl::OkStatus();
}

absl::Status PostgresLabelStore::InTransactionLocked(
    const std::function<absl::Status()>& body, bool with_hook) {
  RETURN_IF_ERROR(
      RunReconnecting(write_conn_, options_.read_only, "BEGIN").status());
  absl::Status status = body();
  if (status.ok() && with_hook && options_.before_commit) {
    status = options_.before_commit();
  }
  if (status.ok()) {
    // COMMIT of a transaction that failed inside reports ROLLBACK as OK;
    // every statement above was checked, so that cannot happen here.
    status = Run(write_conn_, "COMMIT").status();
    if (status.ok()) return status;
  }
  if (PQtransactionStatus(write_conn_) != PQTRANS_IDLE) {
    Run(write_conn_, "ROLLBACK").IgnoreError();
  }
  return status;
}

absl::StatusOr<LedgerStamp> PostgresLabelStore::LockStampLocked() {
  // A read-only store takes no lock (it never writes).
  ASSIGN_OR_RETURN(
      PgResult result,
      Run(write_conn_, options_.read_only
                           ? std::string(kLockStamp, sizeof(kLockStamp) - 12)
                           : std::string(kLockStamp)));
  if (PQntuples(result.get()) != 3) {
    return absl::DataLossError("audit head is missing from metadata");
  }
  LedgerStamp stamp;
  // Ordered by key: audit_head_hash, audit_head_seq, experiments_version.
  stamp.head_hash = Text(result.get(), 0, 1);
  if (!absl::SimpleAtoi(Text(result.get(), 1, 1), &stamp.head_sequence) ||
      !absl::SimpleAtoi(Text(result.get(), 2, 1), &stamp.experiments_version)) {
    return absl::DataLossError("audit head in metadata is not a number");
  }
  return stamp;
}

absl::StatusOr<LedgerSnapshot> PostgresLabelStore::LoadSnapshotLocked() {
  LedgerSnapshot snapshot;
  ASSIGN_OR_RETURN(snapshot.stamp, LockStampLocked());
  {
    ASSIGN_OR_RETURN(
        PgResult result,
        Run(write_conn_,
            absl::StrCat("SELECT ", kExperimentColumns, " FROM experiments")));
    for (int row = 0; row < PQntuples(result.get()); ++row) {
      ASSIGN_OR_RETURN(ExperimentRecord record,
                       ReadExperiment(result.get(), row));
      snapshot.experiments.push_back(std::move(record));
    }
  }
  {
    ASSIGN_OR_RETURN(
        PgResult result,
        Run(write_conn_, "SELECT experiment_id, sample_id FROM revealed"));
    const int rows = PQntuples(result.get());
    snapshot.revealed.reserve(rows);
    for (int row = 0; row < rows; ++row) {
      ASSIGN_OR_RETURN(int64_t experiment_id, Int(result.get(), row, 0));
      ASSIGN_OR_RETURN(int64_t sample_id, Int(result.get(), row, 1));
      snapshot.revealed.emplace_back(experiment_id, sample_id);
    }
  }
  {
    ASSIGN_OR_RETURN(
        PgResult result,
        Run(write_conn_,
            "SELECT experiment, kind, outcome, peer, COUNT(*) FROM audit "
            "GROUP BY experiment, kind, outcome, peer"));
    for (int row = 0; row < PQntuples(result.get()); ++row) {
      LedgerSnapshot::AuditCount& count = snapshot.audit_counts.emplace_back();
      ASSIGN_OR_RETURN(count.experiment, ByteaColumn(result.get(), row, 0));
      count.kind = Text(result.get(), row, 1);
      count.outcome = Text(result.get(), row, 2);
      ASSIGN_OR_RETURN(count.peer, ByteaColumn(result.get(), row, 3));
      ASSIGN_OR_RETURN(count.count, Int(result.get(), row, 4));
    }
  }
  return snapshot;
}

absl::Status PostgresLabelStore::WriteGroupLocked(const GroupWrite& write) {
  std::string audit;
  for (const AuditRecord& row : write.rows) {
    const std::string fields[] = {absl::StrCat(row.sequence),
                                  absl::StrCat(row.time_unix_micros),
                                  Bytea(row.experiment),
                                  Bytea(row.client),
                                  Bytea(row.strategy),
                                  absl::StrCat(row.round),
                                  row.kind,
                                  FormatAuditIds(row.ids_asked),
                                  FormatAuditIds(row.ids_revealed),
                                  std::string(OutcomeName(row.outcome)),
                                  Bytea(row.detail),
                                  row.prev_hash,
                                  row.hash,
                                  Bytea(row.role),
                                  Bytea(row.peer)};
    for (size_t i = 0; i < std::size(fields); ++i) {
      if (i > 0) audit.push_back('\t');
      AppendCopyField(fields[i], &audit);
    }
    audit.push_back('\n');
  }
  RETURN_IF_ERROR(CopyIn(
      write_conn_, absl::StrCat("COPY audit (", kAuditColumns, ") FROM STDIN"),
      audit));
  if (!write.revealed.empty()) {
    std::string revealed;
    revealed.reserve(write.revealed.size() * 24);
    for (const RevealedRecord& record : write.revealed) {
      absl::StrAppend(&revealed, record.experiment_id, "\t", record.sample_id,
                      "\t", record.audit_sequence, "\n");
    }
    RETURN_IF_ERROR(
        CopyIn(write_conn_,
               "COPY revealed (experiment_id, sample_id, audit_seq) FROM STDIN",
               revealed));
  }
  return Run(write_conn_,
             "UPDATE metadata SET value = CASE key WHEN 'audit_head_seq' "
             "THEN $1 ELSE $2 END WHERE key IN ('audit_head_seq', "
             "'audit_head_hash')",
             {absl::StrCat(write.rows.back().sequence), write.rows.back().hash})
      .status();
}

absl::Status PostgresLabelStore::InWriteTransaction(
    absl::FunctionRef<absl::Status(LedgerTransaction&)> body) {
  absl::MutexLock lock(&write_mu_);
  Transaction transaction(this);
  return InTransactionLocked([&] { return body(transaction); },
                             /*with_hook=*/true);
}

absl::StatusOr<DatasetInfo> PostgresLabelStore::GetDatasetInfo() {
  absl::MutexLock lock(&read_mu_);
  ASSIGN_OR_RETURN(
      PgResult result,
      RunReconnecting(
          read_conn_, /*read_only=*/true,
          "SELECT split, source_path, content_sha256, count FROM datasets"));
  DatasetInfo info;
  for (int row = 0; row < PQntuples(result.get()); ++row) {
    DatasetSplitInfo& split =
        Text(result.get(), row, 0) == SplitName(Split::kTrain) ? info.train
                                                               : info.test;
    split.source_path = Text(result.get(), row, 1);
    split.content_sha256 = Text(result.get(), row, 2);
    ASSIGN_OR_RETURN(split.count, Int(result.get(), row, 3));
  }
  return info;
}

absl::StatusOr<std::vector<uint8_t>> PostgresLabelStore::LoadLabels(
    Split split) {
  return split == Split::kTrain ? train_labels_ : test_labels_;
}

absl::StatusOr<ExperimentRecord> PostgresLabelStore::CreateExperiment(
    const ExperimentRecord& experiment, bool* created) {
  RETURN_IF_ERROR(CheckWritable());
  absl::MutexLock lock(&write_mu_);
  ExperimentRecord stored;
  bool inserted = false;
  LedgerStamp seen;
  RETURN_IF_ERROR(InTransactionLocked(
      [&]() -> absl::Status {
        ASSIGN_OR_RETURN(seen, LockStampLocked());
        ASSIGN_OR_RETURN(PgResult existing,
                         Run(write_conn_,
                             absl::StrCat("SELECT ", kExperimentColumns,
                                          " FROM experiments WHERE name = $1"),
                             {Bytea(experiment.name)}));
        if (PQntuples(existing.get()) > 0) {
          ASSIGN_OR_RETURN(stored, ReadExperiment(existing.get(), 0));
          return absl::OkStatus();
        }
        stored = experiment;
        stored.created_unix_micros = absl::ToUnixMicros(absl::Now());
        ASSIGN_OR_RETURN(
            PgResult id,
            Run(write_conn_,
                "INSERT INTO experiments (name, label_budget, token_sha256, "
                "created_unix_micros, evaluation_cap) VALUES ($1, $2, $3, $4, "
                "$5) RETURNING id",
                {Bytea(stored.name), absl::StrCat(stored.label_budget),
                 stored.token_sha256, absl::StrCat(stored.created_unix_micros),
                 absl::StrCat(stored.evaluation_cap)}));
        ASSIGN_OR_RETURN(stored.id, Int(id.get(), 0, 0));
        inserted = true;
        // Every other process's ledger reloads at its next write.
        return Run(write_conn_,
                   "UPDATE metadata SET value = (value::BIGINT + 1)::TEXT "
                   "WHERE key = 'experiments_version'")
            .status();
      },
      /*with_hook=*/false));
  if (inserted) {
    // This one's ledger need not reload if nobody else wrote since it did.
    LedgerStamp after = seen;
    ++after.experiments_version;
    ledger_->AddExperimentIfAt(stored, seen, after);
  }
  if (created != nullptr) *created = inserted;
  return stored;
}

absl::StatusOr<ExperimentRecord> PostgresLabelStore::GetExperiment(
    absl::string_view name) {
  absl::MutexLock lock(&read_mu_);
  ASSIGN_OR_RETURN(
      PgResult result,
      RunReconnecting(read_conn_, /*read_only=*/true,
                      absl::StrCat("SELECT ", kExperimentColumns,
                                   " FROM experiments WHERE name = $1"),
                      {Bytea(name)}));
  if (PQntuples(result.get()) == 0) {
    return absl::NotFoundError(
        absl::StrCat("no experiment named \"", name, "\""));
  }
  return ReadExperiment(result.get(), 0);
}

absl::StatusOr<std::vector<ExperimentRecord>>
PostgresLabelStore::ListExperiments() {
  absl::MutexLock lock(&read_mu_);
  ASSIGN_OR_RETURN(
      PgResult result,
      RunReconnecting(read_conn_, /*read_only=*/true,
                      absl::StrCat("SELECT ", kExperimentColumns,
                                   " FROM experiments ORDER BY id")));
  std::vector<ExperimentRecord> experiments;
  for (int row = 0; row < PQntuples(result.get()); ++row) {
    ASSIGN_OR_RETURN(ExperimentRecord record,
                     ReadExperiment(result.get(), row));
    experiments.push_back(std::move(record));
  }
  return experiments;
}

absl::StatusOr<ExperimentUsage> PostgresLabelStore::GetUsage(
    absl::string_view name) {
  absl::MutexLock lock(&read_mu_);
  // One statement: one snapshot of every process's commits.
  ASSIGN_OR_RETURN(
      PgResult result,
      RunReconnecting(
          read_conn_, /*read_only=*/true,
          "SELECT (SELECT COUNT(*) FROM revealed r WHERE r.experiment_id = "
          "e.id), "
          "(SELECT COUNT(*) FROM audit a WHERE a.experiment = e.name AND "
          "a.kind = 'query' AND a.outcome = 'GRANTED'), "
          "(SELECT COUNT(*) FROM audit a WHERE a.experiment = e.name AND "
          "a.kind = 'query' AND a.outcome LIKE 'DENIED%'), "
          "(SELECT COUNT(*) FROM audit a WHERE a.experiment = e.name AND "
          "a.kind = 'evaluate' AND a.outcome = 'EVALUATED') "
          "FROM experiments e WHERE e.name = $1",
          {Bytea(name)}));
  if (PQntuples(result.get()) == 0) {
    return absl::NotFoundError(
        absl::StrCat("no experiment named \"", name, "\""));
  }
  ExperimentUsage usage;
  ASSIGN_OR_RETURN(usage.spent, Int(result.get(), 0, 0));
  ASSIGN_OR_RETURN(usage.requests_granted, Int(result.get(), 0, 1));
  ASSIGN_OR_RETURN(usage.requests_denied, Int(result.get(), 0, 2));
  ASSIGN_OR_RETURN(usage.evaluations, Int(result.get(), 0, 3));
  return usage;
}

absl::StatusOr<std::vector<AuditRecord>> PostgresLabelStore::ListAudit(
    absl::string_view experiment, int64_t after_sequence, int64_t limit) {
  absl::MutexLock lock(&read_mu_);
  ASSIGN_OR_RETURN(
      PgResult result,
      RunReconnecting(
          read_conn_, /*read_only=*/true,
          absl::StrCat("SELECT ", kAuditColumns,
                       " FROM audit WHERE seq > $1 AND ($2 = '\\x'::BYTEA OR "
                       "experiment = $2) ORDER BY seq LIMIT $3"),
          {absl::StrCat(after_sequence), Bytea(experiment),
           absl::StrCat(limit)}));
  std::vector<AuditRecord> rows;
  rows.reserve(PQntuples(result.get()));
  for (int row = 0; row < PQntuples(result.get()); ++row) {
    ASSIGN_OR_RETURN(AuditRecord record, ReadAudit(result.get(), row));
    rows.push_back(std::move(record));
  }
  return rows;
}

absl::StatusOr<std::pair<int64_t, std::string>>
PostgresLabelStore::GetAuditHead() {
  absl::MutexLock lock(&read_mu_);
  ASSIGN_OR_RETURN(
      PgResult result,
      RunReconnecting(
          read_conn_, /*read_only=*/true,
          "SELECT (SELECT value FROM metadata WHERE key = 'audit_head_seq'), "
          "(SELECT value FROM metadata WHERE key = 'audit_head_hash')"));
  int64_t sequence = 0;
  if (PQntuples(result.get()) != 1 ||
      !absl::SimpleAtoi(Text(result.get(), 0, 0), &sequence)) {
    return absl::DataLossError("audit head is missing from metadata");
  }
  return std::make_pair(sequence, Text(result.get(), 0, 1));
}

absl::StatusOr<std::vector<RevealedRecord>> PostgresLabelStore::ListRevealed() {
  absl::MutexLock lock(&read_mu_);
  ASSIGN_OR_RETURN(
      PgResult result,
      RunReconnecting(read_conn_, /*read_only=*/true,
                      "SELECT experiment_id, sample_id, audit_seq FROM "
                      "revealed ORDER BY experiment_id, sample_id"));
  std::vector<RevealedRecord> revealed;
  revealed.reserve(PQntuples(result.get()));
  for (int row = 0; row < PQntuples(result.get()); ++row) {
    RevealedRecord& record = revealed.emplace_back();
    ASSIGN_OR_RETURN(record.experiment_id, Int(result.get(), row, 0));
    ASSIGN_OR_RETURN(record.sample_id, Int(result.get(), row, 1));
    ASSIGN_OR_RETURN(record.audit_sequence, Int(result.get(), row, 2));
  }
  return revealed;
}

}  // namespace oracle_server
