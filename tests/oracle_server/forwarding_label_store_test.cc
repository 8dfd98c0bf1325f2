#include "oracle_server/forwarding_label_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <utility>

#include "common/status_matchers.h"
#include "oracle_server/await_done.h"
#include "oracle_server/sqlite_label_store.h"
#include "tests/oracle_server/oracle_test_data.h"

namespace oracle_server {
namespace {

using ::common::IsOk;
using ::common::StatusIs;
using testdata::TestDir;
using testdata::TrainLabel;
using ::testing::ElementsAre;
using ::testing::SizeIs;

TEST(ForwardingLabelStoreTest, ForwardsEveryCall) {
  TestDir dir;
  auto sqlite = SqliteLabelStore::Open(testdata::SyntheticStoreOptions(
      dir.path(), /*train_count=*/100, /*test_count=*/10));
  ASSERT_THAT(sqlite, IsOk());
  LabelStore* inner = sqlite->get();
  ForwardingLabelStore store(*std::move(sqlite));
  EXPECT_EQ(&store.wrapped(), inner);

  auto info = store.GetDatasetInfo();
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(info->train.count, 100);
  auto train = store.LoadLabels(Split::kTrain);
  ASSERT_THAT(train, IsOk());
  EXPECT_THAT(*train, SizeIs(100));

  ExperimentRecord wanted;
  wanted.name = "e";
  wanted.label_budget = 3;
  wanted.evaluation_cap = 1;
  bool created = false;
  ASSERT_THAT(store.CreateExperiment(wanted, &created), IsOk());
  EXPECT_TRUE(created);
  EXPECT_THAT(store.GetExperiment("e"), IsOk());
  EXPECT_THAT(store.GetExperiment("ghost"),
              StatusIs(absl::StatusCode::kNotFound));
  auto experiments = store.ListExperiments();
  ASSERT_THAT(experiments, IsOk());
  EXPECT_THAT(*experiments, SizeIs(1));

  RevealRequest reveal;
  reveal.experiment = "e";
  reveal.ids = {1};
  auto revealed = store.Reveal(reveal);
  ASSERT_THAT(revealed, IsOk());
  EXPECT_THAT(revealed->labels, ElementsAre(TrainLabel(1)));

  reveal.ids = {2};
  auto revealed_async = AwaitDone<RevealResult>(
      [&](LabelStore::RevealDone done) {
        store.RevealAsync(reveal, std::move(done));
      });
  ASSERT_THAT(revealed_async, IsOk());
  EXPECT_EQ(revealed_async->audit_sequence, 2);

  EvaluationRequest evaluation;
  evaluation.experiment = "e";
  auto evaluated = store.RecordEvaluation(evaluation);
  ASSERT_THAT(evaluated, IsOk());
  EXPECT_TRUE(evaluated->allowed);
  auto evaluated_async = AwaitDone<EvaluationResult>(
      [&](LabelStore::EvaluationDone done) {
        store.RecordEvaluationAsync(evaluation, std::move(done));
      });
  ASSERT_THAT(evaluated_async, IsOk());
  EXPECT_FALSE(evaluated_async->allowed);  // the cap is 1

  AuditRecord row;
  row.experiment = "e";
  row.kind = kKindQuery;
  row.outcome = Outcome::kDeniedInvalid;
  EXPECT_THAT(store.AppendAudit(row), testdata::IsOkAndHolds(5));
  EXPECT_THAT(AwaitDone<int64_t>([&](LabelStore::AuditDone done) {
                store.AppendAuditAsync(row, std::move(done));
              }),
              testdata::IsOkAndHolds(6));

  auto usage = store.GetUsage("e");
  ASSERT_THAT(usage, IsOk());
  EXPECT_EQ(usage->spent, 2);
  auto rows = store.ListAudit("e", 0, 100);
  ASSERT_THAT(rows, IsOk());
  EXPECT_THAT(*rows, SizeIs(6));
  auto head = store.GetAuditHead();
  ASSERT_THAT(head, IsOk());
  EXPECT_EQ(head->first, 6);
  auto revealed_rows = store.ListRevealed();
  ASSERT_THAT(revealed_rows, IsOk());
  EXPECT_THAT(*revealed_rows, SizeIs(2));
}

}  // namespace
}  // namespace oracle_server
