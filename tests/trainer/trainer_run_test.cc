#include "trainer/run/trainer_run.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/status_matchers.h"

namespace trainer {
namespace {

using ::common::IsOk;
using ::common::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(PlanRoundsTest, DefaultScheduleSplitsBudgetFortyThirtyThirty) {
  TrainerOptions options;
  options.label_budget = 100;
  options.total_steps = 20000;
  auto plan = PlanRounds(options);
  ASSERT_THAT(plan, IsOk());
  EXPECT_THAT(plan->labels, ElementsAre(40, 30, 30));
  EXPECT_THAT(plan->end_step, ElementsAre(3000, 6000, 20000));
}

TEST(PlanRoundsTest, ExplicitScheduleAndSteps) {
  TrainerOptions options;
  options.label_budget = 12;
  options.schedule = {6, 6};
  options.total_steps = 10;
  options.round_steps = {4, 6};
  auto plan = PlanRounds(options);
  ASSERT_THAT(plan, IsOk());
  EXPECT_THAT(plan->labels, ElementsAre(6, 6));
  EXPECT_THAT(plan->end_step, ElementsAre(4, 10));
}

TEST(PlanRoundsTest, SmallBudgetDropsEmptyRounds) {
  TrainerOptions options;
  options.label_budget = 2;
  options.total_steps = 100;
  auto plan = PlanRounds(options);
  ASSERT_THAT(plan, IsOk());
  EXPECT_THAT(plan->labels, ElementsAre(2));
  EXPECT_THAT(plan->end_step, ElementsAre(100));
}

TEST(PlanRoundsTest, ScheduleMustSumToBudget) {
  TrainerOptions options;
  options.label_budget = 100;
  options.schedule = {40, 30};
  EXPECT_THAT(PlanRounds(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("sums to 70, not the label budget 100")));
}

TEST(PlanRoundsTest, RoundStepsMustMatchRoundsAndTotal) {
  TrainerOptions options;
  options.label_budget = 10;
  options.schedule = {5, 5};
  options.total_steps = 10;
  options.round_steps = {10};
  EXPECT_THAT(PlanRounds(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("1 entries for 2 rounds")));
  options.round_steps = {5, 6};
  EXPECT_THAT(PlanRounds(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("sum to 11, not total_steps 10")));
}

TEST(PlanRoundsTest, TooFewStepsForEarlyRounds) {
  TrainerOptions options;
  options.label_budget = 100;
  options.total_steps = 5;
  EXPECT_THAT(PlanRounds(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("at least one step")));
}

TEST(ResolveDeviceTest, CpuAndBadSpecs) {
  auto cpu = ResolveDevice("cpu");
  ASSERT_THAT(cpu, IsOk());
  EXPECT_EQ(*cpu, "cpu");
  EXPECT_THAT(ResolveDevice("abacus"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace trainer
