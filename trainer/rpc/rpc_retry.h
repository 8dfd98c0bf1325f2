// Exponential backoff for RPCs that are safe to repeat (torch-free, no
// generated proto code): used by the oracle and selector clients.
#ifndef TRAINER_RPC_RPC_RETRY_H_
#define TRAINER_RPC_RPC_RETRY_H_

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace trainer {

// When to retry and how long to wait between attempts.
struct RetryPolicy {
  // Wait after the first failed attempt; zero disables retries.
  absl::Duration initial_backoff = absl::Seconds(1);
  // Each further wait is the previous one times this.
  double backoff_multiplier = 2.0;
  // No single wait is longer than this.
  absl::Duration max_backoff = absl::Seconds(30);
  // Give up rather than start a wait that would end more than this after the
  // first attempt began; the last wait is shortened to fit exactly.
  absl::Duration max_total_wait = absl::Minutes(5);
};

// Clock, sleeper, progress log and stop request of CallWithRetry. Tests
// substitute a fake clock that advances when "sleeping", so no test really
// waits.
struct RetryEnv {
  // Current time.
  std::function<absl::Time()> now;
  // Blocks the calling thread for the given duration.
  std::function<void(absl::Duration)> sleep;
  // Writes one progress line (without a trailing newline).
  std::function<void(const std::string&)> log;
  // True once the caller wants no further attempts (a signal arrived, say);
  // polled at least every kStopPollInterval while waiting. Empty: never.
  std::function<bool()> stop_requested;

  // absl::Now, absl::SleepFor, one line per call on stderr, no stop.
  static RetryEnv Real();
};

// The longest slice a wait is slept in when RetryEnv::stop_requested is set.
inline constexpr absl::Duration kStopPollInterval = absl::Milliseconds(100);

// True for the codes a repeat may cure: UNAVAILABLE and DEADLINE_EXCEEDED.
// Everything else (RESOURCE_EXHAUSTED, INVALID_ARGUMENT, UNAUTHENTICATED, ...)
// is an answer, not an outage.
bool IsRetryable(absl::StatusCode code);

// Runs `attempt` until it returns OK or a non-retryable status, waiting with
// exponential backoff in between. Before each wait logs
//   "<service> unreachable at <target>, retrying in <wait> (attempt <k>):
//   <msg>"
// where k counts the attempts made so far. Returns OK, the first
// non-retryable status unchanged, or, once policy.max_total_wait is used up,
// the last status's code with a message naming the target and the number of
// attempts. If env.stop_requested() is true after a retryable failure or
// during a wait, returns CANCELLED at once, without a further attempt:
//   "stopped while waiting for the <service> at <target> after <k>
//   attempt(s): <msg>".
// An attempt in flight is not interrupted. `attempt` must be safe to repeat.
absl::Status CallWithRetry(const RetryPolicy& policy, const RetryEnv& env,
                           absl::string_view service, absl::string_view target,
                           const std::function<absl::Status()>& attempt);

}  // namespace trainer

#endif  // TRAINER_RPC_RPC_RETRY_H_
