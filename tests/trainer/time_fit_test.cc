#include "trainer/run/time_fit.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace trainer {
namespace {

using ::testing::ElementsAre;
using ::testing::Optional;

TEST(RescaleRemainingRoundsTest, ScalesOnlyRoundsNotFinished) {
  // Rounds end at 150, 300, 1000; at step 200, 800 steps remain, rescaled
  // to 400: the finished round stays, the others keep their proportions.
  EXPECT_THAT(RescaleRemainingRounds({150, 300, 1000}, 200, 400),
              ElementsAre(150, 250, 600));
  // Growing works the same way.
  EXPECT_THAT(RescaleRemainingRounds({150, 300, 1000}, 200, 1600),
              ElementsAre(150, 400, 1800));
  // From the start every round scales.
  EXPECT_THAT(RescaleRemainingRounds({150, 300, 1000}, 0, 100),
              ElementsAre(15, 30, 100));
}

TEST(RescaleRemainingRoundsTest, EveryUnfinishedRoundKeepsAStep) {
  EXPECT_THAT(RescaleRemainingRounds({150, 300, 1000}, 100, 0),
              ElementsAre(101, 102, 103));
  EXPECT_THAT(RescaleRemainingRounds({150, 300, 1000}, 100, 2),
              ElementsAre(101, 102, 103));
  // A round that ends exactly at `step` is finished.
  EXPECT_THAT(RescaleRemainingRounds({150, 300, 1000}, 150, 10),
              ElementsAre(150, 152, 160));
  // Nothing left to rescale.
  EXPECT_THAT(RescaleRemainingRounds({150, 300, 1000}, 1000, 10),
              ElementsAre(150, 300, 1000));
  EXPECT_TRUE(RescaleRemainingRounds({}, 0, 10).empty());
}

TimeFitOptions LimitOf(double seconds) {
  TimeFitOptions options;
  options.limit_seconds = seconds;
  options.window_seconds = 10;
  options.min_window_seconds = 2;
  options.safety = 1.0;
  options.tolerance = 0.05;
  options.min_change_seconds = 0;
  return options;
}

TEST(TimeFitTest, NoRateUntilTheWindowSpansEnoughTime) {
  TimeFit fit(LimitOf(100));
  EXPECT_EQ(fit.Rate(), std::nullopt);
  fit.Observe(10, 0);
  EXPECT_EQ(fit.Rate(), std::nullopt);
  fit.Observe(11, 50);
  EXPECT_EQ(fit.Rate(), std::nullopt);  // 1 s < min_window_seconds
  EXPECT_EQ(fit.Refit({1000}, 1000, 50, 11, 0), std::nullopt);
  fit.Observe(12, 100);
  EXPECT_THAT(fit.Rate(), Optional(50.0));
}

TEST(TimeFitTest, RateFollowsTheRecentWindow) {
  TimeFit fit(LimitOf(1000));
  // 100 steps/s for 20 s, then 10 steps/s for 20 s: the rate is the last
  // ten seconds' (plus the observation just before them).
  int64_t step = 0;
  for (int t = 0; t <= 20; ++t) fit.Observe(t, step += 100);
  for (int t = 21; t <= 40; ++t) fit.Observe(t, step += 10);
  EXPECT_THAT(fit.Rate(), Optional(10.0));
  // Restart forgets everything (time spent elsewhere does not count).
  fit.Restart();
  EXPECT_EQ(fit.Rate(), std::nullopt);
}

TEST(TimeFitTest, ShrinksThePlanToTheStepsThatFit) {
  TimeFit fit(LimitOf(100));
  fit.Observe(0, 0);
  fit.Observe(10, 200);  // 20 steps/s
  // At 10 s with 20 s of other work to come, 70 s of training are left:
  // 1,400 more steps, not the 9,800 planned.
  EXPECT_THAT(fit.Refit({1500, 3000, 10000}, 10000, 200, 10, 20),
              Optional(ElementsAre(386, 600, 1600)));
}

TEST(TimeFitTest, GrowsBackButNeverBeyondTheOriginalPlan) {
  TimeFit fit(LimitOf(1000));
  fit.Observe(0, 0);
  fit.Observe(10, 1000);  // 100 steps/s: 99,000 would fit
  EXPECT_THAT(fit.Refit({150, 300, 600}, 1000, 100, 10, 0),
              Optional(ElementsAre(190, 460, 1000)));
  // Already at the original plan: nothing to do.
  EXPECT_EQ(fit.Refit({150, 300, 1000}, 1000, 100, 10, 0), std::nullopt);
}

TEST(TimeFitTest, KeepsThePlanWithinTolerance) {
  TimeFit fit(LimitOf(100));
  fit.Observe(0, 0);
  fit.Observe(10, 100);  // 10 steps/s, 900 steps fit in the 90 s left
  EXPECT_EQ(fit.Refit({980}, 2000, 100, 10, 0), std::nullopt);   // 880 planned
  EXPECT_EQ(fit.Refit({1040}, 2000, 100, 10, 0), std::nullopt);  // 940
  EXPECT_THAT(fit.Refit({1100}, 2000, 100, 10, 0), Optional(ElementsAre(1000)));
}

TEST(TimeFitTest, SmallChangesNearTheEndAreNotWorthARefit) {
  TimeFitOptions options = LimitOf(100);
  options.min_change_seconds = 1;
  TimeFit fit(options);
  fit.Observe(0, 0);
  fit.Observe(90, 900);  // 10 steps/s: 100 more steps fit in the 10 s left
  // 108 planned: 8 more than fit, less than a second's worth.
  EXPECT_EQ(fit.Refit({1008}, 5000, 900, 90, 0), std::nullopt);
  EXPECT_THAT(fit.Refit({1012}, 5000, 900, 90, 0), Optional(ElementsAre(1000)));
}

TEST(TimeFitTest, PastTheLimitEveryRoundStillGetsAStep) {
  TimeFit fit(LimitOf(10));
  fit.Observe(0, 0);
  fit.Observe(12, 120);
  EXPECT_THAT(fit.Refit({150, 300, 1000}, 1000, 120, 12, 5),
              Optional(ElementsAre(121, 122, 123)));
}

TEST(TimeFitTest, NoTimeLeftNeedsNoRate) {
  TimeFit fit(LimitOf(10));
  fit.Observe(10.5, 120);  // one observation: no rate
  EXPECT_EQ(fit.Rate(), std::nullopt);
  EXPECT_THAT(fit.Refit({150, 300, 1000}, 1000, 120, 10.5, 0),
              Optional(ElementsAre(121, 122, 123)));
  EXPECT_EQ(fit.Refit({150, 300, 1000}, 1000, 120, 9, 0), std::nullopt);
}

TEST(TimeFitTest, SafetyPlansForLessThanTheRateAllows) {
  TimeFitOptions options = LimitOf(100);
  options.safety = 0.9;
  TimeFit fit(options);
  fit.Observe(0, 0);
  fit.Observe(10, 100);  // 10 steps/s, 90 s left: 900 steps, 810 planned
  EXPECT_THAT(fit.Refit({5000}, 5000, 100, 10, 0), Optional(ElementsAre(910)));
}

}  // namespace
}  // namespace trainer
