// Opens the LabelStore an operator names: `sqlite:PATH` or
// `postgres:CONNINFO`. Shared by oracle_server and oraclectl.
#ifndef ORACLE_SERVER_OPEN_LABEL_STORE_H_
#define ORACLE_SERVER_OPEN_LABEL_STORE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "oracle_server/label_store.h"

namespace oracle_server {

struct OpenStoreOptions {
  // "sqlite:PATH" (a database file) or "postgres:CONNINFO" (a libpq
  // connection string or postgresql:// URI).
  std::string store = "sqlite:oracle.db";
  // IDX label files imported into a new database and checked against an
  // existing one; empty: no check.
  std::string train_labels_path;
  std::string test_labels_path;
  int64_t train_count = 60000;
  int64_t test_count = 10000;
  // PostgreSQL only: read the labels from these tables (columns id, label)
  // instead of the IDX files. Both or neither.
  std::string labels_table;
  std::string test_labels_table;
  // Open without writing (oraclectl's summary, log and verify).
  bool read_only = false;
};

// The store `options.store` names, opened. INVALID_ARGUMENT for another
// scheme, an empty path or connection string, or label tables with SQLite;
// UNIMPLEMENTED for postgres: in a build without it (FEWLABELS_WITH_POSTGRES
// off); otherwise the errors of SqliteLabelStore::Open /
// PostgresLabelStore::Open.
absl::StatusOr<std::unique_ptr<LabelStore>> OpenLabelStore(
    const OpenStoreOptions& options);

// `--store` from the older `--db=PATH` flag: "sqlite:PATH".
std::string SqliteStoreSpec(const std::string& db_path);

}  // namespace oracle_server

#endif  // ORACLE_SERVER_OPEN_LABEL_STORE_H_
