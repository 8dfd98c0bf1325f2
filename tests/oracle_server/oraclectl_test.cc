#include "oracle_server/oraclectl.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_matchers.h"
#include "oracle_server/label_oracle.h"
#include "oracle_server/label_oracle_service.h"
#include "oracle_server/sqlite_label_store.h"
#include "tests/oracle_server/oracle_test_data.h"

namespace oracle_server {
namespace {

using ::common::IsOk;
using ::common::StatusIs;
using testdata::IsOkAndHolds;
using testdata::TestDir;
using testdata::TrainLabel;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::StartsWith;

constexpr int64_t kTrainCount = 1000;
constexpr int64_t kTestCount = 50;

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  return lines;
}

// Writes a database with two experiments: "alpha" (budget 3) with a granted
// query {1, 2} from peer "ipv4:10.0.0.7", a query {3, 4} denied over budget
// and one evaluation (all in role "open"), and "beta" (budget 5, token) with
// nothing. Then reopens it read-only, as oraclectl does.
class OraclectlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_path_ = dir_.path() + "/oracle.db";
    {
      auto store = SqliteLabelStore::Open(testdata::SyntheticStoreOptions(
          dir_.path(), kTrainCount, kTestCount, db_path_));
      ASSERT_THAT(store, IsOk());
      OracleOptions options;
      options.evaluate_min_predictions_per_class = 0;  // no withheld note
      auto oracle = LabelOracle::Create(options, *std::move(store));
      ASSERT_THAT(oracle, IsOk());
      oracle::v1::CreateExperimentRequest create;
      create.set_name("alpha");
      create.set_label_budget(3);
      ASSERT_THAT((*oracle)->CreateExperiment(create, ""), IsOk());
      create.set_name("beta");
      create.set_label_budget(5);
      create.set_token("t");
      ASSERT_THAT((*oracle)->CreateExperiment(create, ""), IsOk());

      oracle::v1::QueryLabelsRequest query;
      query.set_experiment("alpha");
      query.set_client("trainer");
      query.set_strategy("kcenter");
      query.set_round(1);
      query.add_ids(1);
      query.add_ids(2);
      ASSERT_THAT((*oracle)->QueryLabels(query, Caller("", "ipv4:10.0.0.7")),
                  IsOk());
      query.set_round(2);
      query.set_ids(0, 3);
      query.set_ids(1, 4);
      ASSERT_THAT((*oracle)->QueryLabels(query, ""),
                  StatusIs(absl::StatusCode::kResourceExhausted));

      oracle::v1::EvaluateRequest evaluate;
      evaluate.set_experiment("alpha");
      evaluate.set_client("trainer");
      evaluate.set_note("a, \"quoted\"");
      for (int64_t i = 0; i < kTestCount; ++i) {
        evaluate.add_predictions(testdata::TestLabel(i));
      }
      ASSERT_THAT((*oracle)->Evaluate(evaluate, ""), IsOk());
    }
    StoreOptions read_only;
    read_only.db_path = db_path_;
    read_only.read_only = true;
    auto store = SqliteLabelStore::Open(read_only);
    ASSERT_THAT(store, IsOk());
    store_ = *std::move(store);
  }

  // Closes store_, runs `sql` on the database file as someone tampering with
  // it, and reopens store_ read-only.
  void Tamper(const std::string& sql) {
    store_.reset();
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(db_path_.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr),
              SQLITE_OK)
        << sql;
    sqlite3_close(db);
    StoreOptions read_only;
    read_only.db_path = db_path_;
    read_only.read_only = true;
    auto store = SqliteLabelStore::Open(read_only);
    ASSERT_THAT(store, IsOk());
    store_ = *std::move(store);
  }

  // The hash of audit row `sequence`.
  std::string RowHash(int64_t sequence) {
    auto rows = store_->ListAudit("", sequence - 1, 1);
    EXPECT_THAT(rows, IsOk());
    if (!rows.ok() || rows->empty()) return "";
    return rows->front().hash;
  }

  TestDir dir_;
  std::string db_path_;
  std::unique_ptr<SqliteLabelStore> store_;
};

TEST_F(OraclectlTest, SummaryIsATablePerExperiment) {
  std::ostringstream out;
  ASSERT_THAT(PrintSummary(*store_, out), IsOk());
  EXPECT_EQ(out.str(),
            "experiment  budget  spent  remaining  granted  denied  "
            "evaluations\n"
            "alpha            3      2          1        1       1            "
            "1\n"
            "beta             5      0          5        0       0            "
            "0\n"
            "distinct train labels revealed across all experiments: 2\n");
}

TEST_F(OraclectlTest, LogAsTable) {
  std::ostringstream out;
  ASSERT_THAT(PrintLog(*store_, "", LogFormat::kTable, out), IsOk());
  const std::vector<std::string> lines = Lines(out.str());
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_THAT(lines[0], MatchesRegex("seq +time +experiment +client +strategy "
                                     "+round +kind +outcome +asked +revealed "
                                     "+detail"));
  EXPECT_THAT(lines[1],
              MatchesRegex("  1  [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z  alpha "
                           "+trainer  kcenter +1  query +GRANTED +2 +2  "
                           "budget=3 spent=2"));
  EXPECT_THAT(lines[2], HasSubstr("DENIED_BUDGET"));
  EXPECT_THAT(lines[2], HasSubstr("requested 2 new labels but only 1 remain"));
  EXPECT_THAT(lines[3], HasSubstr("evaluate"));
  EXPECT_THAT(lines[3], HasSubstr("accuracy=1.000000 correct=50/50"));
}

TEST_F(OraclectlTest, LogAsCsv) {
  std::ostringstream out;
  ASSERT_THAT(PrintLog(*store_, "alpha", LogFormat::kCsv, out), IsOk());
  const std::vector<std::string> lines = Lines(out.str());
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0],
            "sequence,time_unix_micros,experiment,client,strategy,round,kind,"
            "ids_asked,ids_revealed,outcome,detail,prev_hash,hash,role,peer");
  EXPECT_THAT(lines[1], MatchesRegex("1,[0-9]+,alpha,trainer,kcenter,1,query,"
                                     "1 2,1 2,GRANTED,budget=3 spent=2,0{64},"
                                     "[0-9a-f]{64},"
                                     "open,ipv4:10.0.0.7"));
  EXPECT_THAT(lines[2],
              MatchesRegex("2,[0-9]+,alpha,trainer,kcenter,2,query,3 4,,"
                           "DENIED_BUDGET,budget=3 spent=2; requested 2 new "
                           "labels but only 1 remain,[0-9a-f]{64},"
                           "[0-9a-f]{64},open,"));
  EXPECT_THAT(lines[3],
              MatchesRegex(".*,EVALUATED,\"evaluations=1 evaluation_cap=[0-9]+; "
                           "accuracy=1\\.000000 correct=50/50 note=a, "
                           "\"\"quoted\"\"\",.*"));
}

TEST_F(OraclectlTest, LogAsJsonLines) {
  std::ostringstream out;
  ASSERT_THAT(PrintLog(*store_, "", LogFormat::kJsonl, out), IsOk());
  const std::vector<std::string> lines = Lines(out.str());
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_THAT(lines[0], StartsWith("{\"sequence\":1,\"time_unix_micros\":"));
  EXPECT_THAT(lines[0],
              HasSubstr(",\"experiment\":\"alpha\",\"client\":\"trainer\","
                        "\"strategy\":\"kcenter\",\"round\":1,\"kind\":"
                        "\"query\",\"ids_asked\":[1,2],\"ids_revealed\":[1,2],"
                        "\"outcome\":\"GRANTED\",\"detail\":\"budget=3 spent=2\","
                        "\"prev_hash\":"
                        "\"0000000000000000000000000000000000000000000000000000"
                        "000000000000\",\"hash\":\""));
  EXPECT_THAT(lines[0],
              MatchesRegex(".*,\"hash\":\"[0-9a-f]{64}\",\"role\":\"open\","
                           "\"peer\":\"ipv4:10.0.0.7\"\\}"));
  EXPECT_THAT(lines[1], HasSubstr("\"ids_asked\":[3,4],\"ids_revealed\":[]"));
  EXPECT_THAT(lines[1], HasSubstr(",\"role\":\"open\",\"peer\":\"\"}"));
  EXPECT_THAT(lines[2],
              MatchesRegex(".*\"detail\":\"evaluations=1 evaluation_cap=[0-9]+; "
                           "accuracy=1\\.000000 correct=50/50 note=a, "
                           "\\\\\"quoted\\\\\"\".*"));
}

TEST_F(OraclectlTest, LogFiltersByExperiment) {
  std::ostringstream out;
  ASSERT_THAT(PrintLog(*store_, "beta", LogFormat::kJsonl, out), IsOk());
  EXPECT_EQ(out.str(), "");
  EXPECT_THAT(PrintLog(*store_, "ghost", LogFormat::kTable, out),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(OraclectlTest, VerifyReportsOkOrTheFirstBadRow) {
  std::ostringstream ok;
  EXPECT_THAT(PrintVerification(*store_, ok), IsOkAndHolds(true));
  EXPECT_EQ(ok.str(), "OK: 3 rows verified\n");
  store_.reset();

  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(db_path_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "UPDATE audit SET round = 7 WHERE seq = 2",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);

  StoreOptions read_only;
  read_only.db_path = db_path_;
  read_only.read_only = true;
  auto store = SqliteLabelStore::Open(read_only);
  ASSERT_THAT(store, IsOk());
  std::ostringstream fail;
  EXPECT_THAT(PrintVerification(**store, fail), IsOkAndHolds(false));
  EXPECT_THAT(fail.str(), StartsWith("FAIL at row 2: hash "));
  EXPECT_THAT(fail.str(), HasSubstr("does not match the row's content"));
}

TEST_F(OraclectlTest, HeadIsTheLastRowAndVerifyChecksASavedOne) {
  std::ostringstream head;
  ASSERT_THAT(PrintHead(*store_, head), IsOk());
  EXPECT_EQ(head.str(), absl::StrCat("3 ", RowHash(3), "\n"));

  std::string line = head.str();
  line.pop_back();
  VerifyOptions options;
  ASSERT_THAT(ParseAuditHead(line), IsOk());
  options.expected_head = *ParseAuditHead(line);
  std::ostringstream out;
  EXPECT_THAT(PrintVerification(*store_, options, out), IsOkAndHolds(true));
  EXPECT_EQ(out.str(), "OK: 3 rows verified; saved head row 3 matches\n");

  // A head saved before the last row: the log grew since, which is fine.
  options.expected_head = AuditHead{2, RowHash(2)};
  std::ostringstream grown;
  EXPECT_THAT(PrintVerification(*store_, options, grown), IsOkAndHolds(true));
  EXPECT_EQ(grown.str(), "OK: 3 rows verified; saved head row 2 matches\n");
}

// The store's own head lives in the same database: cut the last row and move
// that head back, and only a head saved elsewhere shows the cut.
TEST_F(OraclectlTest, SavedHeadCatchesRowsCutOffTheEnd) {
  VerifyOptions options;
  options.expected_head = AuditHead{3, RowHash(3)};
  const std::string row2_hash = RowHash(2);
  Tamper("DELETE FROM audit WHERE seq = 3");
  Tamper("UPDATE metadata SET value = '2' WHERE key = 'audit_head_seq'");
  Tamper("UPDATE metadata SET value = '" + row2_hash +
         "' WHERE key = 'audit_head_hash'");

  std::ostringstream unanchored;
  EXPECT_THAT(PrintVerification(*store_, unanchored), IsOkAndHolds(true));
  EXPECT_EQ(unanchored.str(), "OK: 2 rows verified\n");

  std::ostringstream anchored;
  EXPECT_THAT(PrintVerification(*store_, options, anchored),
              IsOkAndHolds(false));
  EXPECT_EQ(anchored.str(),
            absl::StrCat("FAIL at row 3: the log ends at row 2 but the saved "
                         "head is row 3 (",
                         options.expected_head->hash,
                         "); rows were removed from the end\n"));
}

TEST_F(OraclectlTest, SavedHeadCatchesARowWithAnotherHash) {
  VerifyOptions options;
  options.expected_head = AuditHead{2, RowHash(3)};
  std::ostringstream out;
  EXPECT_THAT(PrintVerification(*store_, options, out), IsOkAndHolds(false));
  EXPECT_THAT(out.str(), StartsWith(absl::StrCat(
                             "FAIL at row 2: hash ", RowHash(2),
                             " is not the saved head's (", RowHash(3), ")")));
}

TEST_F(OraclectlTest, HeadOfALogThatDoesNotVerifyIsDataLoss) {
  Tamper("UPDATE audit SET round = 7 WHERE seq = 2");
  std::ostringstream out;
  EXPECT_THAT(
      PrintHead(*store_, out),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("FAIL at row 2: hash ")));
  EXPECT_EQ(out.str(), "");
}

TEST(OraclectlFormatTest, ParsesLogFormats) {
  EXPECT_THAT(ParseLogFormat("table"), IsOkAndHolds(LogFormat::kTable));
  EXPECT_THAT(ParseLogFormat("csv"), IsOkAndHolds(LogFormat::kCsv));
  EXPECT_THAT(ParseLogFormat("jsonl"), IsOkAndHolds(LogFormat::kJsonl));
  EXPECT_THAT(
      ParseLogFormat("json"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"json\"")));
}

TEST(OraclectlQueryTest, CreatesOrJoinsAndPrintsLabels) {
  TestDir dir;
  auto store = SqliteLabelStore::Open(
      testdata::SyntheticStoreOptions(dir.path(), kTrainCount, kTestCount));
  ASSERT_THAT(store, IsOk());
  auto oracle = LabelOracle::Create(OracleOptions(), *std::move(store));
  ASSERT_THAT(oracle, IsOk());
  ServerOptions options;
  options.host = "127.0.0.1";
  options.port = 0;
  auto running = StartOracleServer(options, oracle->get());
  ASSERT_THAT(running, IsOk());
  auto stub = oracle::v1::LabelOracle::NewStub(
      running->server->InProcessChannel(grpc::ChannelArguments()));

  QueryCommand command;
  command.experiment = "manual";
  command.token = "tok";
  command.budget = 3;
  command.ids = {7, 9};
  std::ostringstream out;
  ASSERT_THAT(RunQuery(*stub, command, out), IsOk());
  EXPECT_EQ(out.str(), absl::StrCat("7 ", TrainLabel(7), "\n9 ", TrainLabel(9),
                                    "\nremaining 1\n"));

  // Joining again costs nothing for repeats; the budget flag is the same.
  command.ids = {9, 11};
  std::ostringstream again;
  ASSERT_THAT(RunQuery(*stub, command, again), IsOk());
  EXPECT_THAT(Lines(again.str()),
              ElementsAre(absl::StrCat("9 ", TrainLabel(9)),
                          absl::StrCat("11 ", TrainLabel(11)), "remaining 0"));

  command.ids = {12};
  std::ostringstream denied;
  EXPECT_THAT(RunQuery(*stub, command, denied),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       "requested 1 new labels but only 0 remain"));
  EXPECT_EQ(denied.str(), "");

  command.token = "wrong";
  EXPECT_THAT(RunQuery(*stub, command, denied),
              StatusIs(absl::StatusCode::kUnauthenticated));

  auto rows = (*oracle)->store().ListAudit("manual", 0, 10);
  ASSERT_THAT(rows, IsOk());
  ASSERT_EQ(rows->size(), 3u);
  EXPECT_EQ((*rows)[0].client, "oraclectl");
  running->server->Shutdown();
}

// An operator creates experiments with the admin token and hands out their
// tokens; the summary counts each id once however many experiments saw it.
TEST(OraclectlCreateTest, OperatorCreatesAndSummaryCountsDistinctLabels) {
  TestDir dir;
  auto store = SqliteLabelStore::Open(
      testdata::SyntheticStoreOptions(dir.path(), kTrainCount, kTestCount));
  ASSERT_THAT(store, IsOk());
  OracleOptions oracle_options;
  oracle_options.admin_token = "admin";
  auto oracle = LabelOracle::Create(oracle_options, *std::move(store));
  ASSERT_THAT(oracle, IsOk());
  ServerOptions options;
  options.host = "127.0.0.1";
  options.port = 0;
  auto running = StartOracleServer(options, oracle->get());
  ASSERT_THAT(running, IsOk());
  auto stub = oracle::v1::LabelOracle::NewStub(
      running->server->InProcessChannel(grpc::ChannelArguments()));

  CreateCommand create;
  create.experiment = "exp1";
  create.budget = 3;
  std::ostringstream out;
  EXPECT_THAT(RunCreate(*stub, create, out),
              StatusIs(absl::StatusCode::kUnauthenticated));
  create.token = "t1";
  EXPECT_THAT(RunCreate(*stub, create, out),
              StatusIs(absl::StatusCode::kPermissionDenied));
  create.admin_token = "not-admin";
  EXPECT_THAT(RunCreate(*stub, create, out),
              StatusIs(absl::StatusCode::kPermissionDenied));
  create.admin_token = "admin";
  ASSERT_THAT(RunCreate(*stub, create, out), IsOk());
  ASSERT_THAT(RunCreate(*stub, create, out), IsOk());
  create.experiment = "exp2";
  create.token = "t2";
  ASSERT_THAT(RunCreate(*stub, create, out), IsOk());
  EXPECT_EQ(out.str(),
            "created experiment exp1 (budget 3)\n"
            "experiment exp1 exists (budget 3)\n"
            "created experiment exp2 (budget 3)\n");

  // The trainers hold only their experiment tokens.
  QueryCommand query;
  query.experiment = "exp1";
  query.token = "t1";
  query.ids = {7, 9};
  std::ostringstream ignored;
  ASSERT_THAT(RunQuery(*stub, query, ignored), IsOk());
  query.experiment = "exp2";
  query.token = "t2";
  query.ids = {9, 11};
  ASSERT_THAT(RunQuery(*stub, query, ignored), IsOk());
  query.experiment = "exp3";
  EXPECT_THAT(RunQuery(*stub, query, ignored),
              StatusIs(absl::StatusCode::kPermissionDenied));

  std::ostringstream summary;
  ASSERT_THAT(PrintSummary((*oracle)->store(), summary), IsOk());
  EXPECT_THAT(summary.str(),
              HasSubstr("\ndistinct train labels revealed across all "
                        "experiments: 3\n"));
  running->server->Shutdown();
}

}  // namespace
}  // namespace oracle_server
