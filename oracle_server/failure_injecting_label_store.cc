#include "oracle_server/failure_injecting_label_store.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace oracle_server {

void FailureInjectingLabelStore::FailWrite(int64_t n) {
  absl::MutexLock lock(&mu_);
  failing_.push_back(n);
}

int64_t FailureInjectingLabelStore::writes() const {
  absl::MutexLock lock(&mu_);
  return writes_;
}

absl::Status FailureInjectingLabelStore::CountWrite(absl::string_view method) {
  absl::MutexLock lock(&mu_);
  const int64_t n = ++writes_;
  if (std::find(failing_.begin(), failing_.end(), n) != failing_.end()) {
    return absl::UnavailableError(
        absl::StrCat("injected failure of write ", n, " (", method, ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ExperimentRecord> FailureInjectingLabelStore::CreateExperiment(
    const ExperimentRecord& experiment, bool* created) {
  RETURN_IF_ERROR(CountWrite("CreateExperiment"));
  return store_->CreateExperiment(experiment, created);
}

absl::StatusOr<RevealResult> FailureInjectingLabelStore::Reveal(
    const RevealRequest& request) {
  RETURN_IF_ERROR(CountWrite("Reveal"));
  return store_->Reveal(request);
}

absl::StatusOr<EvaluationResult> FailureInjectingLabelStore::RecordEvaluation(
    const EvaluationRequest& request) {
  RETURN_IF_ERROR(CountWrite("RecordEvaluation"));
  return store_->RecordEvaluation(request);
}

absl::StatusOr<int64_t> FailureInjectingLabelStore::AppendAudit(
    const AuditRecord& row) {
  RETURN_IF_ERROR(CountWrite("AppendAudit"));
  return store_->AppendAudit(row);
}

}  // namespace oracle_server
