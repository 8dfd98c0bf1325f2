// A LabelStore that forwards every call to another store, as a base for
// wrappers that change a few of them.
#ifndef ORACLE_SERVER_FORWARDING_LABEL_STORE_H_
#define ORACLE_SERVER_FORWARDING_LABEL_STORE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "oracle_server/label_store.h"

namespace oracle_server {

// Forwards every method, the asynchronous writes included, to the wrapped
// store, which it owns. Thread-safe as the wrapped store is.
class ForwardingLabelStore : public LabelStore {
 public:
  explicit ForwardingLabelStore(std::unique_ptr<LabelStore> store)
      : store_(std::move(store)) {}

  // The wrapped store, still owned by this wrapper.
  LabelStore& wrapped() { return *store_; }

  absl::StatusOr<DatasetInfo> GetDatasetInfo() override {
    return store_->GetDatasetInfo();
  }
  absl::StatusOr<std::vector<uint8_t>> LoadLabels(Split split) override {
    return store_->LoadLabels(split);
  }
  absl::StatusOr<ExperimentRecord> CreateExperiment(
      const ExperimentRecord& experiment, bool* created) override {
    return store_->CreateExperiment(experiment, created);
  }
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
  absl::StatusOr<RevealResult> Reveal(const RevealRequest& request) override {
    return store_->Reveal(request);
  }
  absl::StatusOr<EvaluationResult> RecordEvaluation(
      const EvaluationRequest& request) override {
    return store_->RecordEvaluation(request);
  }
  absl::StatusOr<int64_t> AppendAudit(const AuditRecord& row) override {
    return store_->AppendAudit(row);
  }
  void RevealAsync(const RevealRequest& request, RevealDone done) override {
    store_->RevealAsync(request, std::move(done));
  }
  void RecordEvaluationAsync(const EvaluationRequest& request,
                             EvaluationDone done) override {
    store_->RecordEvaluationAsync(request, std::move(done));
  }
  void AppendAuditAsync(const AuditRecord& row, AuditDone done) override {
    store_->AppendAuditAsync(row, std::move(done));
  }
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
  const std::unique_ptr<LabelStore> store_;
};

}  // namespace oracle_server

#endif  // ORACLE_SERVER_FORWARDING_LABEL_STORE_H_
