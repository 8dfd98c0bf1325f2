#include "oracle_server/open_label_store.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#ifdef FEWLABELS_WITH_POSTGRES
#include "oracle_server/postgres_label_store.h"
#endif
#include "oracle_server/sqlite_label_store.h"

namespace oracle_server {

absl::StatusOr<std::unique_ptr<LabelStore>> OpenLabelStore(
    const OpenStoreOptions& options) {
  absl::string_view spec = options.store;
  if (absl::ConsumePrefix(&spec, "sqlite:")) {
    if (spec.empty()) {
      return absl::InvalidArgumentError("--store=sqlite: needs a file path");
    }
    if (!options.labels_table.empty() || !options.test_labels_table.empty()) {
      return absl::InvalidArgumentError(
          "label tables need a postgres: store; SQLite imports IDX files");
    }
    StoreOptions sqlite;
    sqlite.db_path = std::string(spec);
    sqlite.train_labels_path = options.train_labels_path;
    sqlite.test_labels_path = options.test_labels_path;
    sqlite.train_count = options.train_count;
    sqlite.test_count = options.test_count;
    sqlite.read_only = options.read_only;
    auto store = SqliteLabelStore::Open(sqlite);
    if (!store.ok()) return store.status();
    return std::unique_ptr<LabelStore>(std::move(*store));
  }
  if (absl::ConsumePrefix(&spec, "postgres:")) {
    if (spec.empty()) {
      return absl::InvalidArgumentError(
          "--store=postgres: needs a connection string, e.g. "
          "postgres:dbname=oracle or postgres:postgresql://host/oracle");
    }
#ifndef FEWLABELS_WITH_POSTGRES
    return absl::UnimplementedError(
        "this oracle was built without the PostgreSQL store (libpq-dev was "
        "missing; see FEWLABELS_WITH_POSTGRES); use --store=sqlite:PATH");
#else
    PostgresStoreOptions postgres;
    postgres.conninfo = std::string(spec);
    postgres.train_labels_path = options.train_labels_path;
    postgres.test_labels_path = options.test_labels_path;
    postgres.train_count = options.train_count;
    postgres.test_count = options.test_count;
    postgres.labels_table = options.labels_table;
    postgres.test_labels_table = options.test_labels_table;
    postgres.read_only = options.read_only;
    auto store = PostgresLabelStore::Open(postgres);
    if (!store.ok()) return store.status();
    return std::unique_ptr<LabelStore>(std::move(*store));
#endif
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--store=\"", options.store,
                   "\" is neither sqlite:PATH nor postgres:CONNINFO"));
}

std::string SqliteStoreSpec(const std::string& db_path) {
  return absl::StrCat("sqlite:", db_path);
}

}  // namespace oracle_server
