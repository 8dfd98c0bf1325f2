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
#include "oracle_server/label_store.h"

namespace oracle_server {

// Forwards every call to the wrapped store, except that the writes chosen
// with FailWrite (CreateExperiment, Reveal, RecordEvaluation, AppendAudit,
// counted from 1 in call order) return UNAVAILABLE without reaching it.
// Reads always go through. Thread-safe.
class FailureInjectingLabelStore final : public LabelStore {
 public:
  explicit FailureInjectingLabelStore(std::unique_ptr<LabelStore> store)
      : store_(std::move(store)) {}

  // Makes write number `n` (1-based, counting every write since
  // construction) fail.
  void FailWrite(int64_t n);

  // Writes attempted so far, failed ones included.
  int64_t writes() const;

  // The wrapped store, still owned by this wrapper.
  LabelStore& wrapped() { return *store_; }

  absl::StatusOr<DatasetInfo> GetDatasetInfo() override {
    return store_->GetDatasetInfo();
  }
  absl::StatusOr<std::vector<uint8_t>> LoadLabels(Split split) override {
    return store_->LoadLabels(split);
  }
  absl::StatusOr<ExperimentRecord> CreateExperiment(
      const ExperimentRecord& experiment, bool* created) override;
  absl::StatusOr<ExperimentRecord> GetExperiment(
      absl::string_view name) override {
    return store_->GetExperiment(name);
  }
  absl::StatusOr<std::vector<ExperimentRecord>> ListExperiments() override {
    return store_->ListExperiments();
  }
  absl::StatusOr<ExperimentUsage> GetUsage(absl::string_view name) override {
    return store_->GetUsage(name);
  }
  absl::StatusOr<RevealResult> Reveal(const RevealRequest& request) override;
  absl::StatusOr<EvaluationResult> RecordEvaluation(
      const EvaluationRequest& request) override;
  absl::StatusOr<int64_t> AppendAudit(const AuditRecord& row) override;
  absl::StatusOr<std::vector<AuditRecord>> ListAudit(
      absl::string_view experiment, int64_t after_sequence,
      int64_t limit) override {
    return store_->ListAudit(experiment, after_sequence, limit);
  }
  absl::StatusOr<std::pair<int64_t, std::string>> GetAuditHead() override {
    return store_->GetAuditHead();
  }
  absl::StatusOr<std::vector<RevealedRecord>> ListRevealed() override {
    return store_->ListRevealed();
  }

 private:
  // Counts a write; UNAVAILABLE if it is one chosen to fail.
  absl::Status CountWrite(absl::string_view method);

  const std::unique_ptr<LabelStore> store_;
  mutable absl::Mutex mu_;
  int64_t writes_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<int64_t> failing_ ABSL_GUARDED_BY(mu_);
};

}  // namespace oracle_server

#endif  // ORACLE_SERVER_FAILURE_INJECTING_LABEL_STORE_H_
