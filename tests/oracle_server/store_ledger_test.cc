#include "oracle_server/store_ledger.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/status_matchers.h"
#include "oracle_server/audit_chain.h"

namespace oracle_server {
namespace {

using ::common::IsOk;
using ::common::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// A backend in memory: the committed snapshot, and what each group wrote.
class FakeBackend : public LedgerBackend, private LedgerTransaction {
 public:
  absl::Status InWriteTransaction(
      absl::FunctionRef<absl::Status(LedgerTransaction&)> body) override {
    if (block_next_.exchange(false)) {
      entered_.Notify();
      released_.WaitForNotification();
    }
    ++transactions_;
    absl::Status status = body(*this);
    if (status.ok()) status = fail_commit_;
    if (status.ok() && pending_.has_value()) {
      writes_.push_back(*pending_);
      snapshot_.stamp.head_sequence = pending_->rows.back().sequence;
      snapshot_.stamp.head_hash = pending_->rows.back().hash;
    }
    pending_.reset();
    if (status.ok() && after_commit_) std::exchange(after_commit_, nullptr)();
    return status;
  }

  // Runs `hook` once, after the next commit that succeeds and before the
  // ledger takes the group in: where a store's other threads can act once
  // the backend's write lock is released.
  void AfterNextCommit(std::function<void()> hook) {
    after_commit_ = std::move(hook);
  }

  LedgerSnapshot& snapshot() { return snapshot_; }
  const std::vector<GroupWrite>& writes() const { return writes_; }
  int loads() const { return loads_; }
  void set_fail_commit(absl::Status status) { fail_commit_ = status; }
  int transactions() const { return transactions_; }
  // Holds the next transaction before it starts until Release().
  void BlockNext() { block_next_ = true; }
  void WaitUntilBlocked() { entered_.WaitForNotification(); }
  void Release() { released_.Notify(); }

 private:
  absl::StatusOr<LedgerStamp> ReadStamp() override { return snapshot_.stamp; }
  absl::StatusOr<LedgerSnapshot> LoadSnapshot() override {
    ++loads_;
    return snapshot_;
  }
  absl::Status WriteGroup(const GroupWrite& write) override {
    pending_ = write;
    return absl::OkStatus();
  }

  LedgerSnapshot snapshot_ = [] {
    LedgerSnapshot snapshot;
    snapshot.stamp.head_hash = kGenesisHash;
    return snapshot;
  }();
  std::optional<GroupWrite> pending_;
  std::vector<GroupWrite> writes_;
  absl::Status fail_commit_;
  std::function<void()> after_commit_;
  std::atomic<int> transactions_{0};
  int loads_ = 0;
  std::atomic<bool> block_next_{false};
  absl::Notification entered_;
  absl::Notification released_;
};

ExperimentRecord Experiment(int64_t id, const std::string& name, int64_t budget,
                            int64_t evaluation_cap = 2) {
  ExperimentRecord record;
  record.id = id;
  record.name = name;
  record.label_budget = budget;
  record.evaluation_cap = evaluation_cap;
  return record;
}

RevealRequest Reveal(const std::string& experiment, std::vector<int64_t> ids) {
  RevealRequest request;
  request.experiment = experiment;
  request.ids = std::move(ids);
  return request;
}

LedgerOptions Options() {
  LedgerOptions options;
  options.train_count = 100;
  return options;
}

TEST(StoreLedgerTest, BuildsStateFromASnapshot) {
  FakeBackend backend;
  LedgerSnapshot& snapshot = backend.snapshot();
  snapshot.experiments = {Experiment(1, "a", 5), Experiment(2, "b", 5)};
  // An unknown experiment's row is ignored; an id out of range still counts.
  snapshot.revealed = {{1, 3}, {1, 4}, {2, 500}, {9, 1}};
  snapshot.audit_counts = {{"a", kKindQuery, "GRANTED", "", 2},
                           {"a", kKindQuery, "DENIED_BUDGET", "", 1},
                           {"b", kKindEvaluate, "EVALUATED", "p", 2}};
  snapshot.stamp.head_sequence = 5;
  snapshot.stamp.head_hash = std::string(64, 'a');
  StoreLedger ledger(Options(), &backend);
  ledger.Reset(snapshot);

  EXPECT_THAT(ledger.Experiments(),
              ElementsAre(testing::Field(&ExperimentRecord::name, "a"),
                          testing::Field(&ExperimentRecord::name, "b")));
  auto a = ledger.Usage("a");
  ASSERT_THAT(a, IsOk());
  EXPECT_EQ(a->spent, 2);
  EXPECT_EQ(a->requests_granted, 2);
  EXPECT_EQ(a->requests_denied, 1);
  auto b = ledger.Usage("b");
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(b->spent, 1);
  EXPECT_EQ(b->evaluations, 2);
  EXPECT_THAT(ledger.Usage("c"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(ledger.Stamp().head_sequence, 5);

  // Ids 3 and 4 are known to "a": only 5 and 6 cost budget.
  auto result = ledger.Reveal(Reveal("a", {3, 5, 4, 6}));
  ASSERT_THAT(result, IsOk());
  EXPECT_TRUE(result->granted);
  EXPECT_THAT(result->newly_revealed, ElementsAre(5, 6));
  EXPECT_EQ(result->spent, 4);
  EXPECT_EQ(result->remaining, 1);
  EXPECT_EQ(result->audit_sequence, 6);
  ASSERT_EQ(backend.writes().size(), 1u);
  const AuditRecord& row = backend.writes()[0].rows[0];
  EXPECT_EQ(row.prev_hash, std::string(64, 'a'));
  EXPECT_EQ(row.hash, AuditRowHash(row.prev_hash, row));
  EXPECT_EQ(backend.loads(), 0);
}

TEST(StoreLedgerTest, DeniesOverBudgetAndCountsRepeatsOnce) {
  FakeBackend backend;
  StoreLedger ledger(Options(), &backend);
  backend.snapshot().experiments = {Experiment(1, "e", 3)};
  ledger.Reset(backend.snapshot());
  auto repeated = ledger.Reveal(Reveal("e", {7, 7, 8}));
  ASSERT_THAT(repeated, IsOk());
  EXPECT_THAT(repeated->newly_revealed, ElementsAre(7, 8));
  EXPECT_EQ(repeated->remaining, 1);
  auto denied = ledger.Reveal(Reveal("e", {9, 10}));
  ASSERT_THAT(denied, IsOk());
  EXPECT_FALSE(denied->granted);
  EXPECT_EQ(denied->requested_new, 2);
  EXPECT_EQ(denied->remaining, 1);
  ASSERT_EQ(backend.writes().size(), 2u);
  EXPECT_EQ(backend.writes()[1].rows[0].outcome, Outcome::kDeniedBudget);
  EXPECT_THAT(backend.writes()[1].revealed, IsEmpty());
  EXPECT_THAT(ledger.Reveal(Reveal("nope", {1})),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope")));
}

TEST(StoreLedgerTest, EvaluationCapsPerExperimentPerPeerAndInTotal) {
  FakeBackend backend;
  StoreLedger ledger(Options(), &backend);
  backend.snapshot().experiments = {Experiment(1, "a", 3, /*cap=*/2),
                                    Experiment(2, "b", 3, /*cap=*/5)};
  ledger.Reset(backend.snapshot());
  EvaluationRequest request;
  request.experiment = "a";
  request.peer = "p";
  request.max_per_peer = 3;
  request.max_total = 4;
  EXPECT_TRUE(ledger.RecordEvaluation(request)->allowed);
  EXPECT_TRUE(ledger.RecordEvaluation(request)->allowed);
  auto capped = ledger.RecordEvaluation(request);
  ASSERT_THAT(capped, IsOk());
  EXPECT_FALSE(capped->allowed);
  EXPECT_EQ(capped->denial, "evaluation cap of 2 reached");
  request.experiment = "b";
  EXPECT_TRUE(ledger.RecordEvaluation(request)->allowed);
  auto per_peer = ledger.RecordEvaluation(request);
  ASSERT_THAT(per_peer, IsOk());
  EXPECT_EQ(per_peer->denial,
            "evaluation cap of 3 per client identity reached for \"p\"");
  request.peer = "q";
  EXPECT_TRUE(ledger.RecordEvaluation(request)->allowed);
  auto total = ledger.RecordEvaluation(request);
  ASSERT_THAT(total, IsOk());
  EXPECT_EQ(total->denial, "server-wide evaluation cap of 4 reached");
  EXPECT_EQ(ledger.Usage("b")->evaluations, 2);
}

TEST(StoreLedgerTest, FailedCommitChangesNothing) {
  FakeBackend backend;
  StoreLedger ledger(Options(), &backend);
  backend.snapshot().experiments = {Experiment(1, "e", 3)};
  ledger.Reset(backend.snapshot());
  backend.set_fail_commit(absl::UnavailableError("disk went away"));
  EXPECT_THAT(ledger.Reveal(Reveal("e", {1, 2})),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(ledger.Usage("e")->spent, 0);
  EXPECT_EQ(ledger.Stamp().head_sequence, 0);
  backend.set_fail_commit(absl::OkStatus());
  auto granted = ledger.Reveal(Reveal("e", {1, 2, 3}));
  ASSERT_THAT(granted, IsOk());
  EXPECT_TRUE(granted->granted);
  EXPECT_EQ(granted->audit_sequence, 1);
}

// A stamp that moved (another writer) reloads the state before deciding.
TEST(StoreLedgerTest, ReloadsWhenTheStampMoved) {
  FakeBackend backend;
  StoreLedger ledger(Options(), &backend);
  backend.snapshot().experiments = {Experiment(1, "e", 3)};
  ledger.Reset(backend.snapshot());
  // Another process created "f" and spent two of its labels.
  backend.snapshot().experiments.push_back(Experiment(2, "f", 2));
  backend.snapshot().revealed = {{2, 1}, {2, 2}};
  backend.snapshot().stamp.experiments_version = 1;
  backend.snapshot().stamp.head_sequence = 1;
  backend.snapshot().stamp.head_hash = std::string(64, 'b');
  auto denied = ledger.Reveal(Reveal("f", {3}));
  ASSERT_THAT(denied, IsOk());
  EXPECT_FALSE(denied->granted);
  EXPECT_EQ(denied->audit_sequence, 2);
  EXPECT_EQ(backend.loads(), 1);
  EXPECT_EQ(backend.writes()[0].rows[0].prev_hash, std::string(64, 'b'));
}

// An experiment this process inserted is added without a reload if nobody
// else wrote since; otherwise the next write reloads.
TEST(StoreLedgerTest, AddExperimentIfAtSkipsTheReloadOnlyWhenUpToDate) {
  FakeBackend backend;
  StoreLedger ledger(Options(), &backend);
  ledger.Reset(backend.snapshot());
  const LedgerStamp seen = ledger.Stamp();
  LedgerStamp after = seen;
  after.experiments_version = 1;
  backend.snapshot().experiments = {Experiment(1, "e", 3)};
  backend.snapshot().stamp = after;
  ledger.AddExperimentIfAt(Experiment(1, "e", 3), seen, after);
  ASSERT_THAT(ledger.Reveal(Reveal("e", {1})), IsOk());
  EXPECT_EQ(backend.loads(), 0);

  // Another process created "f" (version 2); this one then created "g"
  // having seen version 2, but its ledger is still at version 1.
  backend.snapshot().experiments.push_back(Experiment(2, "f", 3));
  backend.snapshot().experiments.push_back(Experiment(3, "g", 3));
  LedgerStamp other = backend.snapshot().stamp;
  other.experiments_version = 2;
  LedgerStamp latest = other;
  latest.experiments_version = 3;
  backend.snapshot().stamp = latest;
  ledger.AddExperimentIfAt(Experiment(3, "g", 3), other, latest);
  EXPECT_FALSE(ledger.FindExperiment("g").has_value());
  ASSERT_THAT(ledger.Reveal(Reveal("f", {1})), IsOk());
  EXPECT_EQ(backend.loads(), 1);
  EXPECT_TRUE(ledger.FindExperiment("g").has_value());
}

TEST(StoreLedgerTest, OutOfRangeHeadIsDataLoss) {
  FakeBackend backend;
  StoreLedger ledger(Options(), &backend);
  backend.snapshot().stamp.head_sequence = -1;
  ledger.Reset(backend.snapshot());
  AuditRecord row;
  row.experiment = "e";
  row.kind = kKindQuery;
  EXPECT_THAT(ledger.AppendAudit(row),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("-1")));
}

// Writes queued behind a commit in flight: each `done` runs once, after the
// group's single commit, with what the synchronous form returns for the
// same sequence of calls.
TEST(StoreLedgerTest, AsyncWritesMatchTheSyncResultsInOneGroup) {
  auto run = [](bool async) {
    FakeBackend backend;
    StoreLedger ledger(Options(), &backend);
    backend.snapshot().experiments = {Experiment(1, "e", 3)};
    ledger.Reset(backend.snapshot());
    std::vector<absl::StatusOr<RevealResult>> results(3);
    std::vector<int> calls(3, 0);
    const std::vector<std::vector<int64_t>> asks = {{1, 2}, {3, 4}, {2, 3}};
    if (!async) {
      for (int i = 0; i < 3; ++i)
        results[i] = ledger.Reveal(Reveal("e", asks[i]));
      return std::make_pair(results, backend.transactions());
    }
    backend.BlockNext();
    AuditRecord row;
    row.experiment = "e";
    row.kind = kKindQuery;
    int audit_calls = 0;
    ledger.AppendAuditAsync(row, [&](absl::StatusOr<int64_t> sequence) {
      EXPECT_THAT(sequence, IsOk());
      ++audit_calls;
    });
    backend.WaitUntilBlocked();
    for (int i = 0; i < 3; ++i) {
      ledger.RevealAsync(Reveal("e", asks[i]),
                         [&, i](absl::StatusOr<RevealResult> result) {
                           results[i] = std::move(result);
                           ++calls[i];
                         });
    }
    EXPECT_TRUE(ledger.AwaitQueuedWritesForTesting(3, absl::Seconds(30)));
    backend.Release();
    // A synchronous write behind them returns after they completed.
    EXPECT_THAT(ledger.Usage("e"), IsOk());
    EXPECT_THAT(ledger.AppendAudit(row), IsOk());
    EXPECT_EQ(audit_calls, 1);
    EXPECT_THAT(calls, ElementsAre(1, 1, 1));
    // The blocked row, then the three reveals in one group (the synchronous
    // row may have joined them).
    EXPECT_LE(backend.transactions(), 3);
    return std::make_pair(results, backend.transactions());
  };
  auto sync = run(false).first;
  auto async = run(true).first;
  for (int i = 0; i < 3; ++i) {
    ASSERT_THAT(sync[i], IsOk());
    ASSERT_THAT(async[i], IsOk());
    EXPECT_EQ(async[i]->granted, sync[i]->granted) << i;
    EXPECT_EQ(async[i]->newly_revealed, sync[i]->newly_revealed) << i;
    EXPECT_EQ(async[i]->remaining, sync[i]->remaining) << i;
    EXPECT_EQ(async[i]->audit_sequence, sync[i]->audit_sequence + 1) << i;
  }
  EXPECT_FALSE(sync[1]->granted);
}

TEST(StoreLedgerTest, FailedCommitReachesEveryDoneOfTheGroup) {
  FakeBackend backend;
  StoreLedger ledger(Options(), &backend);
  backend.snapshot().experiments = {Experiment(1, "e", 30)};
  ledger.Reset(backend.snapshot());
  backend.BlockNext();
  AuditRecord row;
  row.experiment = "e";
  row.kind = kKindQuery;
  absl::StatusOr<int64_t> blocked;
  ledger.AppendAuditAsync(
      row, [&](absl::StatusOr<int64_t> sequence) { blocked = sequence; });
  backend.WaitUntilBlocked();
  backend.set_fail_commit(absl::UnavailableError("disk went away"));
  std::atomic<int> failed{0};
  for (int i = 0; i < 4; ++i) {
    ledger.RevealAsync(Reveal("e", {i}), [&](absl::StatusOr<RevealResult> r) {
      EXPECT_THAT(r, StatusIs(absl::StatusCode::kUnavailable));
      ++failed;
    });
  }
  EvaluationRequest evaluation;
  evaluation.experiment = "e";
  ledger.RecordEvaluationAsync(
      evaluation, [&](absl::StatusOr<EvaluationResult> r) {
        EXPECT_THAT(r, StatusIs(absl::StatusCode::kUnavailable));
        ++failed;
      });
  ASSERT_TRUE(ledger.AwaitQueuedWritesForTesting(5, absl::Seconds(30)));
  backend.Release();
  EXPECT_THAT(ledger.AppendAudit(row),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(failed, 5);
  EXPECT_THAT(blocked, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(ledger.Usage("e")->spent, 0);
  EXPECT_EQ(ledger.Stamp().head_sequence, 0);
}

// Destroying the ledger with writes queued commits and completes them all.
TEST(StoreLedgerTest, DestructionCompletesQueuedWrites) {
  FakeBackend backend;
  auto ledger = std::make_unique<StoreLedger>(Options(), &backend);
  backend.snapshot().experiments = {Experiment(1, "e", 30)};
  ledger->Reset(backend.snapshot());
  backend.BlockNext();
  std::atomic<int> done{0};
  for (int i = 0; i < 10; ++i) {
    ledger->RevealAsync(Reveal("e", {i}), [&](absl::StatusOr<RevealResult> r) {
      EXPECT_THAT(r, IsOk());
      ++done;
    });
  }
  backend.WaitUntilBlocked();
  std::thread destroy([&] { ledger.reset(); });
  backend.Release();
  destroy.join();
  EXPECT_EQ(done, 10);
  int64_t revealed = 0;
  for (const GroupWrite& write : backend.writes()) {
    revealed += static_cast<int64_t>(write.revealed.size());
  }
  EXPECT_EQ(revealed, 10);
}

// SqliteLabelStore::CreateExperiment, finding an experiment that another
// connection created, updates the ledger holding only the store's write
// lock; that can land after a group's transaction committed and before the
// ledger takes the group in. It used to Reset there, freeing the
// experiment states the group's plan points at and counting the group twice
// (once in the snapshot, once when taken in). ReloadAtNextWrite and
// AddExperiment are safe there; the reload waits for the next group.
TEST(StoreLedgerTest, ReloadAskedForWhileAGroupIsInFlightComesWithTheNext) {
  FakeBackend backend;
  backend.snapshot().experiments = {Experiment(1, "a", 5)};
  StoreLedger ledger(Options(), &backend);
  ledger.Reset(backend.snapshot());
  backend.AfterNextCommit([&] {
    // What the database holds now: the group, and experiments "b" and "c"
    // that another connection created (no audit rows, so the same stamp).
    LedgerSnapshot& committed = backend.snapshot();
    committed.experiments = {Experiment(1, "a", 5), Experiment(2, "b", 5),
                             Experiment(3, "c", 5)};
    committed.revealed = {{1, 1}};
    committed.audit_counts = {{"a", kKindQuery, "GRANTED", "", 1}};
    ledger.AddExperiment(Experiment(2, "b", 5));
    ledger.AddExperiment(Experiment(1, "a", 99));  // known: left as it is
    ledger.ReloadAtNextWrite();
  });
  ASSERT_THAT(ledger.Reveal(Reveal("a", {1})), IsOk());
  auto usage = ledger.Usage("a");
  ASSERT_THAT(usage, IsOk());
  EXPECT_EQ(usage->spent, 1);
  EXPECT_EQ(usage->requests_granted, 1);
  EXPECT_EQ(ledger.FindExperiment("a")->label_budget, 5);
  EXPECT_TRUE(ledger.FindExperiment("b").has_value());
  EXPECT_EQ(backend.loads(), 0);

  // The next group reloads, although the stamp did not move.
  auto b = ledger.Reveal(Reveal("b", {7}));
  ASSERT_THAT(b, IsOk());
  EXPECT_TRUE(b->granted);
  EXPECT_EQ(backend.loads(), 1);
  EXPECT_TRUE(ledger.FindExperiment("c").has_value());
  usage = ledger.Usage("a");
  ASSERT_THAT(usage, IsOk());
  EXPECT_EQ(usage->spent, 1);
  EXPECT_EQ(usage->requests_granted, 1);
  // Once.
  ASSERT_THAT(ledger.Reveal(Reveal("a", {2})), IsOk());
  EXPECT_EQ(backend.loads(), 1);
}

}  // namespace
}  // namespace oracle_server
