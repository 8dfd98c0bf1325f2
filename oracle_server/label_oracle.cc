#include "oracle_server/label_oracle.h"

#include <algorithm>
#include <set>
#include <unordered_map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/idx_file.h"
#include "oracle_server/await_done.h"
#include "common/sha256.h"
#include "common/status_macros.h"

namespace oracle_server {
namespace {

constexpr size_t kMaxNameLength = 128;
constexpr int32_t kDefaultPageSize = 1000;
constexpr int32_t kMaxPageSize = 10000;

int64_t NowMicros() { return absl::ToUnixMicros(absl::Now()); }

absl::Status ValidateName(absl::string_view name) {
  if (name.empty() || name.size() > kMaxNameLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("experiment name must be 1 to ", kMaxNameLength,
                     " characters, got ", name.size()));
  }
  for (char c : name) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                    (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          "experiment name \"", name, "\" may only hold [A-Za-z0-9_.-]"));
    }
  }
  return absl::OkStatus();
}

// Compares two hex digests without an early exit.
bool SameDigest(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= a[i] ^ b[i];
  return diff == 0;
}

// UNAUTHENTICATED unless `token` opens `experiment` (any token opens one
// without a token).
absl::Status CheckToken(const ExperimentRecord& experiment,
                        absl::string_view token) {
  if (experiment.token_sha256.empty()) return absl::OkStatus();
  if (token.empty()) {
    return absl::UnauthenticatedError(
        absl::StrCat("experiment \"", experiment.name,
                     "\" requires a token (metadata x-oracle-token)"));
  }
  if (!SameDigest(common::Sha256Hex(token), experiment.token_sha256)) {
    return absl::UnauthenticatedError(
        absl::StrCat("wrong token for experiment \"", experiment.name, "\""));
  }
  return absl::OkStatus();
}

absl::StatusOr<ExperimentRecord> FindExperiment(LabelStore& store,
                                                absl::string_view name) {
  if (name.empty()) {
    return absl::InvalidArgumentError("experiment name is required");
  }
  return store.GetExperiment(name);
}

// True if every id is in [0, train_count) and none repeats. Allocation-free
// for small batches (the common case), one sorted copy otherwise.
bool IdsInRangeAndDistinct(const google::protobuf::RepeatedField<int64_t>& ids,
                           int64_t train_count) {
  for (const int64_t id : ids) {
    if (id < 0 || id >= train_count) return false;
  }
  constexpr int kPairwiseLimit = 32;
  if (ids.size() <= kPairwiseLimit) {
    for (int i = 1; i < ids.size(); ++i) {
      for (int j = 0; j < i; ++j) {
        if (ids[i] == ids[j]) return false;
      }
    }
    return true;
  }
  std::vector<int64_t> sorted(ids.begin(), ids.end());
  std::sort(sorted.begin(), sorted.end());
  return std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end();
}

absl::Status ValidateIds(const google::protobuf::RepeatedField<int64_t>& ids,
                         int64_t max_batch, int64_t train_count) {
  if (ids.empty()) {
    return absl::InvalidArgumentError("ids is empty; ask for at least one id");
  }
  if (ids.size() > max_batch) {
    return absl::InvalidArgumentError(absl::StrCat(
        "batch of ", ids.size(), " ids exceeds max_batch ", max_batch));
  }
  if (IdsInRangeAndDistinct(ids, train_count)) return absl::OkStatus();
  // Names the first offending index, in request order.
  std::unordered_map<int64_t, int> first_index;
  first_index.reserve(ids.size());
  for (int i = 0; i < ids.size(); ++i) {
    const int64_t id = ids[i];
    if (id < 0 || id >= train_count) {
      return absl::InvalidArgumentError(absl::StrCat(
          "id ", id, " at index ", i, " is not in [0, ", train_count, ")"));
    }
    auto [it, inserted] = first_index.emplace(id, i);
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrCat(
          "id ", id, " appears twice (at index ", it->second, " and ", i, ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::string_view RoleName(Role role) {
  switch (role) {
    case Role::kOpen:
      return "open";
    case Role::kAdmin:
      return "admin";
    case Role::kClient:
      return "client";
  }
  return "unknown";
}

absl::StatusOr<std::unique_ptr<LabelOracle>> LabelOracle::Create(
    const OracleOptions& options, std::unique_ptr<LabelStore> store) {
  if (options.default_budget <= 0 || options.max_batch <= 0 ||
      options.eval_cap <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("default_budget (", options.default_budget,
                     "), max_batch (", options.max_batch, ") and eval_cap (",
                     options.eval_cap, ") must be positive"));
  }
  if (options.max_evaluations_per_client < 0 ||
      options.max_evaluations_total < 0 ||
      options.evaluate_min_predictions_per_class < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_evaluations_per_client (", options.max_evaluations_per_client,
        "), max_evaluations_total (", options.max_evaluations_total,
        ") and evaluate_min_predictions_per_class (",
        options.evaluate_min_predictions_per_class,
        ") must not be negative"));
  }
  ASSIGN_OR_RETURN(std::vector<uint8_t> train_labels,
                   store->LoadLabels(Split::kTrain));
  ASSIGN_OR_RETURN(std::vector<uint8_t> test_labels,
                   store->LoadLabels(Split::kTest));
  return std::unique_ptr<LabelOracle>(new LabelOracle(
      options, std::move(store), static_cast<int64_t>(train_labels.size()),
      std::move(test_labels)));
}

LabelOracle::LabelOracle(const OracleOptions& options,
                         std::unique_ptr<LabelStore> store, int64_t train_count,
                         std::vector<uint8_t> test_labels)
    : options_(options),
      admin_token_sha256_(options.admin_token.empty()
                              ? ""
                              : common::Sha256Hex(options.admin_token)),
      store_(std::move(store)),
      train_count_(train_count),
      test_labels_(std::move(test_labels)) {}

Role LabelOracle::RoleOf(const Caller& caller) const {
  if (admin_token_sha256_.empty()) return Role::kOpen;
  if (!caller.token.empty() &&
      SameDigest(common::Sha256Hex(caller.token), admin_token_sha256_)) {
    return Role::kAdmin;
  }
  return Role::kClient;
}

absl::Status LabelOracle::Authorize(const ExperimentRecord& experiment,
                                    Role role, absl::string_view token) const {
  if (role == Role::kAdmin) return absl::OkStatus();
  if (role == Role::kClient && experiment.token_sha256.empty()) {
    return absl::UnauthenticatedError(absl::StrCat(
        "experiment \"", experiment.name,
        "\" has no token; on a server with an admin token only the operator "
        "may use it"));
  }
  return CheckToken(experiment, token);
}

void LabelOracle::DenyAsync(absl::Status denial, AuditRecord row,
                            absl::AnyInvocable<void(absl::Status) &&> done) {
  row.outcome = Outcome::kDeniedInvalid;
  row.detail = absl::StrCat(absl::StatusCodeToString(denial.code()), ": ",
                            denial.message(), row.detail.empty() ? "" : "; ",
                            row.detail);
  store_->AppendAuditAsync(
      row, [denial = std::move(denial),
            done = std::move(done)](absl::StatusOr<int64_t> appended) mutable {
        std::move(done)(appended.ok() ? std::move(denial)
                                      : std::move(appended).status());
      });
}

absl::StatusOr<oracle::v1::Experiment> LabelOracle::CreateExperiment(
    const oracle::v1::CreateExperimentRequest& request, const Caller& caller) {
  RETURN_IF_ERROR(ValidateName(request.name()));
  if (request.label_budget() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "label_budget must not be negative, got ", request.label_budget()));
  }
  const Role role = RoleOf(caller);
  const std::string& token =
      request.token().empty() ? caller.token : request.token();
  if (role == Role::kClient) {
    // A client only joins: look the experiment up instead of creating it.
    absl::StatusOr<ExperimentRecord> existing =
        store_->GetExperiment(request.name());
    if (absl::IsNotFound(existing.status())) {
      if (token.empty()) {
        return absl::UnauthenticatedError(absl::StrCat(
            "creating experiment \"", request.name(),
            "\" needs the admin token (metadata ", "x-oracle-token)"));
      }
      return absl::PermissionDeniedError(absl::StrCat(
          "creating experiment \"", request.name(),
          "\" needs the admin token; an experiment token only joins its "
          "experiment"));
    }
    if (!existing.ok()) return existing.status();
    RETURN_IF_ERROR(Authorize(*existing, role, token));
  }
  ExperimentRecord wanted;
  wanted.name = request.name();
  wanted.label_budget = request.label_budget() > 0 ? request.label_budget()
                                                   : options_.default_budget;
  wanted.token_sha256 =
      request.token().empty() ? "" : common::Sha256Hex(request.token());
  wanted.evaluation_cap = options_.eval_cap;
  bool created = false;
  ASSIGN_OR_RETURN(ExperimentRecord stored,
                   store_->CreateExperiment(wanted, &created));
  if (!created) {
    if (role == Role::kAdmin) {
      if (!request.token().empty() && !stored.token_sha256.empty() &&
          !SameDigest(common::Sha256Hex(request.token()),
                      stored.token_sha256)) {
        return absl::AlreadyExistsError(
            absl::StrCat("experiment \"", stored.name,
                         "\" already exists with another token"));
      }
    } else {
      RETURN_IF_ERROR(Authorize(stored, role, token));
    }
    if (stored.token_sha256.empty() && !request.token().empty()) {
      return absl::AlreadyExistsError(absl::StrCat(
          "experiment \"", stored.name, "\" already exists without a token"));
    }
    if (request.label_budget() != 0 &&
        request.label_budget() != stored.label_budget) {
      return absl::AlreadyExistsError(absl::StrCat(
          "experiment \"", stored.name, "\" already exists with label_budget ",
          stored.label_budget, ", not ", request.label_budget()));
    }
  }
  oracle::v1::Experiment response;
  response.set_id(stored.id);
  response.set_name(stored.name);
  response.set_label_budget(stored.label_budget);
  response.set_created(created);
  return response;
}

absl::StatusOr<oracle::v1::QueryLabelsResponse> LabelOracle::QueryLabels(
    const oracle::v1::QueryLabelsRequest& request, const Caller& caller) {
  return AwaitDone<oracle::v1::QueryLabelsResponse>(
      [&](QueryLabelsDone done) {
        QueryLabelsAsync(request, caller, std::move(done));
      });
}

void LabelOracle::QueryLabelsAsync(
    const oracle::v1::QueryLabelsRequest& request, const Caller& caller,
    QueryLabelsDone done) {
  const Role role = RoleOf(caller);
  absl::StatusOr<ExperimentRecord> experiment =
      FindExperiment(*store_, request.experiment());
  if (!experiment.ok()) {
    std::move(done)(std::move(experiment).status());
    return;
  }
  RevealRequest reveal;
  reveal.experiment = experiment->name;
  reveal.client = request.client();
  reveal.strategy = request.strategy();
  reveal.round = request.round();
  reveal.time_unix_micros = NowMicros();
  reveal.role = std::string(RoleName(role));
  reveal.peer = caller.peer;

  absl::Status invalid = Authorize(*experiment, role, caller.token);
  if (invalid.ok()) {
    invalid = ValidateIds(request.ids(), options_.max_batch, train_count_);
  }
  if (!invalid.ok()) {
    AuditRecord row;
    row.time_unix_micros = reveal.time_unix_micros;
    row.experiment = std::move(reveal.experiment);
    row.client = std::move(reveal.client);
    row.strategy = std::move(reveal.strategy);
    row.round = reveal.round;
    row.kind = kKindQuery;
    const int64_t asked = request.ids_size();
    const int64_t kept = std::min(asked, kMaxDeniedIdsKept);
    row.ids_asked.assign(request.ids().begin(), request.ids().begin() + kept);
    if (kept < asked) {
      row.detail = absl::StrCat("ids_asked truncated: ", asked,
                                " ids, first ", kept, " kept");
    }
    row.role = std::move(reveal.role);
    row.peer = std::move(reveal.peer);
    DenyAsync(std::move(invalid), std::move(row),
              [done = std::move(done)](absl::Status denial) mutable {
                std::move(done)(std::move(denial));
              });
    return;
  }

  reveal.ids.assign(request.ids().begin(), request.ids().end());
  store_->RevealAsync(reveal, [done = std::move(done)](
                                  absl::StatusOr<RevealResult> result) mutable {
    if (!result.ok()) {
      std::move(done)(std::move(result).status());
      return;
    }
    if (!result->granted) {
      std::move(done)(absl::ResourceExhaustedError(
          absl::StrCat("requested ", result->requested_new,
                       " new labels but only ", result->remaining, " remain")));
      return;
    }
    oracle::v1::QueryLabelsResponse response;
    response.mutable_labels()->Add(result->labels.begin(),
                                   result->labels.end());
    response.set_newly_revealed(
        static_cast<int64_t>(result->newly_revealed.size()));
    response.set_remaining(result->remaining);
    response.set_audit_sequence(result->audit_sequence);
    std::move(done)(std::move(response));
  });
}

absl::StatusOr<oracle::v1::BudgetStatus> LabelOracle::GetBudget(
    const oracle::v1::GetBudgetRequest& request, const Caller& caller) {
  ASSIGN_OR_RETURN(ExperimentRecord experiment,
                   FindExperiment(*store_, request.experiment()));
  RETURN_IF_ERROR(Authorize(experiment, RoleOf(caller), caller.token));
  ASSIGN_OR_RETURN(ExperimentUsage usage, store_->GetUsage(experiment.name));
  oracle::v1::BudgetStatus response;
  response.set_experiment(experiment.name);
  response.set_label_budget(experiment.label_budget);
  response.set_spent(usage.spent);
  response.set_remaining(experiment.label_budget - usage.spent);
  response.set_requests_granted(usage.requests_granted);
  response.set_requests_denied(usage.requests_denied);
  response.set_evaluations(usage.evaluations);
  response.set_evaluation_cap(experiment.evaluation_cap);
  return response;
}

absl::StatusOr<oracle::v1::EvaluateResponse> LabelOracle::Evaluate(
    const oracle::v1::EvaluateRequest& request, const Caller& caller) {
  return AwaitDone<oracle::v1::EvaluateResponse>([&](EvaluateDone done) {
    EvaluateAsync(request, caller, std::move(done));
  });
}

void LabelOracle::EvaluateAsync(const oracle::v1::EvaluateRequest& request,
                                const Caller& caller, EvaluateDone done) {
  absl::StatusOr<ExperimentRecord> experiment =
      FindExperiment(*store_, request.experiment());
  if (!experiment.ok()) {
    std::move(done)(std::move(experiment).status());
    return;
  }
  const int64_t now = NowMicros();
  const Role role = RoleOf(caller);

  absl::Status invalid = Authorize(*experiment, role, caller.token);
  if (invalid.ok() && request.predictions_size() != test_count()) {
    invalid =
        absl::InvalidArgumentError(absl::StrCat("expected ", test_count(),
                                                " predictions (one per test "
                                                "image), got ",
                                                request.predictions_size()));
  }
  for (int i = 0; invalid.ok() && i < request.predictions_size(); ++i) {
    const int32_t predicted = request.predictions(i);
    if (predicted < 0 || predicted >= common::kNumClasses) {
      invalid = absl::InvalidArgumentError(
          absl::StrCat("prediction ", predicted, " at index ", i,
                       " is not in [0, ", common::kNumClasses, ")"));
    }
  }
  if (!invalid.ok()) {
    AuditRecord row;
    row.time_unix_micros = now;
    row.experiment = experiment->name;
    row.client = request.client();
    row.kind = kKindEvaluate;
    row.role = std::string(RoleName(role));
    row.peer = caller.peer;
    DenyAsync(std::move(invalid), std::move(row),
              [done = std::move(done)](absl::Status denial) mutable {
                std::move(done)(std::move(denial));
              });
    return;
  }

  constexpr int kClasses = common::kNumClasses;
  std::vector<int64_t> confusion(kClasses * kClasses, 0);
  int64_t correct = 0;
  for (int i = 0; i < request.predictions_size(); ++i) {
    const int truth = test_labels_[i];
    const int predicted = request.predictions(i);
    ++confusion[truth * kClasses + predicted];
    if (truth == predicted) ++correct;
  }
  const double accuracy =
      test_count() > 0 ? static_cast<double>(correct) / test_count() : 0.0;
  // Per-class results only when every class is predicted often: a class
  // predicted for a single image would reveal that image's label.
  int rarest = 0;
  std::vector<int64_t> predicted_count(kClasses, 0);
  for (int predicted = 0; predicted < kClasses; ++predicted) {
    for (int truth = 0; truth < kClasses; ++truth) {
      predicted_count[predicted] += confusion[truth * kClasses + predicted];
    }
    if (predicted_count[predicted] < predicted_count[rarest]) {
      rarest = predicted;
    }
  }
  const int64_t min_predictions = options_.evaluate_min_predictions_per_class;
  const bool per_class = predicted_count[rarest] >= min_predictions;

  EvaluationRequest evaluation;
  evaluation.experiment = experiment->name;
  evaluation.client = request.client();
  evaluation.time_unix_micros = now;
  evaluation.role = std::string(RoleName(role));
  evaluation.peer = caller.peer;
  evaluation.max_total = options_.max_evaluations_total;
  evaluation.max_per_peer = options_.max_evaluations_per_client;
  evaluation.detail = absl::StrFormat("accuracy=%.6f correct=%d/%d", accuracy,
                                      correct, test_count());
  if (!per_class) {
    absl::StrAppend(&evaluation.detail,
                    " (per-class results withheld: class ", rarest,
                    " predicted for ", predicted_count[rarest], " < ",
                    min_predictions, " test images)");
  }
  if (!request.note().empty()) {
    absl::StrAppend(&evaluation.detail, " note=", request.note());
  }

  // Everything but evaluations_left, which the store decides.
  oracle::v1::EvaluateResponse response;
  response.set_accuracy(accuracy);
  response.set_num_classes(kClasses);
  if (per_class) {
    for (int truth = 0; truth < kClasses; ++truth) {
      int64_t total = 0;
      for (int predicted = 0; predicted < kClasses; ++predicted) {
        total += confusion[truth * kClasses + predicted];
      }
      response.add_per_class_accuracy(
          total > 0
              ? static_cast<double>(confusion[truth * kClasses + truth]) / total
              : 0.0);
    }
    response.mutable_confusion()->Add(confusion.begin(), confusion.end());
  }

  store_->RecordEvaluationAsync(
      evaluation, [name = experiment->name, response = std::move(response),
                   done = std::move(done)](
                      absl::StatusOr<EvaluationResult> recorded) mutable {
        if (!recorded.ok()) {
          std::move(done)(std::move(recorded).status());
          return;
        }
        if (!recorded->allowed) {
          if (recorded->evaluations >= recorded->evaluation_cap) {
            std::move(done)(absl::ResourceExhaustedError(
                absl::StrCat("experiment \"", name, "\" has used all ",
                             recorded->evaluation_cap, " evaluations")));
            return;
          }
          std::move(done)(absl::ResourceExhaustedError(recorded->denial));
          return;
        }
        response.set_evaluations_left(recorded->evaluation_cap -
                                      recorded->evaluations);
        std::move(done)(std::move(response));
      });
}

absl::StatusOr<oracle::v1::ListQueriesResponse> LabelOracle::ListQueries(
    const oracle::v1::ListQueriesRequest& request, const Caller& caller) {
  const Role role = RoleOf(caller);
  if (!request.experiment().empty()) {
    ASSIGN_OR_RETURN(ExperimentRecord experiment,
                     store_->GetExperiment(request.experiment()));
    RETURN_IF_ERROR(Authorize(experiment, role, caller.token));
  }
  if (request.page_size() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "page_size must not be negative, got ", request.page_size()));
  }
  if (request.after_sequence() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "after_sequence must not be negative, got ", request.after_sequence()));
  }
  const int32_t page_size = request.page_size() == 0
                                ? kDefaultPageSize
                                : std::min(request.page_size(), kMaxPageSize);
  const int64_t wanted = int64_t{page_size} + 1;
  std::vector<AuditRecord> rows;
  if (!request.experiment().empty() || role == Role::kAdmin) {
    ASSIGN_OR_RETURN(rows, store_->ListAudit(request.experiment(),
                                             request.after_sequence(), wanted));
  } else {
    // Every experiment the caller may read; rows of the others (and of names
    // that are no experiment) are skipped.
    ASSIGN_OR_RETURN(std::vector<ExperimentRecord> experiments,
                     store_->ListExperiments());
    std::set<std::string> readable;
    for (const ExperimentRecord& experiment : experiments) {
      if (Authorize(experiment, role, caller.token).ok()) {
        readable.insert(experiment.name);
      }
    }
    if (readable.size() == 1) {
      ASSIGN_OR_RETURN(rows, store_->ListAudit(*readable.begin(),
                                               request.after_sequence(),
                                               wanted));
    }
    int64_t after = request.after_sequence();
    while (readable.size() > 1 && static_cast<int64_t>(rows.size()) < wanted) {
      ASSIGN_OR_RETURN(std::vector<AuditRecord> page,
                       store_->ListAudit("", after, wanted));
      if (page.empty()) break;
      after = page.back().sequence;
      for (AuditRecord& row : page) {
        if (readable.count(row.experiment) == 0) continue;
        rows.push_back(std::move(row));
        if (static_cast<int64_t>(rows.size()) == wanted) break;
      }
    }
  }
  oracle::v1::ListQueriesResponse response;
  const bool more = static_cast<int32_t>(rows.size()) > page_size;
  if (more) rows.resize(page_size);
  for (const AuditRecord& row : rows) *response.add_rows() = ToProto(row);
  response.set_next_after_sequence(more ? rows.back().sequence : 0);
  return response;
}

oracle::v1::AuditRow ToProto(const AuditRecord& row) {
  oracle::v1::AuditRow proto;
  proto.set_sequence(row.sequence);
  proto.set_time_unix_micros(row.time_unix_micros);
  proto.set_experiment(row.experiment);
  proto.set_client(row.client);
  proto.set_strategy(row.strategy);
  proto.set_round(row.round);
  proto.set_kind(row.kind);
  proto.mutable_ids_asked()->Add(row.ids_asked.begin(), row.ids_asked.end());
  proto.mutable_ids_revealed()->Add(row.ids_revealed.begin(),
                                    row.ids_revealed.end());
  switch (row.outcome) {
    case Outcome::kGranted:
      proto.set_outcome(oracle::v1::GRANTED);
      break;
    case Outcome::kDeniedBudget:
      proto.set_outcome(oracle::v1::DENIED_BUDGET);
      break;
    case Outcome::kDeniedInvalid:
      proto.set_outcome(oracle::v1::DENIED_INVALID);
      break;
    case Outcome::kEvaluated:
      proto.set_outcome(oracle::v1::EVALUATED);
      break;
    case Outcome::kDeniedEvaluationCap:
      proto.set_outcome(oracle::v1::DENIED_EVALUATION_CAP);
      break;
  }
  proto.set_detail(row.detail);
  proto.set_prev_hash(row.prev_hash);
  proto.set_hash(row.hash);
  proto.set_role(row.role);
  proto.set_peer(row.peer);
  return proto;
}

}  // namespace oracle_server
