#include "oracle_server/label_oracle.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/status_matchers.h"
#include "oracle_server/audit_chain.h"
#include "oracle_server/failure_injecting_label_store.h"
#include "oracle_server/sqlite_label_store.h"
#include "tests/oracle_server/oracle_test_data.h"

namespace oracle_server {
namespace {

using ::common::IsOk;
using ::common::StatusIs;
using testdata::TestDir;
using testdata::TrainLabel;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::SizeIs;

constexpr int64_t kTrainCount = 1000;
constexpr int64_t kTestCount = 50;

std::unique_ptr<LabelOracle> MakeOracle(const TestDir& dir,
                                        OracleOptions options = {},
                                        const std::string& db = ":memory:") {
  auto store = SqliteLabelStore::Open(
      testdata::SyntheticStoreOptions(dir.path(), kTrainCount, kTestCount, db));
  EXPECT_THAT(store, IsOk());
  if (!store.ok()) return nullptr;
  auto oracle = LabelOracle::Create(options, *std::move(store));
  EXPECT_THAT(oracle, IsOk());
  return oracle.ok() ? *std::move(oracle) : nullptr;
}

oracle::v1::CreateExperimentRequest Create(const std::string& name,
                                           int64_t budget,
                                           const std::string& token = "") {
  oracle::v1::CreateExperimentRequest request;
  request.set_name(name);
  request.set_label_budget(budget);
  request.set_token(token);
  return request;
}

oracle::v1::QueryLabelsRequest Query(const std::string& experiment,
                                     const std::vector<int64_t>& ids) {
  oracle::v1::QueryLabelsRequest request;
  request.set_experiment(experiment);
  request.mutable_ids()->Add(ids.begin(), ids.end());
  request.set_client("test");
  request.set_strategy("random");
  request.set_round(1);
  return request;
}

oracle::v1::GetBudgetRequest Budget(const std::string& experiment) {
  oracle::v1::GetBudgetRequest request;
  request.set_experiment(experiment);
  return request;
}

oracle::v1::EvaluateRequest Evaluation(const std::string& experiment,
                                       std::vector<int32_t> predictions) {
  oracle::v1::EvaluateRequest request;
  request.set_experiment(experiment);
  request.mutable_predictions()->Add(predictions.begin(), predictions.end());
  request.set_client("test");
  request.set_note("round 1");
  return request;
}

std::vector<int32_t> PerfectPredictions() {
  std::vector<int32_t> predictions;
  for (int64_t i = 0; i < kTestCount; ++i) {
    predictions.push_back(testdata::TestLabel(i));
  }
  return predictions;
}

std::vector<int64_t> IdsAsked(const oracle::v1::AuditRow& row) {
  return std::vector<int64_t>(row.ids_asked().begin(), row.ids_asked().end());
}

std::vector<int32_t> LabelsOf(const std::vector<int64_t>& ids) {
  std::vector<int32_t> labels;
  for (int64_t id : ids) labels.push_back(TrainLabel(id));
  return labels;
}

TEST(LabelOracleTest, CreateRejectsBadOptions) {
  TestDir dir;
  auto store = SqliteLabelStore::Open(
      testdata::SyntheticStoreOptions(dir.path(), kTrainCount, kTestCount));
  ASSERT_THAT(store, IsOk());
  OracleOptions options;
  options.max_batch = 0;
  EXPECT_THAT(
      LabelOracle::Create(options, *std::move(store)),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_batch (0)")));
}

TEST(LabelOracleTest, CreateExperimentIsIdempotentByName) {
  TestDir dir;
  OracleOptions options;
  options.default_budget = 42;
  auto oracle = MakeOracle(dir, options);
  ASSERT_NE(oracle, nullptr);
  EXPECT_EQ(oracle->train_count(), kTrainCount);
  EXPECT_EQ(oracle->test_count(), kTestCount);

  auto first = oracle->CreateExperiment(Create("exp-1.a_b", 0), "");
  ASSERT_THAT(first, IsOk());
  EXPECT_TRUE(first->created());
  EXPECT_EQ(first->name(), "exp-1.a_b");
  EXPECT_EQ(first->label_budget(), 42);

  auto again = oracle->CreateExperiment(Create("exp-1.a_b", 0), "");
  ASSERT_THAT(again, IsOk());
  EXPECT_FALSE(again->created());
  EXPECT_EQ(again->id(), first->id());
  EXPECT_EQ(again->label_budget(), 42);

  auto same_budget = oracle->CreateExperiment(Create("exp-1.a_b", 42), "");
  ASSERT_THAT(same_budget, IsOk());
  EXPECT_FALSE(same_budget->created());

  EXPECT_THAT(oracle->CreateExperiment(Create("exp-1.a_b", 43), ""),
              StatusIs(absl::StatusCode::kAlreadyExists,
                       HasSubstr("label_budget 42, not 43")));
  EXPECT_THAT(
      oracle->CreateExperiment(Create("exp-1.a_b", 0, "secret"), ""),
      StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("without a token")));

  auto other = oracle->CreateExperiment(Create("other", 7), "");
  ASSERT_THAT(other, IsOk());
  EXPECT_TRUE(other->created());
  EXPECT_NE(other->id(), first->id());
  EXPECT_EQ(other->label_budget(), 7);
}

TEST(LabelOracleTest, CreateExperimentValidatesNameAndBudget) {
  TestDir dir;
  auto oracle = MakeOracle(dir);
  ASSERT_NE(oracle, nullptr);
  EXPECT_THAT(oracle->CreateExperiment(Create("", 1), ""),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("1 to 128 characters")));
  EXPECT_THAT(
      oracle->CreateExperiment(Create(std::string(129, 'a'), 1), ""),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("got 129")));
  EXPECT_THAT(oracle->CreateExperiment(Create(std::string(128, 'a'), 1), ""),
              IsOk());
  EXPECT_THAT(
      oracle->CreateExperiment(Create("has space", 1), ""),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"has space\"")));
  EXPECT_THAT(oracle->CreateExperiment(Create("a/b", 1), ""),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(
      oracle->CreateExperiment(Create("neg", -1), ""),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("got -1")));
}

TEST(LabelOracleTest, ExactBudgetIsGranted) {
  TestDir dir;
  auto oracle = MakeOracle(dir);
  ASSERT_NE(oracle, nullptr);
  ASSERT_THAT(oracle->CreateExperiment(Create("e", 5), ""), IsOk());
  const std::vector<int64_t> ids = {999, 0, 17, 500, 3};
  auto response = oracle->QueryLabels(Query("e", ids), "");
  ASSERT_THAT(response, IsOk());
  EXPECT_THAT(response->labels(), ElementsAreArray(LabelsOf(ids)));
  EXPECT_EQ(response->newly_revealed(), 5);
  EXPECT_EQ(response->remaining(), 0);
  EXPECT_EQ(response->audit_sequence(), 1);

  auto budget = oracle->GetBudget(Budget("e"), "");
  ASSERT_THAT(budget, IsOk());
  EXPECT_EQ(budget->experiment(), "e");
  EXPECT_EQ(budget->label_budget(), 5);
  EXPECT_EQ(budget->spent(), 5);
  EXPECT_EQ(budget->remaining(), 0);
  EXPECT_EQ(budget->requests_granted(), 1);
  EXPECT_EQ(budget->requests_denied(), 0);
}

TEST(LabelOracleTest, OneOverBudgetIsDeniedAndRevealsNothing) {
  TestDir dir;
  auto oracle = MakeOracle(dir);
  ASSERT_NE(oracle, nullptr);
  ASSERT_THAT(oracle->CreateExperiment(Create("e", 5), ""), IsOk());
  EXPECT_THAT(oracle->QueryLabels(Query("e", {1, 2, 3, 4, 5, 6}), ""),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       "requested 6 new labels but only 5 remain"));
  auto budget = oracle->GetBudget(Budget("e"), "");
  ASSERT_THAT(budget, IsOk());
  EXPECT_EQ(budget->spent(), 0);
  EXPECT_EQ(budget->remaining(), 5);
  EXPECT_EQ(budget->requests_granted(), 0);
  EXPECT_EQ(budget->requests_denied(), 1);

  oracle::v1::ListQueriesRequest list;
  auto rows = oracle->ListQueries(list, "");
  ASSERT_THAT(rows, IsOk());
  ASSERT_EQ(rows->rows_size(), 1);
  EXPECT_EQ(rows->rows(0).outcome(), oracle::v1::DENIED_BUDGET);
  EXPECT_THAT(rows->rows(0).ids_asked(), ElementsAre(1, 2, 3, 4, 5, 6));
  EXPECT_THAT(rows->rows(0).ids_revealed(), ElementsAre());
}

TEST(LabelOracleTest, RepeatsAreFree) {
  TestDir dir;
  auto oracle = MakeOracle(dir);
  ASSERT_NE(oracle, nullptr);
  ASSERT_THAT(oracle->CreateExperiment(Create("e", 3), ""), IsOk());
  ASSERT_THAT(oracle->QueryLabels(Query("e", {7, 8, 9}), ""), IsOk());
  for (int i = 0; i < 3; ++i) {
    auto repeat = oracle->QueryLabels(Query("e", {9, 7}), "");
    ASSERT_THAT(repeat, IsOk());
    EXPECT_THAT(repeat->labels(), ElementsAre(TrainLabel(9), TrainLabel(7)));
    EXPECT_EQ(repeat->newly_revealed(), 0);
    EXPECT_EQ(repeat->remaining(), 0);
  }
  auto budget = oracle->GetBudget(Budget("e"), "");
  ASSERT_THAT(budget, IsOk());
  EXPECT_EQ(budget->spent(), 3);
  EXPECT_EQ(budget->requests_granted(), 4);
}

TEST(LabelOracleTest, PartlyRepeatedBatchIsAllOrNothing) {
  TestDir dir;
  auto oracle = MakeOracle(dir);
  ASSERT_NE(oracle, nullptr);
  ASSERT_THAT(oracle->CreateExperiment(Create("e", 4), ""), IsOk());
  ASSERT_THAT(oracle->QueryLabels(Query("e", {0, 1, 2}), ""), IsOk());
  EXPECT_THAT(oracle->QueryLabels(Query("e", {1, 2, 3, 4}), ""),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       "requested 2 new labels but only 1 remain"));
  auto budget = oracle->GetBudget(Budget("e"), "");
  ASSERT_THAT(budget, IsOk());
  EXPECT_EQ(budget->spent(), 3);

  auto fits = oracle->QueryLabels(Query("e", {1, 2, 3}), "");
  ASSERT_THAT(fits, IsOk());
  EXPECT_EQ(fits->newly_revealed(), 1);
  EXPECT_EQ(fits->remaining(), 0);
}

TEST(LabelOracleTest, InvalidQueriesAreDeniedAndAudited) {
  TestDir dir;
  OracleOptions options;
  options.max_batch = 4;
  auto oracle = MakeOracle(dir, options);
  ASSERT_NE(oracle, nullptr);
  ASSERT_THAT(oracle->CreateExperiment(Create("e", 100), ""), IsOk());

  EXPECT_THAT(
      oracle->QueryLabels(Query("e", {}), ""),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ids is empty")));
  EXPECT_THAT(oracle->QueryLabels(Query("e", {1, 2, 3, 4, 5}), ""),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "batch of 5 ids exceeds max_batch 4"));
  EXPECT_THAT(oracle->QueryLabels(Query("e", {1, -1}), ""),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "id -1 at index 1 is not in [0, 1000)"));
  EXPECT_THAT(oracle->QueryLabels(Query("e", {kTrainCount}), ""),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "id 1000 at index 0 is not in [0, 1000)"));
  EXPECT_THAT(oracle->QueryLabels(Query("e", {5, 7, 6, 7}), ""),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "id 7 appears twice (at index 1 and 3)"));
  EXPECT_THAT(oracle->QueryLabels(Query("", {1}), ""),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("experiment name is required")));

  auto budget = oracle->GetBudget(Budget("e"), "");
  ASSERT_THAT(budget, IsOk());
  EXPECT_EQ(budget->spent(), 0);
  EXPECT_EQ(budget->requests_denied(), 5);

  oracle::v1::ListQueriesRequest list;
  list.set_experiment("e");
  auto rows = oracle->ListQueries(list, "");
  ASSERT_THAT(rows, IsOk());
  ASSERT_EQ(rows->rows_size(), 5);
  for (const oracle::v1::AuditRow& row : rows->rows()) {
    EXPECT_EQ(row.outcome(), oracle::v1::DENIED_INVALID);
    EXPECT_EQ(row.kind(), "query");
    EXPECT_EQ(row.client(), "test");
    EXPECT_EQ(row.strategy(), "random");
    EXPECT_EQ(row.round(), 1);
    EXPECT_THAT(row.ids_revealed(), ElementsAre());
  }
  EXPECT_EQ(rows->rows(4).detail(),
            "INVALID_ARGUMENT: id 7 appears twice (at index 1 and 3)");
  EXPECT_THAT(rows->rows(4).ids_asked(), ElementsAre(5, 7, 6, 7));
}

// A denied query's row keeps at most the first 100 ids asked, whether the
// batch was invalid or the caller was refused, and the chain still verifies.
TEST(LabelOracleTest, DeniedQueriesKeepOnlyTheFirstIdsAsked) {
  TestDir dir;
  OracleOptions options;
  options.max_batch = 200;
  auto oracle = MakeOracle(dir, options);
  ASSERT_NE(oracle, nullptr);
  ASSERT_THAT(oracle->CreateExperiment(Create("e", 100), ""), IsOk());
  ASSERT_THAT(oracle->CreateExperiment(Create("secret", 100, "t"), ""),
              IsOk());
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < 250; ++i) ids.push_back(i);
  const std::vector<int64_t> first_100(ids.begin(), ids.begin() + 100);

  EXPECT_THAT(oracle->QueryLabels(Query("e", ids), ""),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "batch of 250 ids exceeds max_batch 200"));
  EXPECT_THAT(oracle->QueryLabels(Query("e", {3, 3}), ""),
              StatusIs(absl::StatusCode::kInvalidArgument));
  const std::vector<int64_t> within_batch(ids.begin(), ids.begin() + 150);
  EXPECT_THAT(oracle->QueryLabels(Query("secret", within_batch), ""),
              StatusIs(absl::StatusCode::kUnauthenticated));

  oracle::v1::ListQueriesRequest list;
  list.set_experiment("e");
  auto rows = oracle->ListQueries(list, "");
  ASSERT_THAT(rows, IsOk());
  ASSERT_EQ(rows->rows_size(), 2);
  EXPECT_EQ(rows->rows(0).outcome(), oracle::v1::DENIED_INVALID);
  EXPECT_EQ(IdsAsked(rows->rows(0)), first_100);
  EXPECT_EQ(rows->rows(0).detail(),
            "INVALID_ARGUMENT: batch of 250 ids exceeds max_batch 200; "
            "ids_asked truncated: 250 ids, first 100 kept");
  EXPECT_THAT(rows->rows(1).ids_asked(), ElementsAre(3, 3));
  EXPECT_EQ(rows->rows(1).detail(),
            "INVALID_ARGUMENT: id 3 appears twice (at index 0 and 1)");

  list.set_experiment("secret");
  rows = oracle->ListQueries(list, "t");
  ASSERT_THAT(rows, IsOk());
  ASSERT_EQ(rows->rows_size(), 1);
  EXPECT_EQ(rows->rows(0).outcome(), oracle::v1::DENIED_INVALID);
  EXPECT_EQ(IdsAsked(rows->rows(0)), first_100);
  EXPECT_THAT(rows->rows(0).detail(),
              AllOf(HasSubstr("UNAUTHENTICATED: "),
                    HasSubstr("; ids_asked truncated: 150 ids, first 100 "
                              "kept")));

  auto verification = VerifyAuditLog(oracle->store());
  ASSERT_THAT(verification, IsOk());
  EXPECT_TRUE(verification->ok) << verification->reason;
  EXPECT_EQ(verification->rows_verified, 3);
}

TEST(LabelOracleTest, LargeBatchesNameTheFirstBadIndex) {
  TestDir dir;
  auto oracle = MakeOracle(dir);
  ASSERT_NE(oracle, nullptr);
  ASSERT_THAT(oracle->CreateExperiment(Create("e", 1000), ""), IsOk());
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < 100; ++i) ids.push_back(i);

  std::vector<int64_t> repeated = ids;
  repeated[70] = 40;
  repeated[90] = 20;
  EXPECT_THAT(oracle->QueryLabels(Query("e", repeated), ""),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "id 40 appears twice (at index 40 and 70)"));
  std::vector<int64_t> out_of_range = ids;
  out_of_range[50] = 3;
  out_of_range[80] = kTrainCount;
  out_of_range[90] = 3;
  EXPECT_THAT(oracle->QueryLabels(Query("e", out_of_range), ""),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "id 3 appears twice (at index 3 and 50)"));
  out_of_range[50] = 50;
  EXPECT_THAT(oracle->QueryLabels(Query("e", out_of_range), ""),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "id 1000 at index 80 is not in [0, 1000)"));

  auto granted = oracle->QueryLabels(Query("e", ids), "");
  ASSERT_THAT(granted, IsOk());
  EXPECT_EQ(granted->newly_revealed(), 100);
  EXPECT_THAT(granted->labels(), ElementsAreArray(LabelsOf(ids)));
}

// Calls an asynchronous form and waits for its `done`, recording the thread
// it ran on and how often it ran.
template <typename Response>
struct AsyncCall {
  absl::Notification finished;
  std::optional<absl::StatusOr<Response>> result;
  std::thread::id thread;
  int calls = 0;

  absl::AnyInvocable<void(absl::StatusOr<Response>) &&> Done() {
    return [this](absl::StatusOr<Response> value) {
      ++calls;
      thread = std::this_thread::get_id();
      result.emplace(std::move(value));
      finished.Notify();
    };
  }
  const absl::StatusOr<Response>& Wait() {
    finished.WaitForNotification();
    return *result;
  }
};

TEST(LabelOracleTest, AsyncFormsAnswerLikeTheSyncOnes) {
  TestDir dir;
  OracleOptions options;
  options.eval_cap = 1;
  options.evaluate_min_predictions_per_class = 5;  // 5 images per class
  // SqliteLabelStore completes writes on its committer thread.
  auto oracle = MakeOracle(dir, options);
  ASSERT_NE(oracle, nullptr);
  ASSERT_THAT(oracle->CreateExperiment(Create("e", 3), ""), IsOk());

  AsyncCall<oracle::v1::QueryLabelsResponse> granted;
  oracle->QueryLabelsAsync(Query("e", {4, 9}), "", granted.Done());
  ASSERT_THAT(granted.Wait(), IsOk());
  EXPECT_NE(granted.thread, std::this_thread::get_id());
  EXPECT_THAT(granted.result->value().labels(),
              ElementsAre(TrainLabel(4), TrainLabel(9)));
  EXPECT_EQ(granted.result->value().newly_revealed(), 2);
  EXPECT_EQ(granted.result->value().remaining(), 1);
  EXPECT_EQ(granted.result->value().audit_sequence(), 1);

  AsyncCall<oracle::v1::QueryLabelsResponse> over_budget;
  oracle->QueryLabelsAsync(Query("e", {1, 2}), "", over_budget.Done());
  EXPECT_THAT(over_budget.Wait(),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       "requested 2 new labels but only 1 remain"));

  AsyncCall<oracle::v1::QueryLabelsResponse> invalid;
  oracle->QueryLabelsAsync(Query("e", {2, 2}), "", invalid.Done());
  EXPECT_THAT(invalid.Wait(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "id 2 appears twice (at index 0 and 1)"));
  EXPECT_NE(invalid.thread, std::this_thread::get_id());

  // No experiment: answered before any write, on the calling thread.
  AsyncCall<oracle::v1::QueryLabelsResponse> unknown;
  oracle->QueryLabelsAsync(Query("ghost", {1}), "", unknown.Done());
  EXPECT_THAT(unknown.Wait(), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(unknown.thread, std::this_thread::get_id());

  AsyncCall<oracle::v1::EvaluateResponse> evaluated;
  oracle->EvaluateAsync(Evaluation("e", PerfectPredictions()), "",
                        evaluated.Done());
  ASSERT_THAT(evaluated.Wait(), IsOk());
  EXPECT_DOUBLE_EQ(evaluated.result->value().accuracy(), 1.0);
  EXPECT_EQ(evaluated.result->value().evaluations_left(), 0);
  EXPECT_EQ(evaluated.result->value().confusion_size(), 100);

  AsyncCall<oracle::v1::EvaluateResponse> capped;
  oracle->EvaluateAsync(Evaluation("e", PerfectPredictions()), "",
                        capped.Done());
  EXPECT_THAT(capped.Wait(), StatusIs(absl::StatusCode::kResourceExhausted,
                                      HasSubstr("has used all 1 evaluations")));

  // The synchronous forms wait for the pool's answer.
  auto repeat = oracle->QueryLabels(Query("e", {4}), "");
  ASSERT_THAT(repeat, IsOk());
  EXPECT_EQ(repeat->newly_revealed(), 0);
  EXPECT_THAT(oracle->Evaluate(Evaluation("e", {1}), ""),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("expected 50 predictions")));

  for (const auto* call : {&granted, &over_budget, &invalid, &unknown}) {
    EXPECT_EQ(call->calls, 1);
  }
  oracle::v1::ListQueriesRequest list;
  list.set_experiment("e");
  auto rows = oracle->ListQueries(list, "");
  ASSERT_THAT(rows, IsOk());
  ASSERT_EQ(rows->rows_size(), 7);
  EXPECT_EQ(rows->rows(1).outcome(), oracle::v1::DENIED_BUDGET);
  EXPECT_EQ(rows->rows(2).outcome(), oracle::v1::DENIED_INVALID);
  EXPECT_EQ(rows->rows(2).detail(),
            "INVALID_ARGUMENT: id 2 appears twice (at index 0 and 1)");
  EXPECT_THAT(rows->rows(2).ids_asked(), ElementsAre(2, 2));
  EXPECT_EQ(rows->rows(3).outcome(), oracle::v1::EVALUATED);
  EXPECT_EQ(rows->rows(4).outcome(), oracle::v1::DENIED_EVALUATION_CAP);
  EXPECT_EQ(rows->rows(5).outcome(), oracle::v1::GRANTED);
  EXPECT_EQ(rows->rows(6).outcome(), oracle::v1::DENIED_INVALID);
  EXPECT_EQ(rows->rows(6).kind(), "evaluate");
}

TEST(LabelOracleTest, UnknownExperimentIsNotFound) {
  TestDir dir;
  auto oracle = MakeOracle(dir);
  ASSERT_NE(oracle, nullptr);
  EXPECT_THAT(oracle->QueryLabels(Query("ghost", {1}), ""),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("\"ghost\"")));
  EXPECT_THAT(oracle->GetBudget(Budget("ghost"), ""),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(oracle->Evaluate(Evaluation("ghost", PerfectPredictions()), ""),
              StatusIs(absl::StatusCode::kNotFound));
  oracle::v1::ListQueriesRequest list;
  list.set_experiment("ghost");
  EXPECT_THAT(oracle->ListQueries(list, ""),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST(LabelOracleTest, TokenIsRequiredWhenSet) {
  TestDir dir;
  auto oracle = MakeOracle(dir);
  ASSERT_NE(oracle, nullptr);
  auto created = oracle->CreateExperiment(Create("e", 10, "s3cret"), "");
  ASSERT_THAT(created, IsOk());
  EXPECT_TRUE(created->created());

  // Joining needs the token, in the request or the metadata.
  EXPECT_THAT(oracle->CreateExperiment(Create("e", 0), ""),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       HasSubstr("requires a token")));
  EXPECT_THAT(
      oracle->CreateExperiment(Create("e", 0, "wrong"), ""),
      StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("wrong token")));
  EXPECT_THAT(oracle->CreateExperiment(Create("e", 0, "s3cret"), ""), IsOk());
  EXPECT_THAT(oracle->CreateExperiment(Create("e", 0), "s3cret"), IsOk());

  for (const std::string token : {"", "wrong"}) {
    SCOPED_TRACE("token \"" + token + "\"");
    EXPECT_THAT(oracle->QueryLabels(Query("e", {1}), token),
                StatusIs(absl::StatusCode::kUnauthenticated));
    EXPECT_THAT(oracle->GetBudget(Budget("e"), token),
                StatusIs(absl::StatusCode::kUnauthenticated));
    EXPECT_THAT(oracle->Evaluate(Evaluation("e", PerfectPredictions()), token),
                StatusIs(absl::StatusCode::kUnauthenticated));
    oracle::v1::ListQueriesRequest list;
    list.set_experiment("e");
    EXPECT_THAT(oracle->ListQueries(list, token),
                StatusIs(absl::StatusCode::kUnauthenticated));
  }
  auto granted = oracle->QueryLabels(Query("e", {1}), "s3cret");
  ASSERT_THAT(granted, IsOk());
  auto budget = oracle->GetBudget(Budget("e"), "s3cret");
  ASSERT_THAT(budget, IsOk());
  EXPECT_EQ(budget->spent(), 1);
  // The two unauthenticated queries were logged as denied.
  EXPECT_EQ(budget->requests_denied(), 2);
  EXPECT_EQ(budget->evaluations(), 0);
}

TEST(LabelOracleTest, EvaluateScoresAgainstTestLabels) {
  TestDir dir;
  OracleOptions options;
  options.eval_cap = 2;
  options.evaluate_min_predictions_per_class = 0;
  auto oracle = MakeOracle(dir, options);
  ASSERT_NE(oracle, nullptr);
  ASSERT_THAT(oracle->CreateExperiment(Create("e", 10), ""), IsOk());

  auto perfect = oracle->Evaluate(Evaluation("e", PerfectPredictions()), "");
  ASSERT_THAT(perfect, IsOk());
  EXPECT_DOUBLE_EQ(perfect->accuracy(), 1.0);
  EXPECT_EQ(perfect->num_classes(), 10);
  EXPECT_THAT(perfect->per_class_accuracy(), ::testing::Each(1.0));
  ASSERT_EQ(perfect->confusion_size(), 100);
  for (int truth = 0; truth < 10; ++truth) {
    for (int predicted = 0; predicted < 10; ++predicted) {
      EXPECT_EQ(perfect->confusion(truth * 10 + predicted),
                truth == predicted ? 5 : 0);
    }
  }
  EXPECT_EQ(perfect->evaluations_left(), 1);

  // Predict class 0 everywhere: right only for the 5 images of class 0.
  auto zeros = oracle->Evaluate(
      Evaluation("e", std::vector<int32_t>(kTestCount, 0)), "");
  ASSERT_THAT(zeros, IsOk());
  EXPECT_DOUBLE_EQ(zeros->accuracy(), 0.1);
  EXPECT_DOUBLE_EQ(zeros->per_class_accuracy(0), 1.0);
  EXPECT_DOUBLE_EQ(zeros->per_class_accuracy(3), 0.0);
  EXPECT_EQ(zeros->confusion(3 * 10 + 0), 5);
  EXPECT_EQ(zeros->evaluations_left(), 0);

  EXPECT_THAT(oracle->Evaluate(Evaluation("e", PerfectPredictions()), ""),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("has used all 2 evaluations")));

  auto budget = oracle->GetBudget(Budget("e"), "");
  ASSERT_THAT(budget, IsOk());
  EXPECT_EQ(budget->evaluations(), 2);
  EXPECT_EQ(budget->evaluation_cap(), 2);
  EXPECT_EQ(budget->requests_denied(), 0);

  oracle::v1::ListQueriesRequest list;
  auto rows = oracle->ListQueries(list, "");
  ASSERT_THAT(rows, IsOk());
  ASSERT_EQ(rows->rows_size(), 3);
  EXPECT_EQ(rows->rows(0).kind(), "evaluate");
  EXPECT_EQ(rows->rows(0).outcome(), oracle::v1::EVALUATED);
  // The cap and the count it was decided under come first.
  EXPECT_EQ(rows->rows(0).detail(),
            "evaluations=1 evaluation_cap=2; "
            "accuracy=1.000000 correct=50/50 note=round 1");
  EXPECT_EQ(rows->rows(1).detail(),
            "evaluations=2 evaluation_cap=2; "
            "accuracy=0.100000 correct=5/50 note=round 1");
  EXPECT_EQ(rows->rows(2).outcome(), oracle::v1::DENIED_EVALUATION_CAP);
}

// Predicting class k for one image i_k and 0 elsewhere would read label i_k
// off column k of the confusion matrix: with a class predicted for fewer than
// evaluate_min_predictions_per_class (default 100) images, only the accuracy
// comes back, and the audit row says why.
TEST(LabelOracleTest, EvaluateWithholdsPerClassResultsOfRarePredictions) {
  TestDir dir;
  auto oracle = MakeOracle(dir);
  ASSERT_NE(oracle, nullptr);
  ASSERT_THAT(oracle->CreateExperiment(Create("e", 10), ""), IsOk());

  std::vector<int32_t> probe(kTestCount, 0);
  for (int k = 1; k < 10; ++k) probe[k - 1] = k;
  auto evaluation = oracle->Evaluate(Evaluation("e", probe), "");
  ASSERT_THAT(evaluation, IsOk());
  // Right only for images 10, 20, 30 and 40 (class 0, predicted 0).
  EXPECT_DOUBLE_EQ(evaluation->accuracy(), 0.08);
  EXPECT_EQ(evaluation->num_classes(), 10);
  EXPECT_THAT(evaluation->per_class_accuracy(), ElementsAre());
  EXPECT_THAT(evaluation->confusion(), ElementsAre());
  EXPECT_EQ(evaluation->evaluations_left(), 99);

  oracle::v1::ListQueriesRequest list;
  auto rows = oracle->ListQueries(list, "");
  ASSERT_THAT(rows, IsOk());
  ASSERT_EQ(rows->rows_size(), 1);
  EXPECT_EQ(rows->rows(0).outcome(), oracle::v1::EVALUATED);
  EXPECT_EQ(rows->rows(0).detail(),
            "evaluations=1 evaluation_cap=100; "
            "accuracy=0.080000 correct=4/50 (per-class results withheld: "
            "class 1 predicted for 1 < 100 test images) note=round 1");
}

// Every class predicted for at least evaluate_min_predictions_per_class images:
// the full per-class detail; one class short: only the accuracy.
TEST(LabelOracleTest, EvaluateReturnsPerClassResultsOfASpreadOfPredictions) {
  TestDir dir;
  OracleOptions options;
  options.evaluate_min_predictions_per_class = 5;
  auto oracle = MakeOracle(dir, options);
  ASSERT_NE(oracle, nullptr);
  ASSERT_THAT(oracle->CreateExperiment(Create("e", 10), ""), IsOk());

  // Each class predicted for exactly 5 of the 50 images: right for images
  // 0-9, 20-29 and 40-49, the next class for images 10-19 and 30-39.
  std::vector<int32_t> spread = PerfectPredictions();
  for (int64_t i = 0; i < kTestCount; ++i) {
    if (i % 20 >= 10) spread[i] = (spread[i] + 1) % 10;
  }
  auto full = oracle->Evaluate(Evaluation("e", spread), "");
  ASSERT_THAT(full, IsOk());
  EXPECT_THAT(full->per_class_accuracy(), SizeIs(10));
  ASSERT_THAT(full->confusion(), SizeIs(100));
  int64_t total = 0;
  for (int64_t count : full->confusion()) total += count;
  EXPECT_EQ(total, kTestCount);

  spread[0] = 2;  // class 0 now predicted for 4 images, class 2 for 6
  auto withheld = oracle->Evaluate(Evaluation("e", spread), "");
  ASSERT_THAT(withheld, IsOk());
  EXPECT_THAT(withheld->per_class_accuracy(), ElementsAre());
  EXPECT_THAT(withheld->confusion(), ElementsAre());

  oracle::v1::ListQueriesRequest list;
  auto rows = oracle->ListQueries(list, "");
  ASSERT_THAT(rows, IsOk());
  ASSERT_EQ(rows->rows_size(), 2);
  EXPECT_EQ(rows->rows(0).detail(),
            "evaluations=1 evaluation_cap=100; "
            "accuracy=0.600000 correct=30/50 note=round 1");
  EXPECT_EQ(rows->rows(1).detail(),
            "evaluations=2 evaluation_cap=100; "
            "accuracy=0.580000 correct=29/50 (per-class results withheld: "
            "class 0 predicted for 4 < 5 test images) note=round 1");
}

// evaluate_min_predictions_per_class 0 returns per-class results whatever
// the predictions; a negative value is refused.
TEST(LabelOracleTest, EvaluateMinPredictionsPerClassZeroDisablesTheRule) {
  TestDir dir;
  OracleOptions options;
  options.evaluate_min_predictions_per_class = 0;
  auto oracle = MakeOracle(dir, options);
  ASSERT_NE(oracle, nullptr);
  ASSERT_THAT(oracle->CreateExperiment(Create("e", 10), ""), IsOk());

  std::vector<int32_t> probe(kTestCount, 0);
  for (int k = 1; k < 10; ++k) probe[k - 1] = k;
  auto evaluation = oracle->Evaluate(Evaluation("e", probe), "");
  ASSERT_THAT(evaluation, IsOk());
  EXPECT_THAT(evaluation->per_class_accuracy(), SizeIs(10));
  ASSERT_THAT(evaluation->confusion(), SizeIs(100));
  EXPECT_EQ(evaluation->confusion(0 * 10 + 1), 1);  // image 0 is class 0

  options.evaluate_min_predictions_per_class = -1;
  auto store = SqliteLabelStore::Open(
      testdata::SyntheticStoreOptions(dir.path(), kTrainCount, kTestCount));
  ASSERT_THAT(store, IsOk());
  EXPECT_THAT(LabelOracle::Create(options, *std::move(store)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("evaluate_min_predictions_per_class (-1)")));
}

// Server-wide caps count EVALUATED rows of every experiment, per peer and in
// total, and survive a restart.
TEST(LabelOracleTest, ServerWideEvaluationCaps) {
  TestDir dir;
  const std::string db = dir.path() + "/oracle.db";
  OracleOptions options;
  options.max_evaluations_per_client = 2;
  options.max_evaluations_total = 3;
  {
    auto oracle = MakeOracle(dir, options, db);
    ASSERT_NE(oracle, nullptr);
    for (const char* name : {"a", "b", "c"}) {
      ASSERT_THAT(oracle->CreateExperiment(Create(name, 10), ""), IsOk());
    }
    const Caller p1("", "ipv4:10.0.0.1");
    const Caller p2("", "ipv4:10.0.0.2");
    EXPECT_THAT(oracle->Evaluate(Evaluation("a", PerfectPredictions()), p1),
                IsOk());
    EXPECT_THAT(oracle->Evaluate(Evaluation("b", PerfectPredictions()), p1),
                IsOk());
    // A new experiment does not reset the client's count.
    EXPECT_THAT(
        oracle->Evaluate(Evaluation("c", PerfectPredictions()), p1),
        StatusIs(absl::StatusCode::kResourceExhausted,
                 "evaluation cap of 2 per client identity reached for "
                 "\"ipv4:10.0.0.1\""));
    EXPECT_THAT(oracle->Evaluate(Evaluation("c", PerfectPredictions()), p2),
                IsOk());
    EXPECT_THAT(oracle->Evaluate(Evaluation("c", PerfectPredictions()), p2),
                StatusIs(absl::StatusCode::kResourceExhausted,
                         "server-wide evaluation cap of 3 reached"));
    auto budget = oracle->GetBudget(Budget("c"), "");
    ASSERT_THAT(budget, IsOk());
    EXPECT_EQ(budget->evaluations(), 1);
    oracle::v1::ListQueriesRequest list;
    list.set_experiment("c");
    auto rows = oracle->ListQueries(list, "");
    ASSERT_THAT(rows, IsOk());
    ASSERT_EQ(rows->rows_size(), 3);
    EXPECT_EQ(rows->rows(0).outcome(), oracle::v1::DENIED_EVALUATION_CAP);
    EXPECT_EQ(rows->rows(0).peer(), "ipv4:10.0.0.1");
    EXPECT_EQ(rows->rows(1).outcome(), oracle::v1::EVALUATED);
  }
  options.max_evaluations_total = 4;
  auto reopened = MakeOracle(dir, options, db);
  ASSERT_NE(reopened, nullptr);
  EXPECT_THAT(reopened->Evaluate(Evaluation("a", PerfectPredictions()),
                                 Caller("", "ipv4:10.0.0.1")),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("per client identity")));
  EXPECT_THAT(reopened->Evaluate(Evaluation("a", PerfectPredictions()),
                                 Caller("", "ipv4:10.0.0.3")),
              IsOk());
  EXPECT_THAT(reopened->Evaluate(Evaluation("a", PerfectPredictions()),
                                 Caller("", "ipv4:10.0.0.4")),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("server-wide evaluation cap of 4")));
  auto verification = VerifyAuditLogFile(db);
  ASSERT_THAT(verification, IsOk());
  EXPECT_TRUE(verification->ok) << verification->reason;
}

TEST(LabelOracleTest, EvaluateRejectsMalformedPredictions) {
  TestDir dir;
  auto oracle = MakeOracle(dir);
  ASSERT_NE(oracle, nullptr);
  ASSERT_THAT(oracle->CreateExperiment(Create("e", 10), ""), IsOk());
  EXPECT_THAT(
      oracle->Evaluate(Evaluation("e", std::vector<int32_t>(kTestCount - 1, 0)),
                       ""),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("expected 50 predictions (one per test image), got "
                         "49")));
  EXPECT_THAT(
      oracle->Evaluate(Evaluation("e", std::vector<int32_t>(kTestCount + 1, 0)),
                       ""),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("got 51")));
  std::vector<int32_t> predictions = PerfectPredictions();
  predictions[17] = 10;
  EXPECT_THAT(oracle->Evaluate(Evaluation("e", predictions), ""),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "prediction 10 at index 17 is not in [0, 10)"));
  predictions[17] = -1;
  EXPECT_THAT(oracle->Evaluate(Evaluation("e", predictions), ""),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "prediction -1 at index 17 is not in [0, 10)"));

  auto budget = oracle->GetBudget(Budget("e"), "");
  ASSERT_THAT(budget, IsOk());
  EXPECT_EQ(budget->evaluations(), 0);
  oracle::v1::ListQueriesRequest list;
  auto rows = oracle->ListQueries(list, "");
  ASSERT_THAT(rows, IsOk());
  ASSERT_EQ(rows->rows_size(), 4);
  EXPECT_EQ(rows->rows(3).kind(), "evaluate");
  EXPECT_EQ(rows->rows(3).outcome(), oracle::v1::DENIED_INVALID);
}

TEST(LabelOracleTest, ListQueriesPagesInSequenceOrder) {
  TestDir dir;
  auto oracle = MakeOracle(dir);
  ASSERT_NE(oracle, nullptr);
  ASSERT_THAT(oracle->CreateExperiment(Create("a", 100), ""), IsOk());
  ASSERT_THAT(oracle->CreateExperiment(Create("b", 100), ""), IsOk());
  for (int64_t i = 0; i < 5; ++i) {
    ASSERT_THAT(oracle->QueryLabels(Query(i % 2 == 0 ? "a" : "b", {i}), ""),
                IsOk());
  }

  oracle::v1::ListQueriesRequest list;
  list.set_page_size(2);
  std::vector<int64_t> sequences;
  std::vector<int64_t> cursors;
  do {
    auto page = oracle->ListQueries(list, "");
    ASSERT_THAT(page, IsOk());
    EXPECT_LE(page->rows_size(), 2);
    for (const auto& row : page->rows()) sequences.push_back(row.sequence());
    cursors.push_back(page->next_after_sequence());
    list.set_after_sequence(page->next_after_sequence());
  } while (list.after_sequence() != 0);
  EXPECT_THAT(sequences, ElementsAre(1, 2, 3, 4, 5));
  EXPECT_THAT(cursors, ElementsAre(2, 4, 0));

  oracle::v1::ListQueriesRequest only_b;
  only_b.set_experiment("b");
  auto b_rows = oracle->ListQueries(only_b, "");
  ASSERT_THAT(b_rows, IsOk());
  ASSERT_EQ(b_rows->rows_size(), 2);
  EXPECT_EQ(b_rows->rows(0).sequence(), 2);
  EXPECT_EQ(b_rows->rows(1).sequence(), 4);
  EXPECT_EQ(b_rows->next_after_sequence(), 0);
  EXPECT_THAT(b_rows->rows(1).ids_revealed(), ElementsAre(3));

  // Rows carry the chain: each prev_hash is the previous row's hash.
  oracle::v1::ListQueriesRequest everything;
  auto all_rows = oracle->ListQueries(everything, "");
  ASSERT_THAT(all_rows, IsOk());
  ASSERT_EQ(all_rows->rows_size(), 5);
  EXPECT_EQ(all_rows->rows(0).prev_hash(), kGenesisHash);
  for (int i = 1; i < all_rows->rows_size(); ++i) {
    EXPECT_EQ(all_rows->rows(i).prev_hash(), all_rows->rows(i - 1).hash());
  }
  EXPECT_EQ(all_rows->rows(3).hash(), b_rows->rows(1).hash());

  oracle::v1::ListQueriesRequest bad;
  bad.set_page_size(-1);
  EXPECT_THAT(
      oracle->ListQueries(bad, ""),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_size")));
  bad.set_page_size(0);
  bad.set_after_sequence(-5);
  EXPECT_THAT(oracle->ListQueries(bad, ""),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("after_sequence")));
  oracle::v1::ListQueriesRequest huge;
  huge.set_page_size(1 << 30);
  auto all = oracle->ListQueries(huge, "");
  ASSERT_THAT(all, IsOk());
  EXPECT_EQ(all->rows_size(), 5);
}

// 16 threads race for one budget of 100 with overlapping random batches. The
// oracle must reveal exactly 100 distinct ids, never more, and the audit log
// must agree with what the callers were told.
TEST(LabelOracleTest, ConcurrentQueriesNeverExceedTheBudget) {
  TestDir dir;
  const std::string db = dir.path() + "/oracle.db";
  auto oracle = MakeOracle(dir, OracleOptions(), db);
  ASSERT_NE(oracle, nullptr);
  ASSERT_THAT(oracle->CreateExperiment(Create("race", 100), ""), IsOk());

  constexpr int kThreads = 16;
  absl::Mutex mu;
  std::set<int64_t> granted_ids;     // every id a granted call returned
  int64_t newly_revealed_total = 0;  // sum of newly_revealed
  int64_t label_mismatches = 0;
  int64_t unexpected_errors = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 random(1234 + t);
      std::uniform_int_distribution<int64_t> id(0, 199);
      std::uniform_int_distribution<int> size(1, 6);
      // Keep asking until the budget is gone; shrink to single ids when
      // denied so the budget is used up exactly.
      bool single = false;
      for (int attempt = 0; attempt < 400; ++attempt) {
        std::set<int64_t> batch;
        const int n = single ? 1 : size(random);
        while (static_cast<int>(batch.size()) < n) batch.insert(id(random));
        const std::vector<int64_t> ids(batch.begin(), batch.end());
        oracle::v1::QueryLabelsRequest request = Query("race", ids);
        request.set_client(absl::StrCat("thread-", t));
        auto response = oracle->QueryLabels(request, "");
        if (response.ok()) {
          absl::MutexLock lock(&mu);
          granted_ids.insert(ids.begin(), ids.end());
          newly_revealed_total += response->newly_revealed();
          if (std::vector<int32_t>(response->labels().begin(),
                                   response->labels().end()) != LabelsOf(ids)) {
            ++label_mismatches;
          }
          if (response->remaining() == 0) return;
        } else if (absl::IsResourceExhausted(response.status())) {
          if (absl::StrContains(response.status().message(), "only 0 remain")) {
            return;
          }
          single = true;
        } else {
          absl::MutexLock lock(&mu);
          ++unexpected_errors;
          return;
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();

  EXPECT_EQ(unexpected_errors, 0);
  EXPECT_EQ(label_mismatches, 0);
  EXPECT_THAT(granted_ids, SizeIs(100));
  EXPECT_EQ(newly_revealed_total, 100);
  auto budget = oracle->GetBudget(Budget("race"), "");
  ASSERT_THAT(budget, IsOk());
  EXPECT_EQ(budget->spent(), 100);
  EXPECT_EQ(budget->remaining(), 0);

  // The audit's GRANTED rows reveal exactly the ids the callers received.
  std::set<int64_t> audited;
  int64_t granted_rows = 0;
  oracle::v1::ListQueriesRequest list;
  list.set_page_size(10000);
  auto rows = oracle->ListQueries(list, "");
  ASSERT_THAT(rows, IsOk());
  for (const auto& row : rows->rows()) {
    if (row.outcome() != oracle::v1::GRANTED) continue;
    ++granted_rows;
    for (int64_t id : row.ids_revealed()) {
      EXPECT_TRUE(audited.insert(id).second) << "id " << id << " twice";
    }
  }
  EXPECT_EQ(audited, granted_ids);
  EXPECT_EQ(granted_rows, budget->requests_granted());
  EXPECT_EQ(rows->rows_size(),
            budget->requests_granted() + budget->requests_denied());

  auto verification = VerifyAuditLog(oracle->store());
  ASSERT_THAT(verification, IsOk());
  EXPECT_TRUE(verification->ok) << verification->reason;
  EXPECT_EQ(verification->rows_verified, rows->rows_size());
}

TEST(LabelOracleTest, StorageFailureRevealsNothing) {
  TestDir dir;
  auto sqlite = SqliteLabelStore::Open(
      testdata::SyntheticStoreOptions(dir.path(), kTrainCount, kTestCount));
  ASSERT_THAT(sqlite, IsOk());
  auto failing =
      std::make_unique<FailureInjectingLabelStore>(*std::move(sqlite));
  FailureInjectingLabelStore* store = failing.get();
  auto oracle = LabelOracle::Create(OracleOptions(), std::move(failing));
  ASSERT_THAT(oracle, IsOk());

  // Writes: 1 CreateExperiment, 2 Reveal (fails), 3 Reveal, 4 AppendAudit
  // of an invalid request (fails), 5 RecordEvaluation (fails).
  store->FailWrite(2);
  store->FailWrite(4);
  store->FailWrite(5);
  ASSERT_THAT((*oracle)->CreateExperiment(Create("e", 5), ""), IsOk());
  EXPECT_THAT(
      (*oracle)->QueryLabels(Query("e", {1, 2}), ""),
      StatusIs(absl::StatusCode::kUnavailable, HasSubstr("injected failure")));
  auto budget = (*oracle)->GetBudget(Budget("e"), "");
  ASSERT_THAT(budget, IsOk());
  EXPECT_EQ(budget->spent(), 0);
  EXPECT_EQ(budget->requests_granted(), 0);
  EXPECT_EQ(budget->requests_denied(), 0);

  auto granted = (*oracle)->QueryLabels(Query("e", {1, 2}), "");
  ASSERT_THAT(granted, IsOk());
  EXPECT_EQ(granted->audit_sequence(), 1);
  EXPECT_EQ(granted->remaining(), 3);

  // When the denial cannot be logged, the caller learns about the storage
  // failure rather than a denial that left no trace.
  EXPECT_THAT((*oracle)->QueryLabels(Query("e", {}), ""),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT((*oracle)->Evaluate(Evaluation("e", PerfectPredictions()), ""),
              StatusIs(absl::StatusCode::kUnavailable));
  budget = (*oracle)->GetBudget(Budget("e"), "");
  ASSERT_THAT(budget, IsOk());
  EXPECT_EQ(budget->spent(), 2);
  EXPECT_EQ(budget->evaluations(), 0);
  auto verification = VerifyAuditLog((*oracle)->store());
  ASSERT_THAT(verification, IsOk());
  EXPECT_TRUE(verification->ok) << verification->reason;
  EXPECT_EQ(verification->rows_verified, 1);
}

}  // namespace
}  // namespace oracle_server
