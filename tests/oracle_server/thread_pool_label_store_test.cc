#include "oracle_server/thread_pool_label_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/status_matchers.h"
#include "oracle_server/forwarding_label_store.h"
#include "oracle_server/sqlite_label_store.h"
#include "tests/oracle_server/oracle_test_data.h"

namespace oracle_server {
namespace {

using ::common::IsOk;
using ::common::StatusIs;
using testdata::TestDir;
using testdata::TrainLabel;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::unique_ptr<LabelStore> MakeSqliteStore(const TestDir& dir) {
  auto store = SqliteLabelStore::Open(testdata::SyntheticStoreOptions(
      dir.path(), /*train_count=*/100, /*test_count=*/10));
  EXPECT_THAT(store, IsOk());
  return store.ok() ? *std::move(store) : nullptr;
}

ExperimentRecord Experiment(const std::string& name, int64_t budget) {
  ExperimentRecord experiment;
  experiment.name = name;
  experiment.label_budget = budget;
  experiment.evaluation_cap = 1;
  return experiment;
}

RevealRequest Reveal(const std::string& experiment, std::vector<int64_t> ids) {
  RevealRequest request;
  request.experiment = experiment;
  request.ids = std::move(ids);
  request.client = "pool-test";
  return request;
}

// The result a `done` received and the thread it ran on.
template <typename T>
struct Received {
  absl::Notification done;
  std::optional<absl::StatusOr<T>> result;
  std::thread::id thread;

  absl::AnyInvocable<void(absl::StatusOr<T>) &&> Callback() {
    return [this](absl::StatusOr<T> value) {
      result.emplace(std::move(value));
      thread = std::this_thread::get_id();
      done.Notify();
    };
  }
  const absl::StatusOr<T>& Wait() {
    done.WaitForNotification();
    return *result;
  }
};

TEST(ThreadPoolLabelStoreTest, RejectsNoThreads) {
  TestDir dir;
  EXPECT_THAT(ThreadPoolLabelStore::Create(MakeSqliteStore(dir), 0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("got 0")));
}

TEST(ThreadPoolLabelStoreTest,
     AsyncWritesDecideAsTheWrappedStoreOnAPoolThread) {
  TestDir dir;
  auto store = ThreadPoolLabelStore::Create(MakeSqliteStore(dir), 2);
  ASSERT_THAT(store, IsOk());
  bool created = false;
  ASSERT_THAT((*store)->CreateExperiment(Experiment("e", 2), &created), IsOk());

  Received<RevealResult> granted;
  (*store)->RevealAsync(Reveal("e", {3, 4}), granted.Callback());
  ASSERT_THAT(granted.Wait(), IsOk());
  EXPECT_NE(granted.thread, std::this_thread::get_id());
  EXPECT_TRUE(granted.result->value().granted);
  EXPECT_THAT(granted.result->value().labels,
              ElementsAre(TrainLabel(3), TrainLabel(4)));
  EXPECT_EQ(granted.result->value().audit_sequence, 1);

  Received<RevealResult> denied;
  (*store)->RevealAsync(Reveal("e", {5}), denied.Callback());
  ASSERT_THAT(denied.Wait(), IsOk());
  EXPECT_FALSE(denied.result->value().granted);
  EXPECT_EQ(denied.result->value().remaining, 0);

  Received<RevealResult> unknown;
  (*store)->RevealAsync(Reveal("ghost", {1}), unknown.Callback());
  EXPECT_THAT(unknown.Wait(), StatusIs(absl::StatusCode::kNotFound));

  EvaluationRequest evaluation;
  evaluation.experiment = "e";
  evaluation.detail = "accuracy=1";
  Received<EvaluationResult> evaluated;
  (*store)->RecordEvaluationAsync(evaluation, evaluated.Callback());
  ASSERT_THAT(evaluated.Wait(), IsOk());
  EXPECT_TRUE(evaluated.result->value().allowed);
  EXPECT_EQ(evaluated.result->value().audit_sequence, 3);

  AuditRecord row;
  row.experiment = "e";
  row.kind = kKindQuery;
  row.outcome = Outcome::kDeniedInvalid;
  Received<int64_t> appended;
  (*store)->AppendAuditAsync(row, appended.Callback());
  EXPECT_THAT(appended.Wait(), IsOk());
  EXPECT_EQ(appended.result->value(), 4);

  auto usage = (*store)->GetUsage("e");
  ASSERT_THAT(usage, IsOk());
  EXPECT_EQ(usage->spent, 2);
  EXPECT_EQ(usage->evaluations, 1);
}

// Forwards to a SqliteLabelStore, except that each Reveal first waits until
// `expected` Reveals are inside at once (or a generous timeout passes, which
// the test then reports).
class GatedLabelStore final : public ForwardingLabelStore {
 public:
  GatedLabelStore(std::unique_ptr<LabelStore> store, int expected)
      : ForwardingLabelStore(std::move(store)), expected_(expected) {}

  bool all_met() {
    absl::MutexLock lock(&mu_);
    return all_met_;
  }

  absl::StatusOr<RevealResult> Reveal(const RevealRequest& request) override {
    {
      absl::MutexLock lock(&mu_);
      ++inside_;
      auto all_inside = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return inside_ >= expected_;
      };
      if (!mu_.AwaitWithTimeout(absl::Condition(&all_inside),
                                absl::Seconds(30))) {
        all_met_ = false;
      }
    }
    return wrapped().Reveal(request);
  }

 private:
  const int expected_;
  absl::Mutex mu_;
  int inside_ ABSL_GUARDED_BY(mu_) = 0;
  bool all_met_ ABSL_GUARDED_BY(mu_) = true;
};

TEST(ThreadPoolLabelStoreTest, RunsAsManyBlockingWritesAtOnceAsItHasThreads) {
  constexpr int kThreads = 4;
  TestDir dir;
  auto gated =
      std::make_unique<GatedLabelStore>(MakeSqliteStore(dir), kThreads);
  GatedLabelStore* gate = gated.get();
  auto store = ThreadPoolLabelStore::Create(std::move(gated), kThreads);
  ASSERT_THAT(store, IsOk());
  bool created = false;
  ASSERT_THAT((*store)->CreateExperiment(Experiment("e", 100), &created),
              IsOk());

  // Each Reveal returns only once all four are inside the wrapped store, so
  // they finish only if the pool runs them at the same time.
  std::vector<Received<RevealResult>> received(kThreads);
  for (int i = 0; i < kThreads; ++i) {
    (*store)->RevealAsync(Reveal("e", {i}), received[i].Callback());
  }
  for (int i = 0; i < kThreads; ++i) {
    ASSERT_THAT(received[i].Wait(), IsOk());
    EXPECT_TRUE(received[i].result->value().granted);
  }
  EXPECT_TRUE(gate->all_met());
}

TEST(ThreadPoolLabelStoreTest, DestructorRunsEveryQueuedWrite) {
  constexpr int kWrites = 50;
  TestDir dir;
  std::atomic<int> finished{0};
  {
    auto store = ThreadPoolLabelStore::Create(MakeSqliteStore(dir), 1);
    ASSERT_THAT(store, IsOk());
    bool created = false;
    ASSERT_THAT((*store)->CreateExperiment(Experiment("e", 100), &created),
                IsOk());
    for (int i = 0; i < kWrites; ++i) {
      (*store)->RevealAsync(Reveal("e", {i}),
                            [&finished](absl::StatusOr<RevealResult> result) {
                              EXPECT_THAT(result, IsOk());
                              ++finished;
                            });
    }
  }
  EXPECT_EQ(finished.load(), kWrites);
}

}  // namespace
}  // namespace oracle_server
