#include "oracle_server/label_store.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace oracle_server {

absl::string_view SplitName(Split split) {
  return split == Split::kTrain ? "train" : "test";
}

absl::string_view OutcomeName(Outcome outcome) {
  switch (outcome) {
    case Outcome::kGranted:
      return "GRANTED";
    case Outcome::kDeniedBudget:
      return "DENIED_BUDGET";
    case Outcome::kDeniedInvalid:
      return "DENIED_INVALID";
    case Outcome::kEvaluated:
      return "EVALUATED";
    case Outcome::kDeniedEvaluationCap:
      return "DENIED_EVALUATION_CAP";
  }
  return "UNKNOWN";
}

absl::StatusOr<Outcome> ParseOutcome(absl::string_view name) {
  for (Outcome outcome :
       {Outcome::kGranted, Outcome::kDeniedBudget, Outcome::kDeniedInvalid,
        Outcome::kEvaluated, Outcome::kDeniedEvaluationCap}) {
    if (OutcomeName(outcome) == name) return outcome;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown audit outcome \"", name, "\""));
}

void LabelStore::RevealAsync(const RevealRequest& request, RevealDone done) {
  std::move(done)(Reveal(request));
}

void LabelStore::RecordEvaluationAsync(const EvaluationRequest& request,
                                       EvaluationDone done) {
  std::move(done)(RecordEvaluation(request));
}

void LabelStore::AppendAuditAsync(const AuditRecord& row, AuditDone done) {
  std::move(done)(AppendAudit(row));
}

}  // namespace oracle_server
