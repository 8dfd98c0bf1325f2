// A LabelStore wrapper for tests that makes chosen writes fail, to show that
// a storage failure reveals nothing and leaves the audit log intact.
#ifndef ORACLE_SERVER_FAILURE_INJECTING_LABEL_STORE_H_
#define ORACLE_SERVER_FAILURE_INJECTING_LABEL_STORE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "oracle_server/forwarding_label_store.h"
#include "oracle_server/label_store.h"

namespace oracle_server {

// Forwards every call to the wrapped store, except that the writes chosen
// with FailWrite (CreateExperiment, Reveal, RecordEvaluation, AppendAudit and
// the asynchronous forms, counted from 1 in call order) return UNAVAILABLE
// without reaching it (an asynchronous one calls `done` with it at once).
// Reads always go through. Thread-safe.
class FailureInjectingLabelStore final : public ForwardingLabelStore {
 public:
  explicit FailureInjectingLabelStore(std::unique_ptr<LabelStore> store)
      : ForwardingLabelStore(std::move(store)) {}

  // Makes write number `n` (1-based, counting every write since
  // construction) fail.
  void FailWrite(int64_t n);

  // Writes attempted so far, failed ones included.
  int64_t writes() const;

  absl::StatusOr<ExperimentRecord> CreateExperiment(
      const ExperimentRecord& experiment, bool* created) override;
  absl::StatusOr<RevealResult> Reveal(const RevealRequest& request) override;
  absl::StatusOr<EvaluationResult> RecordEvaluation(
      const EvaluationRequest& request) override;
  absl::StatusOr<int64_t> AppendAudit(const AuditRecord& row) override;
  void RevealAsync(const RevealRequest& request, RevealDone done) override;
  void RecordEvaluationAsync(const EvaluationRequest& request,
                             EvaluationDone done) override;
  void AppendAuditAsync(const AuditRecord& row, AuditDone done) override;

 private:
  // Counts a write; UNAVAILABLE if it is one chosen to fail.
  absl::Status CountWrite(absl::string_view method);

  mutable absl::Mutex mu_;
  int64_t writes_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<int64_t> failing_ ABSL_GUARDED_BY(mu_);
};

}  // namespace oracle_server

#endif  // ORACLE_SERVER_FAILURE_INJECTING_LABEL_STORE_H_
