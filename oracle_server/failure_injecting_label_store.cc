#include "oracle_server/failure_injecting_label_store.h"

#include <algorithm>
#include <utility>

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
  return wrapped().CreateExperiment(experiment, created);
}

absl::StatusOr<RevealResult> FailureInjectingLabelStore::Reveal(
    const RevealRequest& request) {
  RETURN_IF_ERROR(CountWrite("Reveal"));
  return wrapped().Reveal(request);
}

absl::StatusOr<EvaluationResult> FailureInjectingLabelStore::RecordEvaluation(
    const EvaluationRequest& request) {
  RETURN_IF_ERROR(CountWrite("RecordEvaluation"));
  return wrapped().RecordEvaluation(request);
}

absl::StatusOr<int64_t> FailureInjectingLabelStore::AppendAudit(
    const AuditRecord& row) {
  RETURN_IF_ERROR(CountWrite("AppendAudit"));
  return wrapped().AppendAudit(row);
}

void FailureInjectingLabelStore::RevealAsync(const RevealRequest& request,
                                             RevealDone done) {
  absl::Status status = CountWrite("RevealAsync");
  if (!status.ok()) return std::move(done)(status);
  wrapped().RevealAsync(request, std::move(done));
}

void FailureInjectingLabelStore::RecordEvaluationAsync(
    const EvaluationRequest& request, EvaluationDone done) {
  absl::Status status = CountWrite("RecordEvaluationAsync");
  if (!status.ok()) return std::move(done)(status);
  wrapped().RecordEvaluationAsync(request, std::move(done));
}

void FailureInjectingLabelStore::AppendAuditAsync(const AuditRecord& row,
                                                  AuditDone done) {
  absl::Status status = CountWrite("AppendAuditAsync");
  if (!status.ok()) return std::move(done)(status);
  wrapped().AppendAuditAsync(row, std::move(done));
}

}  // namespace oracle_server
