#include "trainer/rpc/rpc_retry.h"

#include <algorithm>
#include <iostream>

#include "absl/strings/str_cat.h"

namespace trainer {

RetryEnv RetryEnv::Real() {
  RetryEnv env;
  env.now = [] { return absl::Now(); };
  env.sleep = [](absl::Duration d) { absl::SleepFor(d); };
  env.log = [](const std::string& line) { std::cerr << line << std::endl; };
  return env;
}

bool IsRetryable(absl::StatusCode code) {
  return code == absl::StatusCode::kUnavailable ||
         code == absl::StatusCode::kDeadlineExceeded;
}

namespace {

bool StopRequested(const RetryEnv& env) {
  return env.stop_requested && env.stop_requested();
}

// Sleeps for `wait`, in slices of at most kStopPollInterval if env can be
// stopped. Returns false, possibly early, if a stop was requested.
bool SleepUnlessStopped(const RetryEnv& env, absl::Duration wait) {
  if (!env.stop_requested) {
    env.sleep(wait);
    return true;
  }
  for (absl::Duration left = wait; left > absl::ZeroDuration();) {
    if (env.stop_requested()) return false;
    const absl::Duration slice = std::min(left, kStopPollInterval);
    env.sleep(slice);
    left -= slice;
  }
  return !env.stop_requested();
}

std::string AttemptCount(int attempts) {
  return absl::StrCat(attempts, attempts == 1 ? " attempt" : " attempts");
}

absl::Status Stopped(absl::string_view service, absl::string_view target,
                     int attempts, const absl::Status& last) {
  return absl::CancelledError(
      absl::StrCat("stopped while waiting for the ", service, " at ", target,
                   " after ", AttemptCount(attempts), ": ", last.message()));
}

}  // namespace

absl::Status CallWithRetry(const RetryPolicy& policy, const RetryEnv& env,
                           absl::string_view service, absl::string_view target,
                           const std::function<absl::Status()>& attempt) {
  const absl::Time start = env.now();
  absl::Duration backoff = policy.initial_backoff;
  for (int attempts = 1;; ++attempts) {
    absl::Status status = attempt();
    if (status.ok() || !IsRetryable(status.code())) return status;
    if (StopRequested(env)) return Stopped(service, target, attempts, status);

    const absl::Duration left = policy.max_total_wait - (env.now() - start);
    const absl::Duration wait = std::min(backoff, left);
    if (wait <= absl::ZeroDuration()) {
      return absl::Status(
          status.code(),
          absl::StrCat(service, " at ", target, " unreachable after ",
                       AttemptCount(attempts), " over ",
                       absl::FormatDuration(
                           absl::Trunc(env.now() - start, absl::Milliseconds(1))),
                       ": ",
                       status.message()));
    }
    env.log(absl::StrCat(service, " unreachable at ", target, ", retrying in ",
                         absl::FormatDuration(absl::Trunc(wait, absl::Milliseconds(1))),
                         " (attempt ", attempts,
                         "): ", status.message()));
    if (!SleepUnlessStopped(env, wait)) {
      return Stopped(service, target, attempts, status);
    }
    backoff = std::min(policy.max_backoff, backoff * policy.backoff_multiplier);
  }
}

}  // namespace trainer
