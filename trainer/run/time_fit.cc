#include "trainer/run/time_fit.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

namespace trainer {

std::vector<int64_t> RescaleRemainingRounds(
    const std::vector<int64_t>& end_step, int64_t step, int64_t remaining) {
  std::vector<int64_t> out = end_step;
  if (end_step.empty() || end_step.back() <= step) return out;
  const double factor = static_cast<double>(std::max<int64_t>(remaining, 0)) /
                        static_cast<double>(end_step.back() - step);
  int64_t previous = step;
  for (int64_t& end : out) {
    if (end <= step) {
      previous = std::max(previous, end);
      continue;
    }
    const int64_t scaled =
        step + std::llround(static_cast<double>(end - step) * factor);
    end = std::max(scaled, previous + 1);
    previous = end;
  }
  return out;
}

void TimeFit::Observe(double elapsed_s, int64_t step) {
  observations_.emplace_back(elapsed_s, step);
  // Keep the newest observation older than the window, so that the window
  // spans window_seconds once that much has been observed.
  while (observations_.size() > 2 &&
         elapsed_s - observations_[1].first >= options_.window_seconds) {
    observations_.pop_front();
  }
}

std::optional<double> TimeFit::Rate() const {
  if (observations_.size() < 2) return std::nullopt;
  const double seconds =
      observations_.back().first - observations_.front().first;
  const int64_t steps =
      observations_.back().second - observations_.front().second;
  if (seconds < options_.min_window_seconds || steps <= 0) return std::nullopt;
  return static_cast<double>(steps) / seconds;
}

std::optional<std::vector<int64_t>> TimeFit::Refit(
    const std::vector<int64_t>& end_step, int64_t max_end, int64_t step,
    double elapsed_s, double reserve_s) const {
  if (end_step.empty()) return std::nullopt;
  const double left_s =
      std::max(0.0, options_.limit_seconds - elapsed_s - reserve_s);
  const std::optional<double> rate = Rate();
  if (!rate.has_value() && left_s > 0) return std::nullopt;
  int64_t target =
      rate.has_value()
          ? static_cast<int64_t>(std::floor(options_.safety * *rate * left_s))
          : 0;
  target = std::min(target, max_end - step);
  const int64_t unfinished = std::count_if(
      end_step.begin(), end_step.end(), [step](int64_t e) { return e > step; });
  target = std::max(target, unfinished);
  const int64_t planned = end_step.back() - step;
  const double keep =
      std::max(options_.tolerance * static_cast<double>(planned),
               rate.has_value() ? options_.min_change_seconds * *rate : 0.0);
  if (static_cast<double>(std::llabs(target - planned)) <= keep) {
    return std::nullopt;
  }
  return RescaleRemainingRounds(end_step, step, target);
}

}  // namespace trainer
