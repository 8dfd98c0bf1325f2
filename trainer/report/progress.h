// A one-line live training status for a terminal or a log.
#ifndef TRAINER_REPORT_PROGRESS_H_
#define TRAINER_REPORT_PROGRESS_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <ostream>
#include <string>

#include "absl/time/time.h"

namespace trainer {

// What the status line shows.
struct ProgressState {
  // A stage after the rounds (e.g. "distillation"), shown in their place;
  // empty while the rounds train.
  std::string stage;
  // Current labeling round (1-based) and the planned number of rounds
  // (0 = unknown; then only the current round is shown).
  int round = 0;
  int num_rounds = 0;
  // Training steps done and planned in the whole run (total_steps 0 =
  // unknown; then no percentage and no ETA).
  int64_t step = 0;
  int64_t total_steps = 0;
  double steps_per_s = 0;
  // Fraction of unlabeled samples above the confidence threshold.
  double mask_rate = 0;
  double loss = 0;
  // Most recent test accuracy in [0, 1], if any evaluation ran yet.
  std::optional<double> last_accuracy;
  // Labels bought so far and the budget (0 = unknown).
  int64_t labels_spent = 0;
  int64_t label_budget = 0;
};

// Formats a duration for humans: "42s", "3m05s", "2h07m", "1d03h";
// "--" when `seconds` is negative or not finite. Rounds to whole seconds.
std::string FormatDuration(double seconds);

// Returns the status line for `state`, without a line terminator, e.g.
// "round 2/5 | step 1200/5000 (24.0%) | 35.2 steps/s | ETA 1m48s |
//  mask 0.73 | loss 0.4123 | acc 81.2% | labels 120/400" (on one line).
// ETA is "--" when the rate is not positive; acc is "--" before the first
// evaluation.
std::string FormatProgress(const ProgressState& state);

// Returns true if `fd` refers to a terminal.
bool IsTerminal(int fd);

// Options for ProgressLine.
struct ProgressLineOptions {
  // Minimum seconds between two renders on a terminal.
  double tty_interval_s = 0.25;
  // Minimum seconds between two lines when not a terminal (logs).
  double plain_interval_s = 30;
  // Clock for rate limiting; absl::Now if empty. Tests inject a fake.
  std::function<absl::Time()> clock;
};

// Renders FormatProgress to a stream, rate limited. On a terminal the line
// is rewritten in place with '\r' (padded to erase a longer previous line);
// otherwise each render is a plain line ending in '\n'. Not thread-safe.
class ProgressLine {
 public:
  // `out` must outlive this object. `is_tty` selects the rendering mode;
  // pass IsTerminal(fd) for the stream's file descriptor.
  ProgressLine(std::ostream* out, bool is_tty,
               ProgressLineOptions options = ProgressLineOptions());

  // A ProgressLine on std::cerr, in terminal mode iff stderr is a terminal.
  static ProgressLine ForStderr(
      ProgressLineOptions options = ProgressLineOptions());

  // Renders `state` if the interval has passed since the last render (the
  // first call always renders). Returns whether it rendered.
  bool Update(const ProgressState& state);

  // Prints `message` on its own line without corrupting the status line:
  // on a terminal the status line is erased first and redrawn after.
  void Log(const std::string& message);

  // Renders `state` unconditionally and ends the line, so that later output
  // starts on a fresh line.
  void Finish(const ProgressState& state);

 private:
  void Render(const std::string& line);

  std::ostream* out_;
  bool is_tty_;
  ProgressLineOptions options_;
  std::optional<absl::Time> last_render_;
  // Terminal mode: the status line currently shown ("" if none).
  std::string shown_;
};

}  // namespace trainer

#endif  // TRAINER_REPORT_PROGRESS_H_
