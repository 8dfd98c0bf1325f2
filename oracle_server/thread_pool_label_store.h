// A LabelStore wrapper that gives a store with blocking writes asynchronous
// ones, by running them on a fixed pool of threads.
#ifndef ORACLE_SERVER_THREAD_POOL_LABEL_STORE_H_
#define ORACLE_SERVER_THREAD_POOL_LABEL_STORE_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "oracle_server/forwarding_label_store.h"
#include "oracle_server/label_store.h"

namespace oracle_server {

// Forwards every synchronous call to the wrapped store on the calling thread.
// RevealAsync, RecordEvaluationAsync and AppendAuditAsync queue the wrapped
// store's synchronous form instead and return at once; one of the pool's
// threads runs it and then calls `done` on that thread. Up to `threads`
// writes are in the wrapped store at a time, so a store with group commit
// can commit that many in one transaction while no caller's thread waits.
//
// A store whose own asynchronous writes never block needs no wrapper.
// Thread-safe. The destructor runs every queued write and its `done` before
// it returns.
class ThreadPoolLabelStore final : public ForwardingLabelStore {
 public:
  // INVALID_ARGUMENT unless `threads` is positive.
  static absl::StatusOr<std::unique_ptr<ThreadPoolLabelStore>> Create(
      std::unique_ptr<LabelStore> store, int threads);

  ~ThreadPoolLabelStore() override;

  ThreadPoolLabelStore(const ThreadPoolLabelStore&) = delete;
  ThreadPoolLabelStore& operator=(const ThreadPoolLabelStore&) = delete;

  void RevealAsync(const RevealRequest& request, RevealDone done) override;
  void RecordEvaluationAsync(const EvaluationRequest& request,
                             EvaluationDone done) override;
  void AppendAuditAsync(const AuditRecord& row, AuditDone done) override;

 private:
  using Work = absl::AnyInvocable<void() &&>;

  ThreadPoolLabelStore(std::unique_ptr<LabelStore> store, int threads);

  void Schedule(Work work);
  // One pool thread: runs queued work until the queue is empty and the
  // destructor has asked it to stop.
  void RunWorker();

  absl::Mutex mu_;
  std::deque<Work> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int idle_ ABSL_GUARDED_BY(mu_) = 0;  // workers waiting on work_ready_
  absl::CondVar work_ready_;           // signalled when work is queued
  std::vector<std::thread> workers_;
};

}  // namespace oracle_server

#endif  // ORACLE_SERVER_THREAD_POOL_LABEL_STORE_H_
