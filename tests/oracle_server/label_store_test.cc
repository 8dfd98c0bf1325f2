#include "oracle_server/label_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/sha256.h"
#include "common/status_matchers.h"
#include "oracle_server/audit_chain.h"
#include "oracle_server/await_done.h"
#include "oracle_server/failure_injecting_label_store.h"
#include "oracle_server/postgres_label_store.h"
#include "oracle_server/sqlite_label_store.h"
#include "tests/oracle_server/oracle_test_data.h"
#include "tests/oracle_server/postgres_test_cluster.h"

namespace oracle_server {
namespace {

using ::common::IsOk;
using ::common::StatusIs;
using testdata::IsOkAndHolds;
using testdata::SyntheticStoreOptions;
using testdata::TestDir;
using testdata::TestLabels;
using testdata::TrainLabel;
using testdata::TrainLabels;
using testdata::WriteIdxLabels;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::string Sha256Of(const std::vector<uint8_t>& bytes) {
  return common::Sha256Hex(absl::string_view(
      reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

ExperimentRecord Experiment(const std::string& name, int64_t budget) {
  ExperimentRecord experiment;
  experiment.name = name;
  experiment.label_budget = budget;
  experiment.evaluation_cap = 3;
  return experiment;
}

RevealRequest Reveal(const std::string& experiment, std::vector<int64_t> ids) {
  RevealRequest request;
  request.experiment = experiment;
  request.ids = std::move(ids);
  request.client = "test";
  request.strategy = "random";
  request.round = 1;
  request.time_unix_micros = 1000;
  return request;
}


// The store contract, run against every LabelStore: SQLite, and PostgreSQL
// on a throw-away cluster that the test starts (postgres_test_cluster.h).
enum class StoreKind { kSqlite, kPostgres };

// For test names and ctest: "sqlite" or "postgres", not the enum's bytes.
void PrintTo(StoreKind kind, std::ostream* out) {
  *out << (kind == StoreKind::kSqlite ? "sqlite" : "postgres");
}

std::string StoreKindName(const testing::TestParamInfo<StoreKind>& info) {
  return info.param == StoreKind::kSqlite ? "Sqlite" : "Postgres";
}

// Skips (PostgreSQL not installed) or fails (it did not start) the test
// unless the cluster runs; sets `*cluster`.
#define REQUIRE_POSTGRES(cluster)                                       \
  do {                                                                  \
    std::string why;                                                    \
    *(cluster) = testdata::PostgresTestCluster::Get(&why);              \
    if (*(cluster) == nullptr) {                                        \
      if (absl::StartsWith(why, "PostgreSQL is not installed")) {       \
        GTEST_SKIP() << why;                                            \
      }                                                                 \
      FAIL() << why;                                                    \
    }                                                                   \
  } while (false)

class LabelStoreContractTest : public testing::TestWithParam<StoreKind> {
 protected:
  void SetUp() override {
    if (GetParam() == StoreKind::kPostgres) REQUIRE_POSTGRES(&cluster_);
  }

  // Opens the store `options` describe. For PostgreSQL, `options.db_path`
  // names a database of this test: ":memory:" a new one at every open, any
  // other path the same one at every open (created by the first that writes).
  absl::StatusOr<std::unique_ptr<LabelStore>> Open(const StoreOptions& options) {
    if (GetParam() == StoreKind::kSqlite) {
      auto store = SqliteLabelStore::Open(options);
      if (!store.ok()) return store.status();
      return std::unique_ptr<LabelStore>(std::move(*store));
    }
    PostgresStoreOptions postgres;
    postgres.train_labels_path = options.train_labels_path;
    postgres.test_labels_path = options.test_labels_path;
    postgres.train_count = options.train_count;
    postgres.test_count = options.test_count;
    postgres.read_only = options.read_only;
    postgres.max_group_size = options.max_group_size;
    postgres.before_commit = options.before_commit;
    std::string conninfo;
    auto known = databases_.find(options.db_path);
    if (options.db_path != ":memory:" && known != databases_.end()) {
      conninfo = known->second;
    } else if (options.read_only) {
      // A read-only open never creates the database it names.
      conninfo = cluster_->ConnInfo("absent_database");
    } else {
      auto created = cluster_->CreateDatabase();
      if (!created.ok()) return created.status();
      conninfo = *created;
      if (options.db_path != ":memory:") databases_[options.db_path] = conninfo;
    }
    postgres.conninfo = conninfo;
    auto store = PostgresLabelStore::Open(postgres);
    if (!store.ok()) return store.status();
    return std::unique_ptr<LabelStore>(std::move(*store));
  }

  // Runs `sql` directly on the database `db_path` names (a file path; for
  // PostgreSQL, one this test opened before), beside any open store.
  absl::Status ExecuteSql(const std::string& db_path, const std::string& sql) {
    if (GetParam() == StoreKind::kPostgres) {
      auto known = databases_.find(db_path);
      if (known == databases_.end()) {
        return absl::NotFoundError(absl::StrCat("no database ", db_path));
      }
      return testdata::PostgresTestCluster::Execute(known->second, sql);
    }
    sqlite3* db = nullptr;
    int rc = sqlite3_open(db_path.c_str(), &db);
    char* error = nullptr;
    if (rc == SQLITE_OK) {
      rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error);
    }
    absl::Status status =
        rc == SQLITE_OK ? absl::OkStatus()
                        : absl::InternalError(absl::StrCat(
                              sql, ": ", error != nullptr ? error : "open"));
    sqlite3_free(error);
    sqlite3_close(db);
    return status;
  }

  testdata::PostgresTestCluster* cluster_ = nullptr;
  std::map<std::string, std::string> databases_;
};

// Waits until `n` writes are queued behind the commit in flight.
bool AwaitQueued(LabelStore& store, int n, absl::Duration timeout) {
  if (auto* sqlite = dynamic_cast<SqliteLabelStore*>(&store)) {
    return sqlite->AwaitQueuedWritesForTesting(n, timeout);
  }
  if (auto* postgres = dynamic_cast<PostgresLabelStore*>(&store)) {
    return postgres->AwaitQueuedWritesForTesting(n, timeout);
  }
  return false;
}

TEST_P(LabelStoreContractTest, ImportsSyntheticLabelFiles) {
  TestDir dir;
  StoreOptions options = SyntheticStoreOptions(dir.path(), 100, 20);
  auto store = Open(options);
  ASSERT_THAT(store, IsOk());

  auto train = (*store)->LoadLabels(Split::kTrain);
  ASSERT_THAT(train, IsOk());
  EXPECT_EQ(*train, TrainLabels(100));
  auto test = (*store)->LoadLabels(Split::kTest);
  ASSERT_THAT(test, IsOk());
  EXPECT_EQ(*test, TestLabels(20));

  auto info = (*store)->GetDatasetInfo();
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(info->train.source_path, options.train_labels_path);
  EXPECT_EQ(info->train.count, 100);
  EXPECT_EQ(info->train.content_sha256, Sha256Of(TrainLabels(100)));
  EXPECT_EQ(info->test.source_path, options.test_labels_path);
  EXPECT_EQ(info->test.count, 20);
  EXPECT_EQ(info->test.content_sha256, Sha256Of(TestLabels(20)));
}

TEST(SqliteLabelStoreTest, ImportsDebianFashionMnist) {
  StoreOptions options;  // Defaults: the Debian files, 60000 and 10000.
  options.db_path = ":memory:";
  auto store = SqliteLabelStore::Open(options);
  ASSERT_THAT(store, IsOk());
  auto info = (*store)->GetDatasetInfo();
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(info->train.count, 60000);
  EXPECT_EQ(info->test.count, 10000);
  auto train = (*store)->LoadLabels(Split::kTrain);
  ASSERT_THAT(train, IsOk());
  ASSERT_EQ(train->size(), 60000u);
  EXPECT_EQ(info->train.content_sha256, Sha256Of(*train));
  // Fashion-MNIST is balanced: 6000 train images per class.
  std::vector<int> per_class(10, 0);
  for (uint8_t label : *train) ++per_class.at(label);
  EXPECT_THAT(per_class, ::testing::Each(6000));
}

TEST_P(LabelStoreContractTest, ReopeningTheSameDatabaseIsIdempotent) {
  TestDir dir;
  StoreOptions options =
      SyntheticStoreOptions(dir.path(), 100, 20, dir.path() + "/oracle.db");
  {
    auto store = Open(options);
    ASSERT_THAT(store, IsOk());
    bool created = false;
    ASSERT_THAT((*store)->CreateExperiment(Experiment("e", 10), &created),
                IsOk());
    EXPECT_TRUE(created);
    ASSERT_THAT((*store)->Reveal(Reveal("e", {3, 4})), IsOk());
  }
  for (int reopen = 0; reopen < 2; ++reopen) {
    auto store = Open(options);
    ASSERT_THAT(store, IsOk());
    auto train = (*store)->LoadLabels(Split::kTrain);
    ASSERT_THAT(train, IsOk());
    EXPECT_EQ(*train, TrainLabels(100));
    auto experiments = (*store)->ListExperiments();
    ASSERT_THAT(experiments, IsOk());
    ASSERT_EQ(experiments->size(), 1u);
    EXPECT_EQ((*experiments)[0].name, "e");
    EXPECT_EQ((*experiments)[0].label_budget, 10);
    auto usage = (*store)->GetUsage("e");
    ASSERT_THAT(usage, IsOk());
    EXPECT_EQ(usage->spent, 2);
    EXPECT_EQ(usage->requests_granted, 1);
    auto head = (*store)->GetAuditHead();
    ASSERT_THAT(head, IsOk());
    EXPECT_EQ(head->first, 1);
  }
}

TEST_P(LabelStoreContractTest, RefusesExistingDatabaseWithDifferentLabels) {
  TestDir dir;
  StoreOptions options =
      SyntheticStoreOptions(dir.path(), 100, 20, dir.path() + "/oracle.db");
  ASSERT_THAT(Open(options), IsOk());

  std::vector<uint8_t> changed = TrainLabels(100);
  changed[42] = (changed[42] + 1) % 10;
  StoreOptions other = options;
  other.train_labels_path = dir.path() + "/other-train-labels.gz";
  WriteIdxLabels(other.train_labels_path, changed);
  EXPECT_THAT(
      Open(other),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               AllOf(HasSubstr(options.train_labels_path),
                     HasSubstr(other.train_labels_path),
                     HasSubstr("train labels"), HasSubstr(Sha256Of(changed)))));
  // The original files still open it.
  EXPECT_THAT(Open(options), IsOk());
}

// The labels a store serves are hashed at every open and compared with the
// hash recorded at import, whether or not label files are given to check.
TEST_P(LabelStoreContractTest, RefusesLabelsChangedInTheDatabase) {
  TestDir dir;
  StoreOptions options =
      SyntheticStoreOptions(dir.path(), 100, 20, dir.path() + "/oracle.db");
  ASSERT_THAT(Open(options), IsOk());
  std::vector<uint8_t> changed = TrainLabels(100);
  changed[0] = (changed[0] + 1) % 10;
  ASSERT_THAT(ExecuteSql(options.db_path,
                         absl::StrCat("UPDATE labels SET label = ", changed[0],
                                      " WHERE split = 'train' AND id = 0")),
              IsOk());
  const auto refused = StatusIs(
      absl::StatusCode::kFailedPrecondition,
      AllOf(HasSubstr("train labels"), HasSubstr(Sha256Of(changed)),
            HasSubstr(Sha256Of(TrainLabels(100))),
            HasSubstr(options.train_labels_path)));
  // The label files still match what was recorded; the database does not.
  EXPECT_THAT(Open(options), refused);
  StoreOptions without_files = options;
  without_files.train_labels_path = "";
  without_files.test_labels_path = "";
  EXPECT_THAT(Open(without_files), refused);
  StoreOptions read_only = without_files;
  read_only.read_only = true;
  EXPECT_THAT(Open(read_only), refused);
  // Restored, it opens again.
  ASSERT_THAT(ExecuteSql(options.db_path,
                         absl::StrCat("UPDATE labels SET label = ",
                                      TrainLabel(0),
                                      " WHERE split = 'train' AND id = 0")),
              IsOk());
  EXPECT_THAT(Open(without_files), IsOk());
  EXPECT_THAT(Open(options), IsOk());
}

TEST_P(LabelStoreContractTest, RejectsLabelFilesWithWrongCountMagicOrValues) {
  TestDir dir;
  StoreOptions options = SyntheticStoreOptions(dir.path(), 100, 20);

  StoreOptions wrong_count = options;
  wrong_count.train_count = 101;
  EXPECT_THAT(Open(wrong_count),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("expected 101 items, found 100")));

  StoreOptions images = options;
  images.train_labels_path = dir.path() + "/images.gz";
  {
    // A 3-d IDX file (magic 0x00000803): images, not labels.
    gzFile file = gzopen(images.train_labels_path.c_str(), "wb");
    ASSERT_NE(file, nullptr);
    const unsigned char bytes[] = {0, 0, 8, 3, 0, 0, 0, 1, 0,
                                   0, 0, 1, 0, 0, 0, 1, 7};
    ASSERT_EQ(gzwrite(file, bytes, sizeof(bytes)), 17);
    gzclose(file);
  }
  EXPECT_THAT(Open(images),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("wrong magic number")));

  StoreOptions bad_label = options;
  bad_label.test_labels_path = dir.path() + "/bad-test-labels.gz";
  std::vector<uint8_t> labels = TestLabels(20);
  labels[7] = 10;
  WriteIdxLabels(bad_label.test_labels_path, labels);
  EXPECT_THAT(Open(bad_label),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("label 10 of sample 7 is not in [0, 10)")));

  StoreOptions missing = options;
  missing.train_labels_path = dir.path() + "/missing.gz";
  EXPECT_THAT(Open(missing),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing.gz")));
}

TEST_P(LabelStoreContractTest, ReadOnlyOpen) {
  TestDir dir;
  StoreOptions read_only;
  read_only.db_path = dir.path() + "/absent.db";
  read_only.read_only = true;
  EXPECT_THAT(Open(read_only),
              StatusIs(absl::StatusCode::kNotFound));

  StoreOptions options =
      SyntheticStoreOptions(dir.path(), 100, 20, dir.path() + "/oracle.db");
  {
    auto store = Open(options);
    ASSERT_THAT(store, IsOk());
    ASSERT_THAT((*store)->CreateExperiment(Experiment("e", 10), nullptr),
                IsOk());
  }
  read_only.db_path = options.db_path;
  read_only.train_labels_path = "";
  read_only.test_labels_path = "";
  auto store = Open(read_only);
  ASSERT_THAT(store, IsOk());
  auto train = (*store)->LoadLabels(Split::kTrain);
  ASSERT_THAT(train, IsOk());
  EXPECT_EQ(*train, TrainLabels(100));
  EXPECT_THAT((*store)->GetExperiment("e"), IsOk());
  EXPECT_THAT(
      (*store)->Reveal(Reveal("e", {1})),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("read-only")));
  EXPECT_THAT((*store)->CreateExperiment(Experiment("f", 10), nullptr),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST(SqliteLabelStoreTest, FileDatabaseIsInWalMode) {
  TestDir dir;
  StoreOptions options =
      SyntheticStoreOptions(dir.path(), 100, 20, dir.path() + "/oracle.db");
  ASSERT_THAT(SqliteLabelStore::Open(options), IsOk());
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(options.db_path.c_str(), &db, SQLITE_OPEN_READONLY,
                            nullptr),
            SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &stmt, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)),
               "wal");
  sqlite3_finalize(stmt);
  sqlite3_close(db);
}

TEST(SqliteLabelStoreTest, ReadOnlyOpenOfAnotherDatabaseIsRefused) {
  TestDir dir;
  const std::string path = dir.path() + "/other.db";
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE t (x)", nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  StoreOptions options;
  options.db_path = path;
  options.read_only = true;
  EXPECT_THAT(SqliteLabelStore::Open(options),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("is not a label oracle database")));
}

TEST_P(LabelStoreContractTest, CreateExperimentKeepsTheFirstDefinition) {
  TestDir dir;
  auto store = Open(SyntheticStoreOptions(dir.path()));
  ASSERT_THAT(store, IsOk());
  bool created = false;
  auto first = (*store)->CreateExperiment(Experiment("e", 10), &created);
  ASSERT_THAT(first, IsOk());
  EXPECT_TRUE(created);
  EXPECT_GT(first->id, 0);
  auto second = (*store)->CreateExperiment(Experiment("e", 99), &created);
  ASSERT_THAT(second, IsOk());
  EXPECT_FALSE(created);
  EXPECT_EQ(second->id, first->id);
  EXPECT_EQ(second->label_budget, 10);
  EXPECT_THAT((*store)->GetExperiment("nope"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope")));
  EXPECT_THAT((*store)->GetUsage("nope"),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_P(LabelStoreContractTest, RevealChargesNewIdsAndDeniesOverBudget) {
  TestDir dir;
  auto store = Open(SyntheticStoreOptions(dir.path()));
  ASSERT_THAT(store, IsOk());
  ASSERT_THAT((*store)->CreateExperiment(Experiment("e", 3), nullptr), IsOk());

  auto first = (*store)->Reveal(Reveal("e", {10, 20}));
  ASSERT_THAT(first, IsOk());
  EXPECT_TRUE(first->granted);
  EXPECT_THAT(first->newly_revealed, ElementsAre(10, 20));
  EXPECT_THAT(first->labels,
              ElementsAre(testdata::TrainLabel(10), testdata::TrainLabel(20)));
  EXPECT_EQ(first->remaining, 1);
  EXPECT_EQ(first->audit_sequence, 1);

  auto second = (*store)->Reveal(Reveal("e", {20, 30}));
  ASSERT_THAT(second, IsOk());
  EXPECT_TRUE(second->granted);
  EXPECT_THAT(second->newly_revealed, ElementsAre(30));
  EXPECT_EQ(second->remaining, 0);

  auto denied = (*store)->Reveal(Reveal("e", {10, 40}));
  ASSERT_THAT(denied, IsOk());
  EXPECT_FALSE(denied->granted);
  EXPECT_EQ(denied->requested_new, 1);
  EXPECT_EQ(denied->remaining, 0);
  EXPECT_THAT(denied->labels, IsEmpty());
  EXPECT_EQ(denied->audit_sequence, 3);

  auto rows = (*store)->ListAudit("e", 0, 10);
  ASSERT_THAT(rows, IsOk());
  ASSERT_EQ(rows->size(), 3u);
  EXPECT_EQ((*rows)[2].outcome, Outcome::kDeniedBudget);
  EXPECT_EQ((*rows)[0].detail, "budget=3 spent=2");
  EXPECT_EQ((*rows)[2].detail,
            "budget=3 spent=3; requested 1 new labels but only 0 remain");
  EXPECT_THAT((*rows)[2].ids_asked, ElementsAre(10, 40));
  EXPECT_THAT((*rows)[2].ids_revealed, IsEmpty());

  auto revealed = (*store)->ListRevealed();
  ASSERT_THAT(revealed, IsOk());
  ASSERT_EQ(revealed->size(), 3u);
  EXPECT_EQ((*revealed)[0].sample_id, 10);
  EXPECT_EQ((*revealed)[0].audit_sequence, 1);
  EXPECT_EQ((*revealed)[2].sample_id, 30);
  EXPECT_EQ((*revealed)[2].audit_sequence, 2);

  EXPECT_THAT((*store)->Reveal(Reveal("e", {1000})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("train id 1000 is not in [0, 1000)")));
  EXPECT_THAT((*store)->Reveal(Reveal("nope", {1})),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_P(LabelStoreContractTest, RecordEvaluationEnforcesTheCap) {
  TestDir dir;
  auto store = Open(SyntheticStoreOptions(dir.path()));
  ASSERT_THAT(store, IsOk());
  ASSERT_THAT((*store)->CreateExperiment(Experiment("e", 3), nullptr), IsOk());
  EvaluationRequest request;
  request.experiment = "e";
  request.detail = "accuracy=0.5";
  for (int i = 1; i <= 3; ++i) {
    auto result = (*store)->RecordEvaluation(request);
    ASSERT_THAT(result, IsOk());
    EXPECT_TRUE(result->allowed);
    EXPECT_EQ(result->evaluations, i);
    EXPECT_EQ(result->evaluation_cap, 3);
  }
  auto denied = (*store)->RecordEvaluation(request);
  ASSERT_THAT(denied, IsOk());
  EXPECT_FALSE(denied->allowed);
  EXPECT_EQ(denied->evaluations, 3);
  auto rows = (*store)->ListAudit("", 0, 10);
  ASSERT_THAT(rows, IsOk());
  ASSERT_EQ(rows->size(), 4u);
  EXPECT_EQ((*rows)[0].kind, kKindEvaluate);
  EXPECT_EQ((*rows)[0].detail, "evaluations=1 evaluation_cap=3; accuracy=0.5");
  EXPECT_EQ((*rows)[3].outcome, Outcome::kDeniedEvaluationCap);
  EXPECT_EQ((*rows)[3].detail,
            "evaluations=3 evaluation_cap=3; evaluation cap of 3 reached");
  auto usage = (*store)->GetUsage("e");
  ASSERT_THAT(usage, IsOk());
  EXPECT_EQ(usage->evaluations, 3);
  EXPECT_EQ(usage->requests_denied, 0);
}

TEST_P(LabelStoreContractTest, AppendAuditRefusesRowsThatReveal) {
  TestDir dir;
  auto store = Open(SyntheticStoreOptions(dir.path()));
  ASSERT_THAT(store, IsOk());
  AuditRecord row;
  row.experiment = "e";
  row.kind = kKindQuery;
  row.outcome = Outcome::kGranted;
  EXPECT_THAT((*store)->AppendAudit(row),
              StatusIs(absl::StatusCode::kInvalidArgument));
  row.outcome = Outcome::kDeniedInvalid;
  row.ids_asked = {1, 1};
  row.detail = "INVALID_ARGUMENT: id 1 appears twice";
  EXPECT_THAT((*store)->AppendAudit(row), IsOkAndHolds(1));
  EXPECT_THAT((*store)->AppendAudit(row), IsOkAndHolds(2));
}

// A failure inside the transaction, after the revealed rows and the audit row
// were written, rolls all of them back.
TEST_P(LabelStoreContractTest, FailedCommitRevealsNothing) {
  TestDir dir;
  StoreOptions options =
      SyntheticStoreOptions(dir.path(), 100, 20, dir.path() + "/oracle.db");
  bool fail = false;
  options.before_commit = [&fail]() {
    return fail ? absl::UnavailableError("disk went away") : absl::OkStatus();
  };
  auto store = Open(options);
  ASSERT_THAT(store, IsOk());
  ASSERT_THAT((*store)->CreateExperiment(Experiment("e", 5), nullptr), IsOk());
  ASSERT_THAT((*store)->Reveal(Reveal("e", {1})), IsOk());

  fail = true;
  EXPECT_THAT(
      (*store)->Reveal(Reveal("e", {2, 3})),
      StatusIs(absl::StatusCode::kUnavailable, HasSubstr("disk went away")));
  fail = false;

  auto usage = (*store)->GetUsage("e");
  ASSERT_THAT(usage, IsOk());
  EXPECT_EQ(usage->spent, 1);
  auto head = (*store)->GetAuditHead();
  ASSERT_THAT(head, IsOk());
  EXPECT_EQ(head->first, 1);
  auto next = (*store)->Reveal(Reveal("e", {2, 3}));
  ASSERT_THAT(next, IsOk());
  EXPECT_EQ(next->audit_sequence, 2);
  EXPECT_EQ(next->remaining, 2);
  auto verification = VerifyAuditLog(**store);
  ASSERT_THAT(verification, IsOk());
  EXPECT_TRUE(verification->ok) << verification->reason;
  EXPECT_EQ(verification->rows_verified, 2);
}

// Holds the first commit after `Block()` inside before_commit until
// `Release()`, so that the test can queue writes behind it and have them
// committed as one group. Optionally fails the commits after that one.
class CommitGate {
 public:
  void Install(StoreOptions* options) {
    options->before_commit = [this]() -> absl::Status {
      ++commits_;
      if (block_.exchange(false)) {
        entered_.Notify();
        released_.WaitForNotification();
        return absl::OkStatus();
      }
      return fail_ ? absl::UnavailableError("disk went away")
                   : absl::OkStatus();
    };
  }
  void Block() { block_ = true; }
  void WaitUntilBlocked() { entered_.WaitForNotification(); }
  void Release() { released_.Notify(); }
  void set_fail(bool fail) { fail_ = fail; }
  int commits() const { return commits_; }

 private:
  std::atomic<bool> block_{false};
  std::atomic<bool> fail_{false};
  std::atomic<int> commits_{0};
  absl::Notification entered_;
  absl::Notification released_;
};

AuditRecord InvalidQueryRow(const std::string& experiment) {
  AuditRecord row;
  row.time_unix_micros = 1000;
  row.experiment = experiment;
  row.client = "test";
  row.kind = kKindQuery;
  row.outcome = Outcome::kDeniedInvalid;
  row.detail = "INVALID_ARGUMENT: ids is empty";
  return row;
}

// Reveals queued while another commit is in flight are committed as one group
// and decided in arrival order: the second is denied because the first used
// the budget, and the third is charged only for the id the first did not
// already reveal.
TEST_P(LabelStoreContractTest, GroupCommitDecidesEachCallInOrder) {
  TestDir dir;
  StoreOptions options =
      SyntheticStoreOptions(dir.path(), 100, 20, dir.path() + "/oracle.db");
  CommitGate gate;
  gate.Install(&options);
  auto opened = Open(options);
  ASSERT_THAT(opened, IsOk());
  LabelStore& store = **opened;
  ASSERT_THAT(store.CreateExperiment(Experiment("e", 5), nullptr), IsOk());

  gate.Block();
  std::thread blocker([&] {
    EXPECT_THAT(store.AppendAudit(InvalidQueryRow("e")), IsOkAndHolds(1));
  });
  gate.WaitUntilBlocked();
  const int commits_before = gate.commits();

  absl::StatusOr<RevealResult> first, second, third;
  std::thread first_thread([&] {
    first = store.Reveal(Reveal("e", {1, 2, 3, 4}));
  });
  ASSERT_TRUE(AwaitQueued(store, 1, absl::Seconds(30)));
  std::thread second_thread([&] {
    second = store.Reveal(Reveal("e", {5, 6}));
  });
  ASSERT_TRUE(AwaitQueued(store, 2, absl::Seconds(30)));
  std::thread third_thread([&] { third = store.Reveal(Reveal("e", {4, 5})); });
  ASSERT_TRUE(AwaitQueued(store, 3, absl::Seconds(30)));
  gate.Release();
  for (std::thread* thread :
       {&blocker, &first_thread, &second_thread, &third_thread}) {
    thread->join();
  }

  // One commit for the blocker, one for the group of three.
  EXPECT_EQ(gate.commits(), commits_before + 1);
  ASSERT_THAT(first, IsOk());
  EXPECT_TRUE(first->granted);
  EXPECT_EQ(first->audit_sequence, 2);
  EXPECT_EQ(first->remaining, 1);
  EXPECT_THAT(first->labels, ElementsAre(TrainLabel(1), TrainLabel(2),
                                         TrainLabel(3), TrainLabel(4)));
  ASSERT_THAT(second, IsOk());
  EXPECT_FALSE(second->granted);
  EXPECT_EQ(second->audit_sequence, 3);
  EXPECT_EQ(second->requested_new, 2);
  EXPECT_EQ(second->spent, 4);
  EXPECT_EQ(second->remaining, 1);
  EXPECT_THAT(second->labels, IsEmpty());
  ASSERT_THAT(third, IsOk());
  EXPECT_TRUE(third->granted);
  EXPECT_EQ(third->audit_sequence, 4);
  EXPECT_THAT(third->newly_revealed, ElementsAre(5));
  EXPECT_EQ(third->remaining, 0);

  auto usage = store.GetUsage("e");
  ASSERT_THAT(usage, IsOk());
  EXPECT_EQ(usage->spent, 5);
  EXPECT_EQ(usage->requests_granted, 2);
  EXPECT_EQ(usage->requests_denied, 2);
  auto rows = store.ListAudit("", 0, 10);
  ASSERT_THAT(rows, IsOk());
  ASSERT_EQ(rows->size(), 4u);
  EXPECT_EQ((*rows)[1].outcome, Outcome::kGranted);
  EXPECT_EQ((*rows)[2].outcome, Outcome::kDeniedBudget);
  EXPECT_EQ((*rows)[2].detail,
            "budget=5 spent=4; requested 2 new labels but only 1 remain");
  EXPECT_THAT((*rows)[3].ids_revealed, ElementsAre(5));
  auto verification = VerifyAuditLog(store);
  ASSERT_THAT(verification, IsOk());
  EXPECT_TRUE(verification->ok) << verification->reason;
  EXPECT_EQ(verification->rows_verified, 4);

  // The in-memory state matches what a fresh open loads from disk.
  opened->reset();
  options.before_commit = nullptr;
  auto reopened = Open(options);
  ASSERT_THAT(reopened, IsOk());
  auto reloaded = (*reopened)->GetUsage("e");
  ASSERT_THAT(reloaded, IsOk());
  EXPECT_EQ(reloaded->spent, 5);
  EXPECT_EQ(reloaded->requests_granted, 2);
  EXPECT_EQ(reloaded->requests_denied, 2);
  EXPECT_THAT((*reopened)->Reveal(Reveal("e", {1, 9})),
              IsOkAndHolds(testing::Field(&RevealResult::granted, false)));
}

// A commit that fails fails every call of its group: nothing is revealed, no
// row is added, and the next group is decided as if they never happened.
TEST_P(LabelStoreContractTest, FailedGroupCommitFailsEveryCallOfTheGroup) {
  TestDir dir;
  StoreOptions options =
      SyntheticStoreOptions(dir.path(), 100, 20, dir.path() + "/oracle.db");
  CommitGate gate;
  gate.Install(&options);
  auto opened = Open(options);
  ASSERT_THAT(opened, IsOk());
  LabelStore& store = **opened;
  ASSERT_THAT(store.CreateExperiment(Experiment("e", 5), nullptr), IsOk());

  gate.Block();
  std::thread blocker([&] {
    EXPECT_THAT(store.AppendAudit(InvalidQueryRow("e")), IsOkAndHolds(1));
  });
  gate.WaitUntilBlocked();
  gate.set_fail(true);

  absl::StatusOr<RevealResult> first, second;
  absl::StatusOr<EvaluationResult> evaluation;
  std::thread first_thread([&] { first = store.Reveal(Reveal("e", {1, 2})); });
  ASSERT_TRUE(AwaitQueued(store, 1, absl::Seconds(30)));
  std::thread second_thread([&] { second = store.Reveal(Reveal("e", {3})); });
  ASSERT_TRUE(AwaitQueued(store, 2, absl::Seconds(30)));
  std::thread evaluation_thread([&] {
    EvaluationRequest request;
    request.experiment = "e";
    request.detail = "accuracy=0.5";
    evaluation = store.RecordEvaluation(request);
  });
  ASSERT_TRUE(AwaitQueued(store, 3, absl::Seconds(30)));
  gate.Release();
  for (std::thread* thread :
       {&blocker, &first_thread, &second_thread, &evaluation_thread}) {
    thread->join();
  }

  EXPECT_THAT(first, StatusIs(absl::StatusCode::kUnavailable,
                              HasSubstr("disk went away")));
  EXPECT_THAT(second, StatusIs(absl::StatusCode::kUnavailable,
                               HasSubstr("disk went away")));
  EXPECT_THAT(evaluation, StatusIs(absl::StatusCode::kUnavailable,
                                   HasSubstr("disk went away")));
  auto usage = store.GetUsage("e");
  ASSERT_THAT(usage, IsOk());
  EXPECT_EQ(usage->spent, 0);
  EXPECT_EQ(usage->requests_granted, 0);
  EXPECT_EQ(usage->requests_denied, 1);
  EXPECT_EQ(usage->evaluations, 0);
  EXPECT_THAT(store.ListRevealed(), IsOkAndHolds(IsEmpty()));
  auto head = store.GetAuditHead();
  ASSERT_THAT(head, IsOk());
  EXPECT_EQ(head->first, 1);

  gate.set_fail(false);
  auto next = store.Reveal(Reveal("e", {1, 2, 3}));
  ASSERT_THAT(next, IsOk());
  EXPECT_TRUE(next->granted);
  EXPECT_EQ(next->audit_sequence, 2);
  EXPECT_EQ(next->requested_new, 3);
  EXPECT_EQ(next->remaining, 2);
  auto verification = VerifyAuditLog(store);
  ASSERT_THAT(verification, IsOk());
  EXPECT_TRUE(verification->ok) << verification->reason;
  EXPECT_EQ(verification->rows_verified, 2);
}

// Writes by another connection (here, a second store on the same file) are
// noticed at the next write, which reloads the state before deciding.
TEST_P(LabelStoreContractTest, ReloadsStateWrittenByAnotherConnection) {
  TestDir dir;
  StoreOptions options =
      SyntheticStoreOptions(dir.path(), 100, 20, dir.path() + "/oracle.db");
  auto first = Open(options);
  ASSERT_THAT(first, IsOk());
  ASSERT_THAT((*first)->CreateExperiment(Experiment("e", 3), nullptr), IsOk());
  {
    auto second = Open(options);
    ASSERT_THAT(second, IsOk());
    ASSERT_THAT((*second)->Reveal(Reveal("e", {1, 2})), IsOk());
  }
  auto denied = (*first)->Reveal(Reveal("e", {3, 4}));
  ASSERT_THAT(denied, IsOk());
  EXPECT_FALSE(denied->granted);
  EXPECT_EQ(denied->remaining, 1);
  EXPECT_EQ(denied->audit_sequence, 2);
  auto verification = VerifyAuditLog(**first);
  ASSERT_THAT(verification, IsOk());
  EXPECT_TRUE(verification->ok) << verification->reason;
}

// CreateExperiment of a name another connection created returns that
// experiment, and this store then serves it and, from its next write on,
// everything that connection did.
TEST_P(LabelStoreContractTest, CreateFindsExperimentsAnotherConnectionCreated) {
  TestDir dir;
  StoreOptions options =
      SyntheticStoreOptions(dir.path(), 100, 20, dir.path() + "/oracle.db");
  auto first = Open(options);
  ASSERT_THAT(first, IsOk());
  {
    auto second = Open(options);
    ASSERT_THAT(second, IsOk());
    ASSERT_THAT((*second)->CreateExperiment(Experiment("x", 3), nullptr),
                IsOk());
    ASSERT_THAT((*second)->CreateExperiment(Experiment("y", 4), nullptr),
                IsOk());
    ASSERT_THAT((*second)->Reveal(Reveal("x", {1, 2})), IsOk());
  }
  bool created = true;
  auto x = (*first)->CreateExperiment(Experiment("x", 99), &created);
  ASSERT_THAT(x, IsOk());
  EXPECT_FALSE(created);
  EXPECT_EQ(x->label_budget, 3);
  EXPECT_THAT((*first)->GetExperiment("x"), IsOk());
  auto denied = (*first)->Reveal(Reveal("x", {3, 4}));
  ASSERT_THAT(denied, IsOk());
  EXPECT_FALSE(denied->granted);
  EXPECT_EQ(denied->remaining, 1);
  auto usage = (*first)->GetUsage("x");
  ASSERT_THAT(usage, IsOk());
  EXPECT_EQ(usage->spent, 2);
  EXPECT_EQ(usage->requests_granted, 1);
  EXPECT_EQ(usage->requests_denied, 1);
  auto y = (*first)->GetExperiment("y");
  ASSERT_THAT(y, IsOk());
  EXPECT_EQ(y->label_budget, 4);
}

// Found by fuzz/audit_chain_fuzzer: a database whose recorded audit head
// sequence was set to INT64_MAX made the next write overflow the sequence.
TEST(SqliteLabelStoreTest, WritesAfterAnOutOfRangeAuditHeadAreDataLoss) {
  TestDir dir;
  const std::string db = dir.path() + "/oracle.db";
  const StoreOptions options = SyntheticStoreOptions(dir.path(), 1000, 50, db);
  {
    auto store = SqliteLabelStore::Open(options);
    ASSERT_THAT(store, IsOk());
    ASSERT_THAT((*store)->CreateExperiment(Experiment("exp", 10), nullptr),
                IsOk());
  }
  for (const char* head : {"9223372036854775807", "-1"}) {
    SCOPED_TRACE(head);
    {
      sqlite3* raw = nullptr;
      ASSERT_EQ(sqlite3_open(db.c_str(), &raw), SQLITE_OK);
      const std::string sql =
          absl::StrCat("UPDATE metadata SET value = '", head,
                       "' WHERE key = 'audit_head_seq'");
      ASSERT_EQ(sqlite3_exec(raw, sql.c_str(), nullptr, nullptr, nullptr),
                SQLITE_OK);
      sqlite3_close(raw);
    }
    auto store = SqliteLabelStore::Open(options);
    ASSERT_THAT(store, IsOk());
    EXPECT_THAT((*store)->Reveal(Reveal("exp", {1})),
                StatusIs(absl::StatusCode::kDataLoss, HasSubstr(head)));
    EvaluationRequest evaluation;
    evaluation.experiment = "exp";
    EXPECT_THAT((*store)->RecordEvaluation(evaluation),
                StatusIs(absl::StatusCode::kDataLoss));
    AuditRecord denied;
    denied.experiment = "exp";
    denied.kind = kKindQuery;
    EXPECT_THAT((*store)->AppendAudit(denied),
                StatusIs(absl::StatusCode::kDataLoss));
    auto usage = (*store)->GetUsage("exp");
    ASSERT_THAT(usage, IsOk());
    EXPECT_EQ(usage->spent, 0);
  }
}

TEST(FailureInjectingLabelStoreTest, FailedWriteRevealsNothing) {
  TestDir dir;
  auto sqlite = SqliteLabelStore::Open(SyntheticStoreOptions(dir.path()));
  ASSERT_THAT(sqlite, IsOk());
  FailureInjectingLabelStore store(*std::move(sqlite));
  store.FailWrite(2);
  store.FailWrite(4);

  ASSERT_THAT(store.CreateExperiment(Experiment("e", 5), nullptr), IsOk());
  EXPECT_THAT(store.Reveal(Reveal("e", {1, 2})),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("injected failure of write 2 (Reveal)")));
  EXPECT_THAT(store.ListRevealed(), IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(store.ListAudit("", 0, 10), IsOkAndHolds(IsEmpty()));

  auto granted = store.Reveal(Reveal("e", {1, 2}));
  ASSERT_THAT(granted, IsOk());
  EXPECT_EQ(granted->remaining, 3);
  EvaluationRequest evaluation;
  evaluation.experiment = "e";
  EXPECT_THAT(store.RecordEvaluation(evaluation),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(store.writes(), 4);
  auto usage = store.GetUsage("e");
  ASSERT_THAT(usage, IsOk());
  EXPECT_EQ(usage->spent, 2);
  EXPECT_EQ(usage->evaluations, 0);
}

TEST(FailureInjectingLabelStoreTest, FailedAsyncWriteCallsDoneAndRevealsNothing) {
  TestDir dir;
  auto sqlite = SqliteLabelStore::Open(SyntheticStoreOptions(dir.path()));
  ASSERT_THAT(sqlite, IsOk());
  FailureInjectingLabelStore store(*std::move(sqlite));
  store.FailWrite(2);
  ASSERT_THAT(store.CreateExperiment(Experiment("e", 5), nullptr), IsOk());

  // The failing write never reaches the store: `done` runs at once.
  std::optional<absl::StatusOr<RevealResult>> failed;
  store.RevealAsync(Reveal("e", {1, 2}),
                    [&](absl::StatusOr<RevealResult> result) {
                      failed.emplace(std::move(result));
                    });
  ASSERT_TRUE(failed.has_value());
  EXPECT_THAT(*failed,
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("injected failure of write 2 (RevealAsync)")));
  EXPECT_THAT(store.ListRevealed(), IsOkAndHolds(IsEmpty()));

  // The next one goes through to the store (done on its committer thread).
  auto granted = AwaitDone<RevealResult>([&](LabelStore::RevealDone done) {
    store.RevealAsync(Reveal("e", {1, 2}), std::move(done));
  });
  ASSERT_THAT(granted, IsOk());
  EXPECT_EQ(granted->remaining, 3);
  EXPECT_EQ(store.writes(), 3);
}

// Turns the database at `path`, written by this version, into what schema
// version 1 wrote: an audit table without role and peer.
void DowngradeToSchemaV1(const std::string& path) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  const char* kSql = R"sql(
    BEGIN;
    CREATE TABLE audit_v1 (
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
    INSERT INTO audit_v1 SELECT seq, time_us, experiment, client, strategy,
      round, kind, ids_asked, ids_revealed, outcome, detail, prev_hash, hash
      FROM audit;
    DROP TABLE audit;
    ALTER TABLE audit_v1 RENAME TO audit;
    CREATE INDEX audit_by_experiment ON audit (experiment, seq);
    UPDATE metadata SET value = '1' WHERE key = 'schema_version';
    COMMIT;
  )sql";
  char* error = nullptr;
  EXPECT_EQ(sqlite3_exec(db, kSql, nullptr, nullptr, &error), SQLITE_OK)
      << (error != nullptr ? error : "");
  sqlite3_free(error);
  sqlite3_close(db);
}

TEST(SqliteLabelStoreTest, MigratesSchemaVersion1InPlace) {
  TestDir dir;
  const std::string db = dir.path() + "/oracle.db";
  const StoreOptions options =
      SyntheticStoreOptions(dir.path(), 1000, 50, db);
  {
    // Rows as version 1 wrote them: no role, no peer.
    auto store = SqliteLabelStore::Open(options);
    ASSERT_THAT(store, IsOk());
    ExperimentRecord experiment;
    experiment.name = "old";
    experiment.label_budget = 10;
    experiment.evaluation_cap = 5;
    ASSERT_THAT((*store)->CreateExperiment(experiment, nullptr), IsOk());
    RevealRequest reveal;
    reveal.experiment = "old";
    reveal.ids = {1, 2};
    ASSERT_THAT((*store)->Reveal(reveal), IsOk());
    EvaluationRequest evaluation;
    evaluation.experiment = "old";
    evaluation.detail = "accuracy=0.5";
    ASSERT_THAT((*store)->RecordEvaluation(evaluation), IsOk());
  }
  DowngradeToSchemaV1(db);

  // Read-only (oraclectl): read as it is, and the old chain verifies.
  {
    StoreOptions read_only;
    read_only.db_path = db;
    read_only.read_only = true;
    auto store = SqliteLabelStore::Open(read_only);
    ASSERT_THAT(store, IsOk());
    auto rows = (*store)->ListAudit("", 0, 10);
    ASSERT_THAT(rows, IsOk());
    ASSERT_EQ(rows->size(), 2u);
    EXPECT_EQ((*rows)[0].role, "");
    auto usage = (*store)->GetUsage("old");
    ASSERT_THAT(usage, IsOk());
    EXPECT_EQ(usage->spent, 2);
    EXPECT_EQ(usage->evaluations, 1);
    auto verification = VerifyAuditLog(**store);
    ASSERT_THAT(verification, IsOk());
    EXPECT_TRUE(verification->ok) << verification->reason;
    EXPECT_EQ(verification->rows_verified, 2);
  }

  // Writable: migrated in place; old and new rows verify together.
  {
    auto store = SqliteLabelStore::Open(options);
    ASSERT_THAT(store, IsOk());
    RevealRequest reveal;
    reveal.experiment = "old";
    reveal.ids = {2, 3};
    reveal.role = "client";
    reveal.peer = "ipv4:10.0.0.7";
    auto revealed = (*store)->Reveal(reveal);
    ASSERT_THAT(revealed, IsOk());
    EXPECT_EQ(revealed->spent, 3);
    EvaluationRequest evaluation;
    evaluation.experiment = "old";
    evaluation.peer = "ipv4:10.0.0.7";
    evaluation.max_total = 2;
    auto evaluated = (*store)->RecordEvaluation(evaluation);
    ASSERT_THAT(evaluated, IsOk());
    EXPECT_TRUE(evaluated->allowed);
    auto rows = (*store)->ListAudit("", 0, 10);
    ASSERT_THAT(rows, IsOk());
    ASSERT_EQ(rows->size(), 4u);
    EXPECT_EQ((*rows)[2].role, "client");
    EXPECT_EQ((*rows)[2].peer, "ipv4:10.0.0.7");
    auto verification = VerifyAuditLog(**store);
    ASSERT_THAT(verification, IsOk());
    EXPECT_TRUE(verification->ok) << verification->reason;
    EXPECT_EQ(verification->rows_verified, 4);
    // The old evaluation counts towards the server-wide cap.
    evaluated = (*store)->RecordEvaluation(evaluation);
    ASSERT_THAT(evaluated, IsOk());
    EXPECT_FALSE(evaluated->allowed);
    EXPECT_EQ(evaluated->denial, "server-wide evaluation cap of 2 reached");
    // The new rows record the terms they were decided under, the server-wide
    // cap included, and verify against the old rows' counts.
    rows = (*store)->ListAudit("", 0, 10);
    ASSERT_THAT(rows, IsOk());
    ASSERT_EQ(rows->size(), 5u);
    EXPECT_EQ((*rows)[2].detail, "budget=10 spent=3");
    EXPECT_EQ((*rows)[3].detail,
              "evaluations=2 evaluation_cap=5 total=2 total_cap=2");
    EXPECT_EQ((*rows)[4].detail,
              "evaluations=2 evaluation_cap=5 total=2 total_cap=2; "
              "server-wide evaluation cap of 2 reached");
    verification = VerifyAuditLog(**store);
    ASSERT_THAT(verification, IsOk());
    EXPECT_TRUE(verification->ok) << verification->reason;
  }
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(db.c_str(), &raw), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(raw,
                               "SELECT value FROM metadata WHERE key = "
                               "'schema_version'",
                               -1, &stmt, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(
                sqlite3_column_text(stmt, 0))),
            "2");
  sqlite3_finalize(stmt);
  sqlite3_close(raw);
}

// Store failures are UNAVAILABLE (worth a retry), DATA_LOSS or INTERNAL, and
// never RESOURCE_EXHAUSTED, which the trainer takes as "over budget".
TEST(StoreErrorStatusTest, SqliteCodesMapToTheContract) {
  for (int rc : {SQLITE_FULL, SQLITE_NOMEM, SQLITE_READONLY, SQLITE_CANTOPEN,
                 SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR, SQLITE_PROTOCOL,
                 SQLITE_IOERR_WRITE, SQLITE_READONLY_DBMOVED,
                 SQLITE_CANTOPEN_NOTEMPDIR}) {
    EXPECT_THAT(SqliteErrorStatus(rc, "COMMIT: database or disk is full"),
                StatusIs(absl::StatusCode::kUnavailable,
                         "COMMIT: database or disk is full"))
        << "rc " << rc;
  }
  for (int rc : {SQLITE_CORRUPT, SQLITE_NOTADB, SQLITE_CORRUPT_INDEX}) {
    EXPECT_THAT(SqliteErrorStatus(rc, "m"),
                StatusIs(absl::StatusCode::kDataLoss, "m"))
        << "rc " << rc;
  }
  for (int rc : {SQLITE_ERROR, SQLITE_INTERNAL, SQLITE_PERM, SQLITE_AUTH,
                 SQLITE_CONSTRAINT, SQLITE_MISUSE, SQLITE_RANGE}) {
    EXPECT_THAT(SqliteErrorStatus(rc, "m"),
                StatusIs(absl::StatusCode::kInternal, "m"))
        << "rc " << rc;
  }
}

TEST(StoreErrorStatusTest, PostgresStatesMapToTheContract) {
  // Lost connection, serialization failure, deadlock, disk full, out of
  // memory, too many connections, admin shutdown, lock not available,
  // read-only transaction.
  for (const char* state : {"", "08006", "40001", "40P01", "53100", "53200",
                            "53300", "57P01", "55P03", "25006"}) {
    EXPECT_THAT(PostgresErrorStatus(state, "postgres: COMMIT: disk full"),
                StatusIs(absl::StatusCode::kUnavailable,
                         "postgres: COMMIT: disk full"))
        << "state \"" << state << "\"";
  }
  for (const char* state : {"XX001", "XX002"}) {
    EXPECT_THAT(PostgresErrorStatus(state, "m"),
                StatusIs(absl::StatusCode::kDataLoss, "m"))
        << "state " << state;
  }
  // Undefined table, insufficient privilege, invalid text, failed
  // transaction, unique violation, internal error.
  for (const char* state :
       {"42P01", "42501", "22P02", "25P02", "23505", "XX000"}) {
    EXPECT_THAT(PostgresErrorStatus(state, "m"),
                StatusIs(absl::StatusCode::kInternal, "m"))
        << "state " << state;
  }
}

TEST(LabelStoreTest, OutcomeNamesRoundTrip) {
  for (Outcome outcome :
       {Outcome::kGranted, Outcome::kDeniedBudget, Outcome::kDeniedInvalid,
        Outcome::kEvaluated, Outcome::kDeniedEvaluationCap}) {
    EXPECT_THAT(ParseOutcome(OutcomeName(outcome)), IsOkAndHolds(outcome));
  }
  EXPECT_EQ(OutcomeName(Outcome::kDeniedEvaluationCap),
            "DENIED_EVALUATION_CAP");
  EXPECT_THAT(ParseOutcome("granted"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(SplitName(Split::kTrain), "train");
  EXPECT_EQ(SplitName(Split::kTest), "test");
}

// The asynchronous writes decide as the synchronous ones, fill in the
// labels, and call `done` exactly once after the commit.
TEST_P(LabelStoreContractTest, AsyncWritesMatchTheSyncForms) {
  TestDir dir;
  auto opened = Open(SyntheticStoreOptions(dir.path(), 100, 20));
  ASSERT_THAT(opened, IsOk());
  LabelStore& store = **opened;
  ASSERT_THAT(store.CreateExperiment(Experiment("e", 3), nullptr), IsOk());
  absl::Notification revealed;
  std::atomic<int> reveal_calls{0};
  absl::StatusOr<RevealResult> first;
  store.RevealAsync(Reveal("e", {4, 5}), [&](absl::StatusOr<RevealResult> r) {
    first = std::move(r);
    ++reveal_calls;
    revealed.Notify();
  });
  revealed.WaitForNotification();
  ASSERT_THAT(first, IsOk());
  EXPECT_TRUE(first->granted);
  EXPECT_THAT(first->labels, ElementsAre(TrainLabel(4), TrainLabel(5)));
  EXPECT_EQ(first->audit_sequence, 1);

  absl::Notification denied_done;
  absl::StatusOr<RevealResult> denied;
  store.RevealAsync(Reveal("e", {6, 7}), [&](absl::StatusOr<RevealResult> r) {
    denied = std::move(r);
    ++reveal_calls;
    denied_done.Notify();
  });
  denied_done.WaitForNotification();
  ASSERT_THAT(denied, IsOk());
  EXPECT_FALSE(denied->granted);
  EXPECT_THAT(denied->labels, IsEmpty());

  absl::Notification invalid_done;
  store.RevealAsync(Reveal("e", {100}), [&](absl::StatusOr<RevealResult> r) {
    EXPECT_THAT(r, StatusIs(absl::StatusCode::kInvalidArgument));
    ++reveal_calls;
    invalid_done.Notify();
  });
  invalid_done.WaitForNotification();

  absl::Notification evaluated;
  EvaluationRequest evaluation;
  evaluation.experiment = "e";
  store.RecordEvaluationAsync(evaluation,
                              [&](absl::StatusOr<EvaluationResult> r) {
                                EXPECT_THAT(r, IsOk());
                                EXPECT_EQ(r->audit_sequence, 3);
                                evaluated.Notify();
                              });
  evaluated.WaitForNotification();
  absl::Notification appended;
  store.AppendAuditAsync(InvalidQueryRow("e"), [&](absl::StatusOr<int64_t> r) {
    EXPECT_THAT(r, IsOkAndHolds(4));
    appended.Notify();
  });
  appended.WaitForNotification();
  EXPECT_EQ(reveal_calls, 3);
  auto verification = VerifyAuditLog(store);
  ASSERT_THAT(verification, IsOk());
  EXPECT_TRUE(verification->ok) << verification->reason;
  EXPECT_EQ(verification->rows_verified, 4);
}

// Free text with bytes a database may mangle (NUL, invalid UTF-8, quotes,
// tabs, backslashes) is stored and read back exactly, so the chain verifies.
TEST_P(LabelStoreContractTest, AuditTextRoundTripsExactly) {
  TestDir dir;
  auto opened = Open(SyntheticStoreOptions(dir.path(), 100, 20));
  ASSERT_THAT(opened, IsOk());
  LabelStore& store = **opened;
  const std::string name("e'\"\\\t\n x", 9);
  ASSERT_THAT(store.CreateExperiment(Experiment(name, 3), nullptr), IsOk());
  RevealRequest request = Reveal(name, {1});
  request.client = std::string("a\0b\xff\t\\N", 9);
  request.peer = "ipv6:[::1]";
  ASSERT_THAT(store.Reveal(request), IsOk());
  auto rows = store.ListAudit(name, 0, 10);
  ASSERT_THAT(rows, IsOk());
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].experiment, name);
  EXPECT_EQ((*rows)[0].client, request.client);
  EXPECT_THAT(store.GetExperiment(name), IsOk());
  EXPECT_EQ(store.GetUsage(name)->spent, 1);
  auto verification = VerifyAuditLog(store);
  ASSERT_THAT(verification, IsOk());
  EXPECT_TRUE(verification->ok) << verification->reason;
}

INSTANTIATE_TEST_SUITE_P(Sqlite, LabelStoreContractTest,
                         testing::Values(StoreKind::kSqlite), StoreKindName);
INSTANTIATE_TEST_SUITE_P(Postgres, LabelStoreContractTest,
                         testing::Values(StoreKind::kPostgres), StoreKindName);

// Two stores on one PostgreSQL database, as two oracle processes have:
// concurrent single-id and multi-id reveals on one experiment with a small
// budget never overspend it together, every granted id is in exactly one
// audit row, the chain verifies, and each sees the other's experiments.
TEST(PostgresLabelStoreTest, TwoStoresRacingNeverOverspend) {
  testdata::PostgresTestCluster* cluster = nullptr;
  REQUIRE_POSTGRES(&cluster);
  TestDir dir;
  const StoreOptions synthetic = SyntheticStoreOptions(dir.path(), 400, 20);
  auto conninfo = cluster->CreateDatabase();
  ASSERT_THAT(conninfo, IsOk());
  PostgresStoreOptions options;
  options.conninfo = *conninfo;
  options.train_labels_path = synthetic.train_labels_path;
  options.test_labels_path = synthetic.test_labels_path;
  options.train_count = 400;
  options.test_count = 20;
  auto a = PostgresLabelStore::Open(options);
  ASSERT_THAT(a, IsOk());
  auto b = PostgresLabelStore::Open(options);
  ASSERT_THAT(b, IsOk());
  constexpr int64_t kBudget = 40;
  ASSERT_THAT((*a)->CreateExperiment(Experiment("race", kBudget), nullptr),
              IsOk());
  ASSERT_THAT((*b)->CreateExperiment(Experiment("other", 5), nullptr), IsOk());
  EXPECT_THAT((*b)->GetExperiment("race"), IsOk());
  EXPECT_THAT((*a)->GetExperiment("other"), IsOk());
  ASSERT_THAT((*b)->Reveal(Reveal("race", {0})), IsOk());

  constexpr int kThreads = 8;
  constexpr int kCallsPerThread = 30;
  std::vector<std::vector<RevealResult>> granted(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kCallsPerThread; ++i) {
        LabelStore& store = (t + i) % 2 == 0 ? **a : **b;
        std::vector<int64_t> ids;
        const int64_t first = (t * 37 + i * 11) % 390;
        const int count = i % 3 == 0 ? 4 : 1;
        for (int k = 0; k < count; ++k) ids.push_back(first + k);
        auto result = store.Reveal(Reveal("race", ids));
        ASSERT_THAT(result, IsOk());
        if (result->granted) granted[t].push_back(*std::move(result));
      }
    });
  }
  for (std::thread& thread : threads) thread.join();

  std::map<int64_t, int> times_revealed;
  times_revealed[0] = 1;
  for (const auto& results : granted) {
    for (const RevealResult& result : results) {
      for (int64_t id : result.newly_revealed) ++times_revealed[id];
    }
  }
  EXPECT_LE(static_cast<int64_t>(times_revealed.size()), kBudget);
  for (const auto& [id, times] : times_revealed) {
    EXPECT_EQ(times, 1) << "id " << id;
  }
  for (LabelStore* store : {a->get(), b->get()}) {
    auto usage = store->GetUsage("race");
    ASSERT_THAT(usage, IsOk());
    EXPECT_LE(usage->spent, kBudget);
    EXPECT_EQ(usage->spent, static_cast<int64_t>(times_revealed.size()));
    EXPECT_EQ(usage->requests_granted + usage->requests_denied,
              1 + kThreads * kCallsPerThread);
  }
  // Every revealed id is in exactly one GRANTED row's ids_revealed.
  auto rows = (*a)->ListAudit("race", 0, 100000);
  ASSERT_THAT(rows, IsOk());
  std::map<int64_t, int> in_rows;
  for (const AuditRecord& row : *rows) {
    for (int64_t id : row.ids_revealed) ++in_rows[id];
  }
  EXPECT_EQ(in_rows, times_revealed);
  auto verification = VerifyAuditLog(**b);
  ASSERT_THAT(verification, IsOk());
  EXPECT_TRUE(verification->ok) << verification->reason;
  EXPECT_EQ(verification->rows_verified, 1 + kThreads * kCallsPerThread);
}

// Labels read from existing tables (--labels_table, --test_labels_table):
// kept there, hashed at the first open, refused when they change.
TEST(PostgresLabelStoreTest, LabelsFromTables) {
  testdata::PostgresTestCluster* cluster = nullptr;
  REQUIRE_POSTGRES(&cluster);
  auto conninfo = cluster->CreateDatabase();
  ASSERT_THAT(conninfo, IsOk());
  std::string sql =
      "CREATE SCHEMA data; CREATE TABLE data.train (id BIGINT PRIMARY KEY, "
      "label INTEGER); CREATE TABLE test_labels (id INTEGER, label SMALLINT);";
  for (int id = 0; id < 50; ++id) {
    absl::StrAppend(&sql, "INSERT INTO data.train VALUES (", id, ", ",
                    TrainLabel(id), ");");
  }
  for (int id = 0; id < 10; ++id) {
    absl::StrAppend(&sql, "INSERT INTO test_labels VALUES (", id, ", ",
                    testdata::TestLabel(id), ");");
  }
  ASSERT_THAT(testdata::PostgresTestCluster::Execute(*conninfo, sql), IsOk());
  PostgresStoreOptions options;
  options.conninfo = *conninfo;
  options.labels_table = "data.train";
  options.test_labels_table = "test_labels";
  {
    auto store = PostgresLabelStore::Open(options);
    ASSERT_THAT(store, IsOk());
    EXPECT_THAT((*store)->LoadLabels(Split::kTrain),
                IsOkAndHolds(TrainLabels(50)));
    EXPECT_THAT((*store)->LoadLabels(Split::kTest),
                IsOkAndHolds(TestLabels(10)));
    auto info = (*store)->GetDatasetInfo();
    ASSERT_THAT(info, IsOk());
    EXPECT_EQ(info->train.source_path, "table:data.train");
    EXPECT_EQ(info->train.content_sha256, Sha256Of(TrainLabels(50)));
    EXPECT_EQ(info->test.count, 10);
    ASSERT_THAT((*store)->CreateExperiment(Experiment("e", 5), nullptr),
                IsOk());
    auto revealed = (*store)->Reveal(Reveal("e", {49}));
    ASSERT_THAT(revealed, IsOk());
    EXPECT_THAT(revealed->labels, ElementsAre(TrainLabel(49)));
  }
  // Read-only (oraclectl) reads the labels from the recorded table.
  PostgresStoreOptions read_only;
  read_only.conninfo = *conninfo;
  read_only.read_only = true;
  {
    auto store = PostgresLabelStore::Open(read_only);
    ASSERT_THAT(store, IsOk());
    EXPECT_THAT((*store)->LoadLabels(Split::kTrain),
                IsOkAndHolds(TrainLabels(50)));
  }
  // Restarts without the table flags read the recorded tables, with or
  // without IDX files of the same labels to check against.
  PostgresStoreOptions without_flags;
  without_flags.conninfo = *conninfo;
  without_flags.train_labels_path = "";
  without_flags.test_labels_path = "";
  EXPECT_THAT(PostgresLabelStore::Open(without_flags), IsOk());
  TestDir dir;
  const StoreOptions files = SyntheticStoreOptions(dir.path(), 50, 10);
  PostgresStoreOptions same_files = without_flags;
  same_files.train_labels_path = files.train_labels_path;
  same_files.test_labels_path = files.test_labels_path;
  same_files.train_count = 50;
  same_files.test_count = 10;
  {
    auto store = PostgresLabelStore::Open(same_files);
    ASSERT_THAT(store, IsOk());
    EXPECT_THAT((*store)->LoadLabels(Split::kTrain),
                IsOkAndHolds(TrainLabels(50)));
  }
  ASSERT_THAT(testdata::PostgresTestCluster::Execute(
                  *conninfo, absl::StrCat("UPDATE data.train SET label = ",
                                          (TrainLabel(7) + 1) % 10,
                                          " WHERE id = 7")),
              IsOk());
  EXPECT_THAT(PostgresLabelStore::Open(options),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("table:data.train")));
  // Without the flags too: the tables are hashed whatever names them.
  std::vector<uint8_t> changed = TrainLabels(50);
  changed[7] = (TrainLabel(7) + 1) % 10;
  const auto refused = StatusIs(
      absl::StatusCode::kFailedPrecondition,
      AllOf(HasSubstr("labels table data.train"),
            HasSubstr(Sha256Of(TrainLabels(50))), HasSubstr(Sha256Of(changed))));
  EXPECT_THAT(PostgresLabelStore::Open(without_flags), refused);
  EXPECT_THAT(PostgresLabelStore::Open(same_files), refused);
  EXPECT_THAT(PostgresLabelStore::Open(read_only), refused);
  ASSERT_THAT(testdata::PostgresTestCluster::Execute(
                  *conninfo, "DELETE FROM test_labels WHERE id = 3"),
              IsOk());
  options.labels_table = "test_labels";
  EXPECT_THAT(PostgresLabelStore::Open(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("without gaps")));
  options.test_labels_table = "";
  EXPECT_THAT(PostgresLabelStore::Open(options),
              StatusIs(absl::StatusCode::kInvalidArgument));
  options.labels_table = "no_such_table";
  options.test_labels_table = "test_labels";
  EXPECT_THAT(PostgresLabelStore::Open(options),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("labels table no_such_table: ")));
}

}  // namespace
}  // namespace oracle_server
