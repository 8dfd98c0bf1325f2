// Fuzzes audit-row decoding (SqliteLabelStore::ListAudit), the hash-chain
// verifier (VerifyAuditLog), oraclectl's log/summary/verify printers and a
// store reopened for writing, on databases whose experiments, audit rows,
// revealed rows and audit head are written from the fuzz input by raw SQL.
//
// Each input starts from a copy of a template database (the real schema and
// labels). Column values come from the input by column name, so new columns
// are fuzzed as text without changes here. Optionally the fuzzer re-hashes
// the decoded rows into a valid chain and records a matching head and
// revealed table, so the verifier's later checks are reached too. Choices
// are laid out so that an exhausted input (FuzzedDataProvider then yields
// zeros) takes the valid path. Nothing may crash; read errors must be
// DATA_LOSS.
#include <fuzzer/FuzzedDataProvider.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "fuzz/fuzz_support.h"
#include "oracle_server/audit_chain.h"
#include "oracle_server/oraclectl.h"
#include "oracle_server/sqlite_label_store.h"

namespace {

using oracle_server::AuditRecord;
using oracle_server::SqliteLabelStore;
using oracle_server::StoreOptions;

constexpr uint32_t kTrainCount = 64;
constexpr uint32_t kTestCount = 10;
const char* const kNames[] = {"e0", "e1", "e2", "e3"};
const char* const kKinds[] = {"query", "evaluate"};
const char* const kOutcomes[] = {"GRANTED", "DENIED_BUDGET", "DENIED_INVALID",
                                 "EVALUATED", "DENIED_EVALUATION_CAP"};

struct Column {
  std::string name;
  bool integer;
};

struct Template {
  std::string db_path;  // the copy each input works on
  std::string bytes;    // the template database file
  std::vector<Column> experiment_columns;
  std::vector<Column> audit_columns;
};

sqlite3* OpenRaw(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) !=
      SQLITE_OK) {
    fuzz::Fail("cannot open " + path);
  }
  return db;
}

void ExecOrDie(sqlite3* db, const char* sql) {
  if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) {
    fuzz::Fail(absl::StrCat(sql, ": ", sqlite3_errmsg(db)));
  }
}

std::vector<Column> Columns(sqlite3* db, const char* table) {
  sqlite3_stmt* stmt = nullptr;
  sqlite3_prepare_v2(db, absl::StrCat("PRAGMA table_info(", table, ")").c_str(),
                     -1, &stmt, nullptr);
  std::vector<Column> columns;
  while (sqlite3_step(stmt) == SQLITE_ROW) {
    const std::string type =
        reinterpret_cast<const char*>(sqlite3_column_text(stmt, 2));
    columns.push_back(
        {reinterpret_cast<const char*>(sqlite3_column_text(stmt, 1)),
         type == "INTEGER"});
  }
  sqlite3_finalize(stmt);
  if (columns.empty()) fuzz::Fail(absl::StrCat("no columns in ", table));
  return columns;
}

const Template& GetTemplate() {
  static const Template* t = [] {
    auto* result = new Template;
    const std::string dir = fuzz::ScratchDir();
    StoreOptions options;
    options.db_path = dir + "/template.db";
    options.train_labels_path = dir + "/audit-train-labels.idx";
    options.test_labels_path = dir + "/audit-test-labels.idx";
    options.train_count = kTrainCount;
    options.test_count = kTestCount;
    fuzz::WriteIdxLabels(options.train_labels_path, kTrainCount);
    fuzz::WriteIdxLabels(options.test_labels_path, kTestCount);
    {
      auto store = SqliteLabelStore::Open(options);
      if (!store.ok()) fuzz::Fail("template: " + store.status().ToString());
    }
    sqlite3* db = OpenRaw(options.db_path);
    ExecOrDie(db, "PRAGMA journal_mode = DELETE");
    result->experiment_columns = Columns(db, "experiments");
    result->audit_columns = Columns(db, "audit");
    sqlite3_close(db);
    std::ifstream in(options.db_path, std::ios::binary);
    result->bytes.assign(std::istreambuf_iterator<char>(in), {});
    result->db_path = dir + "/work.db";
    return result;
  }();
  return *t;
}

void RemoveDatabase(const std::string& path) {
  for (const char* suffix : {"", "-journal", "-wal", "-shm"}) {
    unlink((path + suffix).c_str());
  }
}

// Runs `sql` with `values` bound in order (int64 or text); ignores failures
// (constraint violations are expected from fuzzed values).
struct Value {
  bool integer = false;
  int64_t number = 0;
  std::string text;
};

void Run(sqlite3* db, const std::string& sql,
         const std::vector<Value>& values) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
    fuzz::Fail(absl::StrCat(sql, ": ", sqlite3_errmsg(db)));
  }
  for (size_t i = 0; i < values.size(); ++i) {
    const int index = static_cast<int>(i) + 1;
    if (values[i].integer) {
      sqlite3_bind_int64(stmt, index, values[i].number);
    } else {
      sqlite3_bind_text(stmt, index, values[i].text.data(),
                        static_cast<int>(values[i].text.size()),
                        SQLITE_TRANSIENT);
    }
  }
  sqlite3_step(stmt);
  sqlite3_finalize(stmt);
}

Value Int(int64_t n) { return Value{true, n, ""}; }
Value Text(std::string s) { return Value{false, 0, std::move(s)}; }

std::string IdList(FuzzedDataProvider& in) {
  if (in.ConsumeBool()) return in.ConsumeRandomLengthString(32);
  std::vector<int64_t> ids(in.ConsumeIntegralInRange<size_t>(0, 6));
  for (int64_t& id : ids) {
    id = in.ConsumeBool() ? in.ConsumeIntegral<int64_t>()
                          : in.ConsumeIntegralInRange<int64_t>(0, kTrainCount);
  }
  return absl::StrJoin(ids, ",");
}

std::string OneOf(FuzzedDataProvider& in, const char* const* choices,
                  size_t n) {
  const size_t pick = in.ConsumeIntegralInRange<size_t>(0, n);
  return pick < n ? choices[pick] : in.ConsumeRandomLengthString(16);
}

void InsertRows(FuzzedDataProvider& in, const Template& t, sqlite3* db) {
  const size_t experiments = in.ConsumeIntegralInRange<size_t>(0, 4);
  for (size_t e = 0; e < experiments; ++e) {
    std::vector<std::string> names;
    std::vector<Value> values;
    for (const Column& column : t.experiment_columns) {
      names.push_back(column.name);
      if (column.name == "id") {
        values.push_back(Int(in.ConsumeBool() ? in.ConsumeIntegral<int64_t>()
                                              : static_cast<int64_t>(e + 1)));
      } else if (column.name == "name") {
        values.push_back(Text(OneOf(in, kNames, 4)));
      } else if (column.name == "label_budget") {
        values.push_back(Int(16 - in.ConsumeIntegralInRange<int64_t>(0, 17)));
      } else if (column.name == "token_sha256") {
        values.push_back(
            Text(in.ConsumeBool() ? "" : in.ConsumeRandomLengthString(70)));
      } else if (column.integer) {
        values.push_back(Int(in.ConsumeIntegral<int64_t>()));
      } else {
        values.push_back(Text(in.ConsumeRandomLengthString(16)));
      }
    }
    Run(db,
        absl::StrCat(
            "INSERT OR IGNORE INTO experiments (", absl::StrJoin(names, ", "),
            ") VALUES (",
            absl::StrJoin(std::vector<std::string>(names.size(), "?"), ", "),
            ")"),
        values);
  }

  const size_t rows = in.ConsumeIntegralInRange<size_t>(0, 24);
  for (size_t r = 0; r < rows; ++r) {
    std::vector<std::string> names;
    std::vector<Value> values;
    for (const Column& column : t.audit_columns) {
      names.push_back(column.name);
      const std::string& c = column.name;
      if (c == "seq") {
        values.push_back(Int(in.ConsumeBool() ? in.ConsumeIntegral<int64_t>()
                                              : static_cast<int64_t>(r + 1)));
      } else if (c == "experiment") {
        values.push_back(Text(OneOf(in, kNames, 4)));
      } else if (c == "kind") {
        values.push_back(Text(OneOf(in, kKinds, 2)));
      } else if (c == "outcome") {
        values.push_back(Text(OneOf(in, kOutcomes, 5)));
      } else if (c == "ids_asked" || c == "ids_revealed") {
        values.push_back(Text(IdList(in)));
      } else if (c == "prev_hash" || c == "hash") {
        values.push_back(
            Text(in.ConsumeBool() ? "" : in.ConsumeRandomLengthString(70)));
      } else if (column.integer) {
        values.push_back(Int(in.ConsumeIntegral<int64_t>()));
      } else {
        values.push_back(Text(in.ConsumeRandomLengthString(16)));
      }
    }
    Run(db,
        absl::StrCat(
            "INSERT OR IGNORE INTO audit (", absl::StrJoin(names, ", "),
            ") VALUES (",
            absl::StrJoin(std::vector<std::string>(names.size(), "?"), ", "),
            ")"),
        values);
  }

  const size_t revealed = in.ConsumeIntegralInRange<size_t>(0, 4);
  for (size_t i = 0; i < revealed; ++i) {
    Run(db,
        "INSERT OR IGNORE INTO revealed (experiment_id, sample_id, audit_seq) "
        "VALUES (?, ?, ?)",
        {Int(in.ConsumeIntegralInRange<int64_t>(0, 5)),
         Int(in.ConsumeIntegralInRange<int64_t>(-1, kTrainCount)),
         Int(in.ConsumeIntegralInRange<int64_t>(0, 25))});
  }
}

// Rewrites prev_hash and hash of the decoded `rows` into a valid chain
// (except where the input says to leave a row alone), records the head, and
// adds the revealed rows that GRANTED rows list.
void Rechain(FuzzedDataProvider& in, SqliteLabelStore& store,
             const std::vector<AuditRecord>& rows, sqlite3* db) {
  std::string prev_hash = oracle_server::kGenesisHash;
  int64_t last_sequence = 0;
  for (const AuditRecord& row : rows) {
    std::string hash = row.hash;
    if (!in.ConsumeBool() || in.ConsumeBool()) {
      hash = oracle_server::AuditRowHash(prev_hash, row);
      Run(db, "UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?",
          {Text(prev_hash), Text(hash), Int(row.sequence)});
    }
    prev_hash = hash;
    last_sequence = row.sequence;
  }
  if (!in.ConsumeBool() || in.ConsumeBool()) {
    Run(db, "UPDATE metadata SET value = ? WHERE key = 'audit_head_seq'",
        {Text(absl::StrCat(last_sequence))});
    Run(db, "UPDATE metadata SET value = ? WHERE key = 'audit_head_hash'",
        {Text(prev_hash)});
  } else {
    Run(db, "UPDATE metadata SET value = ? WHERE key = ?",
        {Text(in.ConsumeRandomLengthString(70)),
         Text(in.ConsumeBool() ? "audit_head_seq" : "audit_head_hash")});
  }
  if (in.ConsumeBool()) return;
  auto experiments = store.ListExperiments();
  if (!experiments.ok()) return;
  std::map<std::string, int64_t> ids;
  for (const auto& experiment : *experiments) {
    ids[experiment.name] = experiment.id;
  }
  for (const AuditRecord& row : rows) {
    auto id = ids.find(row.experiment);
    if (row.outcome != oracle_server::Outcome::kGranted || id == ids.end()) {
      continue;
    }
    for (int64_t sample : row.ids_revealed) {
      Run(db,
          "INSERT OR IGNORE INTO revealed (experiment_id, sample_id, "
          "audit_seq) VALUES (?, ?, ?)",
          {Int(id->second), Int(sample), Int(row.sequence)});
    }
  }
}

void CheckReadStatus(const absl::Status& status, const char* what) {
  if (!status.ok() && status.code() != absl::StatusCode::kDataLoss) {
    fuzz::Fail(absl::StrCat(what, ": ", status.ToString()));
  }
}

void VerifyAndPrint(SqliteLabelStore& store) {
  auto verified = oracle_server::VerifyAuditLog(store);
  CheckReadStatus(verified.status(), "VerifyAuditLog");
  if (verified.ok() && !verified->ok &&
      (verified->reason.empty() || verified->rows_verified < 0)) {
    fuzz::Fail("a failed verification without a reason");
  }
  std::ostringstream out;
  for (auto format :
       {oracle_server::LogFormat::kTable, oracle_server::LogFormat::kCsv,
        oracle_server::LogFormat::kJsonl}) {
    CheckReadStatus(oracle_server::PrintLog(store, "", format, out),
                    "PrintLog");
  }
  CheckReadStatus(oracle_server::PrintSummary(store, out), "PrintSummary");
  CheckReadStatus(oracle_server::PrintVerification(store, out).status(),
                  "PrintVerification");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Template& t = GetTemplate();
  FuzzedDataProvider in(data, size);
  RemoveDatabase(t.db_path);
  fuzz::WriteFile(t.db_path, t.bytes.data(), t.bytes.size());

  sqlite3* db = OpenRaw(t.db_path);
  ExecOrDie(db, "PRAGMA synchronous = OFF");
  InsertRows(in, t, db);

  StoreOptions options;
  options.db_path = t.db_path;
  options.train_labels_path = "";
  options.test_labels_path = "";
  options.read_only = true;
  {
    auto store = SqliteLabelStore::Open(options);
    if (!store.ok()) {
      sqlite3_close(db);
      CheckReadStatus(store.status(), "Open read-only");
      return 0;
    }
    auto rows = (*store)->ListAudit("", 0, 1000);
    CheckReadStatus(rows.status(), "ListAudit");
    if (rows.ok()) Rechain(in, **store, *rows, db);
    sqlite3_close(db);
    VerifyAndPrint(**store);
  }

  // The server reopening the same database for writing, then writing to it.
  if (in.ConsumeBool()) {
    options.read_only = false;
    auto store = SqliteLabelStore::Open(options);
    if (!store.ok()) {
      CheckReadStatus(store.status(), "Open");
      return 0;
    }
    oracle_server::RevealRequest reveal;
    reveal.experiment = OneOf(in, kNames, 4);
    reveal.ids = {in.ConsumeIntegralInRange<int64_t>(0, kTrainCount - 1)};
    (*store)->Reveal(reveal).IgnoreError();
    oracle_server::EvaluationRequest evaluation;
    evaluation.experiment = OneOf(in, kNames, 4);
    (*store)->RecordEvaluation(evaluation).IgnoreError();
    AuditRecord denied;
    denied.experiment = OneOf(in, kNames, 4);
    denied.kind = oracle_server::kKindQuery;
    (*store)->AppendAudit(denied).IgnoreError();
    VerifyAndPrint(**store);
  }
  return 0;
}
