#include "trainer/report/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <iostream>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace trainer {

std::string FormatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--";
  // Beyond ~3 centuries the value is meaningless; also keeps the cast safe.
  if (seconds >= 1e10) return ">99999d";
  const int64_t total = std::llround(seconds);
  const int64_t days = total / 86400;
  const int64_t hours = total % 86400 / 3600;
  const int64_t minutes = total % 3600 / 60;
  const int64_t secs = total % 60;
  if (days > 0) return absl::StrFormat("%dd%02dh", days, hours);
  if (hours > 0) return absl::StrFormat("%dh%02dm", hours, minutes);
  if (minutes > 0) return absl::StrFormat("%dm%02ds", minutes, secs);
  return absl::StrFormat("%ds", secs);
}

std::string FormatProgress(const ProgressState& state) {
  std::string line = state.stage;
  if (line.empty()) {
    line = absl::StrCat("round ", state.round);
    if (state.num_rounds > 0) absl::StrAppend(&line, "/", state.num_rounds);
  }
  absl::StrAppend(&line, " | step ", state.step);
  double eta_s = -1;
  if (state.total_steps > 0) {
    absl::StrAppend(
        &line, "/", state.total_steps,
        absl::StrFormat(" (%.1f%%)", 100.0 * state.step / state.total_steps));
    if (state.steps_per_s > 0) {
      const int64_t remaining =
          state.total_steps > state.step ? state.total_steps - state.step : 0;
      eta_s = remaining / state.steps_per_s;
    }
  }
  absl::StrAppend(
      &line, absl::StrFormat(" | %.1f steps/s", state.steps_per_s), " | ETA ",
      FormatDuration(eta_s),
      absl::StrFormat(" | mask %.2f | loss %.4f", state.mask_rate, state.loss),
      " | acc ");
  if (state.last_accuracy.has_value()) {
    absl::StrAppend(&line,
                    absl::StrFormat("%.1f%%", 100.0 * *state.last_accuracy));
  } else {
    absl::StrAppend(&line, "--");
  }
  absl::StrAppend(&line, " | labels ", state.labels_spent);
  if (state.label_budget > 0) absl::StrAppend(&line, "/", state.label_budget);
  return line;
}

bool IsTerminal(int fd) { return isatty(fd) == 1; }

ProgressLine::ProgressLine(std::ostream* out, bool is_tty,
                           ProgressLineOptions options)
    : out_(out), is_tty_(is_tty), options_(std::move(options)) {
  if (!options_.clock) options_.clock = [] { return absl::Now(); };
}

ProgressLine ProgressLine::ForStderr(ProgressLineOptions options) {
  return ProgressLine(&std::cerr, IsTerminal(STDERR_FILENO),
                      std::move(options));
}

bool ProgressLine::Update(const ProgressState& state) {
  const absl::Time now = options_.clock();
  const double interval_s =
      is_tty_ ? options_.tty_interval_s : options_.plain_interval_s;
  if (last_render_.has_value() &&
      now - *last_render_ < absl::Seconds(interval_s)) {
    return false;
  }
  last_render_ = now;
  Render(FormatProgress(state));
  return true;
}

void ProgressLine::Log(const std::string& message) {
  if (is_tty_ && !shown_.empty()) {
    *out_ << '\r' << std::string(shown_.size(), ' ') << '\r' << message << '\n'
          << shown_;
  } else {
    *out_ << message << '\n';
  }
  out_->flush();
}

void ProgressLine::Finish(const ProgressState& state) {
  last_render_ = options_.clock();
  Render(FormatProgress(state));
  if (is_tty_) {
    *out_ << '\n';
    out_->flush();
    shown_.clear();
  }
}

void ProgressLine::Render(const std::string& line) {
  if (is_tty_) {
    *out_ << '\r' << line;
    if (shown_.size() > line.size()) {
      *out_ << std::string(shown_.size() - line.size(), ' ') << '\r' << line;
    }
    shown_ = line;
  } else {
    *out_ << line << '\n';
  }
  out_->flush();
}

}  // namespace trainer
