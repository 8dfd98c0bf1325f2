// Fitting a run's remaining training steps to a wall-clock limit, so that a
// run that cannot take all its planned steps in time still trains every
// round and reaches the end of its learning-rate schedule, instead of being
// cut off part way (with its last labels never trained on).
//
// TimeFit measures the training rate over a recent window and, when the
// steps still planned differ from those that fit before the limit, rescales
// the rounds not yet finished. Pure bookkeeping: the caller supplies the
// clock readings and applies the new plan.
#ifndef TRAINER_RUN_TIME_FIT_H_
#define TRAINER_RUN_TIME_FIT_H_

#include <cstdint>
#include <deque>
#include <optional>
#include <utility>
#include <vector>

namespace trainer {

struct TimeFitOptions {
  // Seconds into the run by which training must be done (> 0).
  double limit_seconds = 0;
  // The rate is the steps per second over the most recent window_seconds
  // of training observations, and is not estimated from less than
  // min_window_seconds of them.
  double window_seconds = 10;
  double min_window_seconds = 2;
  // Plan for this fraction of the steps the measured rate allows.
  double safety = 0.95;
  // Keep the plan while the steps that fit and the steps planned differ by
  // at most this fraction of the steps planned, or by at most
  // min_change_seconds of steps at the measured rate.
  double tolerance = 0.05;
  double min_change_seconds = 1.0;
};

// The round ends `end_step` (cumulative, increasing) with the steps after
// `step` rescaled so that the last round ends at step + remaining: ends at
// or before `step` stay, and every later round keeps at least one step (so
// the last end is later than step + remaining when remaining is smaller than
// the number of those rounds).
std::vector<int64_t> RescaleRemainingRounds(
    const std::vector<int64_t>& end_step, int64_t step, int64_t remaining);

class TimeFit {
 public:
  explicit TimeFit(const TimeFitOptions& options) : options_(options) {}

  const TimeFitOptions& options() const { return options_; }

  // Forgets the observations (call when training resumes after other work,
  // so that the rate counts training only).
  void Restart() { observations_.clear(); }

  // Records that `step` steps were done `elapsed_s` seconds into the run.
  void Observe(double elapsed_s, int64_t step);

  // Steps per second over the window, once it spans min_window_seconds.
  std::optional<double> Rate() const;

  // A new plan when `end_step` (cumulative round ends, the current plan)
  // should change: at the measured rate, with `reserve_s` seconds of other
  // work still to come before the limit, safety * rate * (time left) more
  // steps fit; the plan's remaining steps become that many, capped at
  // `max_end` - step (the original plan's end) and at least one per round
  // not yet finished. Once no time is left, that minimum is the plan, rate
  // or not. Returns nullopt while there is no rate (and time is left), or
  // when the plan's remaining steps are within tolerance of the target.
  std::optional<std::vector<int64_t>> Refit(
      const std::vector<int64_t>& end_step, int64_t max_end, int64_t step,
      double elapsed_s, double reserve_s) const;

 private:
  TimeFitOptions options_;
  std::deque<std::pair<double, int64_t>> observations_;  // (seconds, step)
};

}  // namespace trainer

#endif  // TRAINER_RUN_TIME_FIT_H_
