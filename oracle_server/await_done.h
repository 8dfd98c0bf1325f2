// The synchronous form of a call that reports through a `done` callback
// (LabelStore's and LabelOracle's asynchronous forms).
#ifndef ORACLE_SERVER_AWAIT_DONE_H_
#define ORACLE_SERVER_AWAIT_DONE_H_

#include <optional>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"

namespace oracle_server {

// Calls `start(done)` with a `done` that keeps the result it is given, waits
// until `done` has run (on this thread or any other), and returns that
// result. `done` must be called exactly once.
template <typename T, typename Start>
absl::StatusOr<T> AwaitDone(Start start) {
  absl::Notification finished;
  std::optional<absl::StatusOr<T>> result;
  start([&finished, &result](absl::StatusOr<T> value) {
    result.emplace(std::move(value));
    finished.Notify();
  });
  finished.WaitForNotification();
  return *std::move(result);
}

}  // namespace oracle_server

#endif  // ORACLE_SERVER_AWAIT_DONE_H_
