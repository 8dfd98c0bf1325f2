#include "oracle_server/thread_pool_label_store.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace oracle_server {

absl::StatusOr<std::unique_ptr<ThreadPoolLabelStore>>
ThreadPoolLabelStore::Create(std::unique_ptr<LabelStore> store, int threads) {
  if (threads <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("threads must be positive, got ", threads));
  }
  return std::unique_ptr<ThreadPoolLabelStore>(
      new ThreadPoolLabelStore(std::move(store), threads));
}

ThreadPoolLabelStore::ThreadPoolLabelStore(std::unique_ptr<LabelStore> store,
                                           int threads)
    : ForwardingLabelStore(std::move(store)) {
  workers_.reserve(threads);
  for (int i = 0; i < threads; ++i) {
    workers_.emplace_back([this] { RunWorker(); });
  }
}

ThreadPoolLabelStore::~ThreadPoolLabelStore() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    work_ready_.SignalAll();
  }
  for (std::thread& worker : workers_) worker.join();
}

void ThreadPoolLabelStore::Schedule(Work work) {
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(work));
  // One idle worker is enough; a busy one takes the work when it is done.
  if (idle_ > 0) work_ready_.Signal();
}

void ThreadPoolLabelStore::RunWorker() {
  while (true) {
    Work work;
    {
      absl::MutexLock lock(&mu_);
      while (queue_.empty() && !stopping_) {
        ++idle_;
        work_ready_.Wait(&mu_);
        --idle_;
      }
      if (queue_.empty()) return;  // stopping, nothing left
      work = std::move(queue_.front());
      queue_.pop_front();
    }
    std::move(work)();
  }
}

void ThreadPoolLabelStore::RevealAsync(const RevealRequest& request,
                                       RevealDone done) {
  Schedule([this, request, done = std::move(done)]() mutable {
    std::move(done)(wrapped().Reveal(request));
  });
}

void ThreadPoolLabelStore::RecordEvaluationAsync(
    const EvaluationRequest& request, EvaluationDone done) {
  Schedule([this, request, done = std::move(done)]() mutable {
    std::move(done)(wrapped().RecordEvaluation(request));
  });
}

void ThreadPoolLabelStore::AppendAuditAsync(const AuditRecord& row,
                                            AuditDone done) {
  Schedule([this, row, done = std::move(done)]() mutable {
    std::move(done)(wrapped().AppendAudit(row));
  });
}

}  // namespace oracle_server
