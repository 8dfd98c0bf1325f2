#include "trainer/rpc/rpc_retry.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/status_matchers.h"

namespace trainer {
namespace {

using ::common::IsOk;
using ::common::StatusIs;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

// A clock that only moves when slept on, recording sleeps and log lines.
struct FakeEnv {
  absl::Time now = absl::UnixEpoch();
  std::vector<absl::Duration> sleeps;
  std::vector<std::string> lines;

  RetryEnv env() {
    RetryEnv e;
    e.now = [this] { return now; };
    e.sleep = [this](absl::Duration d) {
      sleeps.push_back(d);
      now += d;
    };
    e.log = [this](const std::string& line) { lines.push_back(line); };
    return e;
  }
};

// Returns the scripted statuses in order, then OK.
struct Script {
  std::vector<absl::Status> statuses;
  int calls = 0;
  absl::Status operator()() {
    return calls < static_cast<int>(statuses.size())
               ? statuses[calls++]
               : (++calls, absl::OkStatus());
  }
};

TEST(RetryTest, RetriesUnavailableWithDoublingBackoff) {
  FakeEnv fake;
  Script script{{absl::UnavailableError("refused"),
                 absl::DeadlineExceededError("slow"),
                 absl::UnavailableError("refused")}};
  EXPECT_THAT(CallWithRetry(RetryPolicy(), fake.env(), "oracle", "h:1",
                            std::ref(script)),
              IsOk());
  EXPECT_EQ(script.calls, 4);
  EXPECT_THAT(fake.sleeps, ElementsAre(absl::Seconds(1), absl::Seconds(2),
                                       absl::Seconds(4)));
  EXPECT_THAT(
      fake.lines,
      ElementsAre(
          "oracle unreachable at h:1, retrying in 1s (attempt 1): refused",
          "oracle unreachable at h:1, retrying in 2s (attempt 2): slow",
          "oracle unreachable at h:1, retrying in 4s (attempt 3): refused"));
}

TEST(RetryTest, WaitsAreCappedAndTheLastOneFitsTheTotal) {
  FakeEnv fake;
  Script script{std::vector<absl::Status>(100, absl::UnavailableError("down"))};
  RetryPolicy policy;
  policy.initial_backoff = absl::Seconds(1);
  policy.max_backoff = absl::Seconds(4);
  policy.max_total_wait = absl::Seconds(10);
  absl::Status status =
      CallWithRetry(policy, fake.env(), "oracle", "h:1", std::ref(script));
  EXPECT_THAT(
      status,
      StatusIs(absl::StatusCode::kUnavailable,
               "oracle at h:1 unreachable after 5 attempts over 10s: down"));
  EXPECT_EQ(script.calls, 5);
  EXPECT_THAT(fake.sleeps, ElementsAre(absl::Seconds(1), absl::Seconds(2),
                                       absl::Seconds(4), absl::Seconds(3)));
}

TEST(RetryTest, AttemptTimeCountsAgainstTheTotal) {
  FakeEnv fake;
  int calls = 0;
  auto slow_attempt = [&] {
    ++calls;
    fake.now += absl::Seconds(30);  // each attempt runs into its deadline
    return absl::DeadlineExceededError("deadline");
  };
  RetryPolicy policy;
  policy.max_total_wait = absl::Seconds(45);
  EXPECT_THAT(
      CallWithRetry(policy, fake.env(), "selector", "h:2", slow_attempt),
      StatusIs(absl::StatusCode::kDeadlineExceeded,
               "selector at h:2 unreachable after 2 attempts over 1m1s: "
               "deadline"));
  EXPECT_EQ(calls, 2);
  EXPECT_THAT(fake.sleeps, ElementsAre(absl::Seconds(1)));
}

TEST(RetryTest, ReturnsAnswersUnchangedWithoutRetrying) {
  for (const absl::Status& answer :
       {absl::ResourceExhaustedError("3 labels left"),
        absl::InvalidArgumentError("id 60000 out of range"),
        absl::UnauthenticatedError("bad token"),
        absl::NotFoundError("no experiment x")}) {
    FakeEnv fake;
    Script script{{answer}};
    EXPECT_EQ(CallWithRetry(RetryPolicy(), fake.env(), "oracle", "h:1",
                            std::ref(script)),
              answer);
    EXPECT_EQ(script.calls, 1);
    EXPECT_THAT(fake.sleeps, IsEmpty());
    EXPECT_THAT(fake.lines, IsEmpty());
  }
}

TEST(RetryTest, ZeroInitialBackoffDisablesRetries) {
  FakeEnv fake;
  Script script{{absl::UnavailableError("down")}};
  RetryPolicy policy;
  policy.initial_backoff = absl::ZeroDuration();
  EXPECT_THAT(
      CallWithRetry(policy, fake.env(), "oracle", "h:1", std::ref(script)),
      StatusIs(absl::StatusCode::kUnavailable,
               "oracle at h:1 unreachable after 1 attempt over 0: down"));
  EXPECT_EQ(script.calls, 1);
}

TEST(RetryTest, StopDuringBackoffEndsCancelledWithoutFurtherAttempts) {
  FakeEnv fake;
  Script script{std::vector<absl::Status>(100, absl::UnavailableError("down"))};
  RetryEnv env = fake.env();
  // A signal arrives 1.5 s in: during the 2 s wait after the second attempt.
  env.stop_requested = [&fake] {
    return fake.now >= absl::UnixEpoch() + absl::Milliseconds(1500);
  };
  EXPECT_THAT(
      CallWithRetry(RetryPolicy(), env, "oracle", "h:1", std::ref(script)),
      StatusIs(absl::StatusCode::kCancelled,
               "stopped while waiting for the oracle at h:1 after 2 attempts: "
               "down"));
  EXPECT_EQ(script.calls, 2);
  // Slept in slices: 1 s in ten, then 0.5 s of the 2 s wait.
  EXPECT_EQ(fake.sleeps.size(), 15u);
  for (absl::Duration d : fake.sleeps) EXPECT_EQ(d, kStopPollInterval);
  EXPECT_EQ(fake.now, absl::UnixEpoch() + absl::Milliseconds(1500));
}

TEST(RetryTest, StopRequestedBeforeAFailureSkipsTheWait) {
  FakeEnv fake;
  Script script{{absl::DeadlineExceededError("slow")}};
  RetryEnv env = fake.env();
  env.stop_requested = [] { return true; };
  EXPECT_THAT(
      CallWithRetry(RetryPolicy(), env, "selector", "h:2", std::ref(script)),
      StatusIs(absl::StatusCode::kCancelled,
               "stopped while waiting for the selector at h:2 after 1 "
               "attempt: slow"));
  EXPECT_EQ(script.calls, 1);
  EXPECT_THAT(fake.sleeps, IsEmpty());
  EXPECT_THAT(fake.lines, IsEmpty());
}

TEST(RetryTest, StopRequestedDoesNotHinderASuccessfulAttempt) {
  FakeEnv fake;
  Script script{{}};
  RetryEnv env = fake.env();
  env.stop_requested = [] { return true; };
  EXPECT_THAT(
      CallWithRetry(RetryPolicy(), env, "oracle", "h:1", std::ref(script)),
      IsOk());
  EXPECT_EQ(script.calls, 1);
}

TEST(RetryTest, UnstoppedSlicedWaitsAddUpToTheBackoff) {
  FakeEnv fake;
  Script script{{absl::UnavailableError("refused")}};
  RetryEnv env = fake.env();
  env.stop_requested = [] { return false; };
  RetryPolicy policy;
  policy.initial_backoff = absl::Milliseconds(250);
  EXPECT_THAT(CallWithRetry(policy, env, "oracle", "h:1", std::ref(script)),
              IsOk());
  EXPECT_EQ(script.calls, 2);
  EXPECT_THAT(fake.sleeps,
              ElementsAre(absl::Milliseconds(100), absl::Milliseconds(100),
                          absl::Milliseconds(50)));
  EXPECT_THAT(fake.lines, ElementsAre("oracle unreachable at h:1, retrying in "
                                      "250ms (attempt 1): refused"));
}

}  // namespace
}  // namespace trainer
