#include "trainer/report/progress.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <sstream>
#include <string>

#include "absl/time/time.h"

namespace trainer {
namespace {

ProgressState FullState() {
  ProgressState state;
  state.round = 2;
  state.num_rounds = 5;
  state.step = 1200;
  state.total_steps = 5000;
  state.steps_per_s = 35.2;
  state.mask_rate = 0.734;
  state.loss = 0.41234;
  state.last_accuracy = 0.8125;
  state.labels_spent = 120;
  state.label_budget = 400;
  return state;
}

TEST(FormatDurationTest, PicksTwoUnits) {
  EXPECT_EQ(FormatDuration(0), "0s");
  EXPECT_EQ(FormatDuration(42.4), "42s");
  EXPECT_EQ(FormatDuration(59.6), "1m00s");
  EXPECT_EQ(FormatDuration(185), "3m05s");
  EXPECT_EQ(FormatDuration(3600), "1h00m");
  EXPECT_EQ(FormatDuration(2 * 3600 + 7 * 60 + 59), "2h07m");
  EXPECT_EQ(FormatDuration(86400 + 3 * 3600 + 1), "1d03h");
  EXPECT_EQ(FormatDuration(1e12), ">99999d");
}

TEST(FormatDurationTest, UnknownForNegativeOrNonFinite) {
  EXPECT_EQ(FormatDuration(-1), "--");
  EXPECT_EQ(FormatDuration(std::nan("")), "--");
  EXPECT_EQ(FormatDuration(std::numeric_limits<double>::infinity()), "--");
}

TEST(FormatProgressTest, FormatsEveryField) {
  // ETA: (5000 - 1200) / 35.2 = 107.95 s.
  EXPECT_EQ(FormatProgress(FullState()),
            "round 2/5 | step 1200/5000 (24.0%) | 35.2 steps/s | ETA 1m48s | "
            "mask 0.73 | loss 0.4123 | acc 81.2% | labels 120/400");
}

TEST(FormatProgressTest, AStageAfterTheRoundsTakesTheirPlace) {
  ProgressState state = FullState();
  state.stage = "distillation";
  EXPECT_EQ(FormatProgress(state),
            "distillation | step 1200/5000 (24.0%) | 35.2 steps/s | ETA 1m48s "
            "| mask 0.73 | loss 0.4123 | acc 81.2% | labels 120/400");
}

TEST(FormatProgressTest, OmitsUnknownTotals) {
  ProgressState state;
  state.round = 1;
  state.step = 30;
  state.loss = 2.302585;
  state.labels_spent = 40;
  EXPECT_EQ(FormatProgress(state),
            "round 1 | step 30 | 0.0 steps/s | ETA -- | mask 0.00 | "
            "loss 2.3026 | acc -- | labels 40");
}

TEST(FormatProgressTest, EtaIsUnknownWithoutRateAndZeroWhenDone) {
  ProgressState state = FullState();
  state.steps_per_s = 0;
  EXPECT_NE(FormatProgress(state).find("| ETA -- |"), std::string::npos);
  state = FullState();
  state.step = 5000;
  EXPECT_NE(FormatProgress(state).find("(100.0%) | 35.2 steps/s | ETA 0s |"),
            std::string::npos);
  state.total_steps = 20000;
  state.step = 0;
  state.steps_per_s = 2;  // 10000 s.
  EXPECT_NE(FormatProgress(state).find("| ETA 2h46m |"), std::string::npos);
}

// A clock the test advances by hand.
class FakeClock {
 public:
  absl::Time Now() const { return now_; }
  void Advance(double seconds) { now_ += absl::Seconds(seconds); }

 private:
  absl::Time now_ = absl::FromUnixSeconds(1000);
};

ProgressLineOptions OptionsWith(FakeClock& clock) {
  ProgressLineOptions options;
  options.tty_interval_s = 1;
  options.plain_interval_s = 10;
  options.clock = [&clock] { return clock.Now(); };
  return options;
}

TEST(ProgressLineTest, TerminalRewritesLineInPlace) {
  FakeClock clock;
  std::ostringstream out;
  ProgressLine progress(&out, /*is_tty=*/true, OptionsWith(clock));
  ProgressState state;
  state.round = 1;
  state.step = 100;
  state.loss = 1;
  state.labels_spent = 10;
  const std::string first = FormatProgress(state);

  EXPECT_TRUE(progress.Update(state));
  EXPECT_EQ(out.str(), "\r" + first);

  clock.Advance(0.5);
  state.step = 150;
  EXPECT_FALSE(progress.Update(state));
  EXPECT_EQ(out.str(), "\r" + first);

  // A shorter line is padded with spaces to erase the longer one.
  clock.Advance(0.5);
  state.step = 2;
  const std::string shorter = FormatProgress(state);
  ASSERT_EQ(shorter.size() + 2, first.size());
  EXPECT_TRUE(progress.Update(state));
  EXPECT_EQ(out.str(), "\r" + first + "\r" + shorter + "  \r" + shorter);

  out.str("");
  progress.Log("round 1 done");
  EXPECT_EQ(out.str(), "\r" + std::string(shorter.size(), ' ') +
                           "\rround 1 done\n" + shorter);

  out.str("");
  progress.Finish(state);
  EXPECT_EQ(out.str(), "\r" + shorter + "\n");

  // After Finish, Log does not redraw a status line.
  out.str("");
  progress.Log("bye");
  EXPECT_EQ(out.str(), "bye\n");
}

TEST(ProgressLineTest, PlainStreamWritesPeriodicLines) {
  FakeClock clock;
  std::ostringstream out;
  ProgressLine progress(&out, /*is_tty=*/false, OptionsWith(clock));
  ProgressState state;
  state.step = 1;
  const std::string line1 = FormatProgress(state);
  EXPECT_TRUE(progress.Update(state));

  clock.Advance(9.9);
  state.step = 2;
  EXPECT_FALSE(progress.Update(state));

  clock.Advance(0.1);
  state.step = 3;
  const std::string line3 = FormatProgress(state);
  EXPECT_TRUE(progress.Update(state));

  progress.Log("note");
  state.step = 4;
  const std::string line4 = FormatProgress(state);
  progress.Finish(state);
  EXPECT_EQ(out.str(), line1 + "\n" + line3 + "\n" + "note\n" + line4 + "\n");
}

}  // namespace
}  // namespace trainer
