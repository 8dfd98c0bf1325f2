#include "oracle_server/store_ledger.h"

#include <algorithm>
#include <limits>
#include <unordered_map>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "oracle_server/await_done.h"
#include "oracle_server/audit_chain.h"

namespace oracle_server {
namespace {

// Whether an audit row of `kind` and `outcome_name` counts as an evaluation.
bool IsEvaluation(absl::string_view kind, absl::string_view outcome_name) {
  return kind == kKindEvaluate &&
         outcome_name == OutcomeName(Outcome::kEvaluated);
}

// The terms a query row is decided under: the budget, and the labels spent
// after the row.
LedgerTerms QueryTerms(int64_t budget, int64_t spent) {
  LedgerTerms terms;
  terms.budget = budget;
  terms.spent = spent;
  return terms;
}

// Bitsets of sample ids, 64 per word.
size_t BitsetWords(int64_t count) {
  return (static_cast<size_t>(count) + 63) / 64;
}
bool TestBit(const std::vector<uint64_t>& bits, int64_t id) {
  return (bits[static_cast<size_t>(id) >> 6] >> (id & 63)) & 1;
}
void SetBit(std::vector<uint64_t>& bits, int64_t id) {
  bits[static_cast<size_t>(id) >> 6] |= uint64_t{1} << (id & 63);
}
void ClearBit(std::vector<uint64_t>& bits, int64_t id) {
  bits[static_cast<size_t>(id) >> 6] &= ~(uint64_t{1} << (id & 63));
}

absl::Status NoSuchExperiment(absl::string_view name) {
  return absl::NotFoundError(
      absl::StrCat("no experiment named \"", name, "\""));
}

}  // namespace

absl::Status CheckTrainIds(const std::vector<int64_t>& ids,
                           int64_t train_count) {
  for (int64_t id : ids) {
    if (id < 0 || id >= train_count) {
      return absl::InvalidArgumentError(
          absl::StrCat("train id ", id, " is not in [0, ", train_count, ")"));
    }
  }
  return absl::OkStatus();
}

void AddRevealedLabels(const std::vector<uint8_t>& train_labels,
                       const std::vector<int64_t>& ids, RevealResult* result) {
  if (!result->granted) return;
  result->labels.reserve(ids.size());
  for (int64_t id : ids) result->labels.push_back(train_labels[id]);
}

absl::Status CheckAuditRowRevealsNothing(const AuditRecord& row) {
  if (!row.ids_revealed.empty() || row.outcome == Outcome::kGranted) {
    return absl::InvalidArgumentError(
        "AppendAudit is for rows that reveal nothing; use Reveal");
  }
  return absl::OkStatus();
}

struct StoreLedger::ExperimentState {
  ExperimentRecord record;
  int64_t spent = 0;               // committed revealed ids
  std::vector<uint64_t> revealed;  // committed revealed ids, by sample id
  std::vector<uint64_t> pending;   // ids granted by the group being committed
};

struct StoreLedger::AuditCounters {
  int64_t requests_granted = 0;
  int64_t requests_denied = 0;
  int64_t evaluations = 0;

  // Counts `n` rows of `kind` with outcome `outcome_name`.
  void Count(absl::string_view kind, absl::string_view outcome_name,
             int64_t n) {
    if (kind == kKindQuery) {
      if (outcome_name == OutcomeName(Outcome::kGranted)) {
        requests_granted += n;
      } else if (absl::StartsWith(outcome_name, "DENIED")) {
        requests_denied += n;
      }
    } else if (IsEvaluation(kind, outcome_name)) {
      evaluations += n;
    }
  }
  void Add(const AuditCounters& other) {
    requests_granted += other.requests_granted;
    requests_denied += other.requests_denied;
    evaluations += other.evaluations;
  }
};

// One queued Reveal, RecordEvaluation or AppendAudit; exactly one of the
// requests is set. Owned by the queue; `complete` runs once after its
// group's commit, outside the ledger's lock.
struct StoreLedger::Write {
  std::optional<RevealRequest> reveal;
  std::optional<EvaluationRequest> evaluation;
  std::optional<AuditRecord> audit;

  absl::Status status;  // the write's own error, or its group's
  RevealResult reveal_result;
  EvaluationResult evaluation_result;
  int64_t audit_sequence = 0;  // for `audit`
  absl::AnyInvocable<void(Write&) &&> complete;
};

// What a group will write, decided before any of it is written.
struct StoreLedger::GroupPlan {
  std::string prev_hash;  // hash of the row before the first
  GroupWrite write;       // rows in sequence order, hashed once decided
  // Ids marked pending by granted reveals.
  std::vector<std::pair<ExperimentState*, int64_t>> pending;
  std::unordered_map<ExperimentState*, int64_t> spent_delta;
  std::map<std::string, AuditCounters> counter_delta;
  // EVALUATED rows by peer, and in total.
  std::map<std::string, int64_t> peer_evaluations_delta;
  int64_t evaluations_delta = 0;

  // Counts `row` in the evaluation deltas if it is an evaluation.
  void CountEvaluation(const AuditRecord& row) {
    if (!IsEvaluation(row.kind, OutcomeName(row.outcome))) return;
    ++peer_evaluations_delta[row.peer];
    ++evaluations_delta;
  }
};

StoreLedger::StoreLedger(const LedgerOptions& options, LedgerBackend* backend)
    : options_(options), backend_(backend) {
  stamp_.head_hash = kGenesisHash;
  committer_ = std::thread([this] { CommitLoop(); });
}

StoreLedger::~StoreLedger() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  committer_.join();
}

void StoreLedger::Reset(const LedgerSnapshot& snapshot) {
  absl::MutexLock lock(&mu_);
  ResetLocked(snapshot);
}

void StoreLedger::ResetLocked(const LedgerSnapshot& snapshot) {
  std::map<std::string, ExperimentState> experiments;
  std::map<std::string, AuditCounters> counters;
  std::map<std::string, int64_t> evaluations_by_peer;
  int64_t evaluations_total = 0;
  const size_t words = BitsetWords(options_.train_count);
  std::unordered_map<int64_t, ExperimentState*> by_id;
  for (const ExperimentRecord& record : snapshot.experiments) {
    ExperimentState& state = experiments[record.name];
    state.record = record;
    state.revealed.assign(words, 0);
    state.pending.assign(words, 0);
    by_id[record.id] = &state;
  }
  for (const auto& [experiment_id, id] : snapshot.revealed) {
    auto it = by_id.find(experiment_id);
    if (it == by_id.end()) continue;
    ++it->second->spent;
    if (id >= 0 && id < options_.train_count) SetBit(it->second->revealed, id);
  }
  for (const LedgerSnapshot::AuditCount& count : snapshot.audit_counts) {
    counters[count.experiment].Count(count.kind, count.outcome, count.count);
    if (IsEvaluation(count.kind, count.outcome)) {
      evaluations_by_peer[count.peer] += count.count;
      evaluations_total += count.count;
    }
  }
  experiments_ = std::move(experiments);
  counters_ = std::move(counters);
  evaluations_by_peer_ = std::move(evaluations_by_peer);
  evaluations_total_ = evaluations_total;
  stamp_ = snapshot.stamp;
  reload_requested_ = false;
}

void StoreLedger::ReloadAtNextWrite() {
  absl::MutexLock lock(&mu_);
  reload_requested_ = true;
}

void StoreLedger::AddExperiment(const ExperimentRecord& experiment) {
  absl::MutexLock lock(&mu_);
  // A known experiment's state may be in the plan of a group in flight.
  auto [it, added] = experiments_.try_emplace(experiment.name);
  if (!added) return;
  ExperimentState& state = it->second;
  state.record = experiment;
  state.spent = 0;
  state.revealed.assign(BitsetWords(options_.train_count), 0);
  state.pending.assign(BitsetWords(options_.train_count), 0);
}

void StoreLedger::AddExperimentIfAt(const ExperimentRecord& experiment,
                                    const LedgerStamp& seen,
                                    const LedgerStamp& after) {
  {
    absl::MutexLock lock(&mu_);
    if (stamp_ != seen) return;
    stamp_ = after;
  }
  AddExperiment(experiment);
}

std::optional<ExperimentRecord> StoreLedger::FindExperiment(
    absl::string_view name) {
  absl::MutexLock lock(&mu_);
  auto it = experiments_.find(std::string(name));
  if (it == experiments_.end()) return std::nullopt;
  return it->second.record;
}

std::vector<ExperimentRecord> StoreLedger::Experiments() {
  absl::MutexLock lock(&mu_);
  std::vector<ExperimentRecord> experiments;
  experiments.reserve(experiments_.size());
  for (const auto& [name, state] : experiments_) {
    experiments.push_back(state.record);
  }
  std::sort(experiments.begin(), experiments.end(),
            [](const ExperimentRecord& a, const ExperimentRecord& b) {
              return a.id < b.id;
            });
  return experiments;
}

absl::StatusOr<ExperimentUsage> StoreLedger::Usage(absl::string_view name) {
  absl::MutexLock lock(&mu_);
  auto it = experiments_.find(std::string(name));
  if (it == experiments_.end()) return NoSuchExperiment(name);
  ExperimentUsage usage;
  usage.spent = it->second.spent;
  auto counters = counters_.find(it->first);
  if (counters != counters_.end()) {
    usage.requests_granted = counters->second.requests_granted;
    usage.requests_denied = counters->second.requests_denied;
    usage.evaluations = counters->second.evaluations;
  }
  return usage;
}

LedgerStamp StoreLedger::Stamp() {
  absl::MutexLock lock(&mu_);
  return stamp_;
}

absl::StatusOr<RevealResult> StoreLedger::Reveal(const RevealRequest& request) {
  return AwaitDone<RevealResult>([&](LabelStore::RevealDone done) {
    RevealAsync(request, std::move(done));
  });
}

absl::StatusOr<EvaluationResult> StoreLedger::RecordEvaluation(
    const EvaluationRequest& request) {
  return AwaitDone<EvaluationResult>([&](LabelStore::EvaluationDone done) {
    RecordEvaluationAsync(request, std::move(done));
  });
}

absl::StatusOr<int64_t> StoreLedger::AppendAudit(const AuditRecord& row) {
  return AwaitDone<int64_t>([&](LabelStore::AuditDone done) {
    AppendAuditAsync(row, std::move(done));
  });
}

void StoreLedger::RevealAsync(const RevealRequest& request,
                              LabelStore::RevealDone done) {
  auto write = std::make_unique<Write>();
  write->reveal = request;
  write->complete = [done = std::move(done)](Write& write) mutable {
    if (!write.status.ok()) {
      std::move(done)(write.status);
    } else {
      std::move(done)(std::move(write.reveal_result));
    }
  };
  SubmitWrite(std::move(write));
}

void StoreLedger::RecordEvaluationAsync(const EvaluationRequest& request,
                                        LabelStore::EvaluationDone done) {
  auto write = std::make_unique<Write>();
  write->evaluation = request;
  write->complete = [done = std::move(done)](Write& write) mutable {
    if (!write.status.ok()) {
      std::move(done)(write.status);
    } else {
      std::move(done)(write.evaluation_result);
    }
  };
  SubmitWrite(std::move(write));
}

void StoreLedger::AppendAuditAsync(const AuditRecord& row,
                                   LabelStore::AuditDone done) {
  auto write = std::make_unique<Write>();
  write->audit = row;
  write->complete = [done = std::move(done)](Write& write) mutable {
    if (!write.status.ok()) {
      std::move(done)(write.status);
    } else {
      std::move(done)(write.audit_sequence);
    }
  };
  SubmitWrite(std::move(write));
}

bool StoreLedger::AwaitQueuedWritesForTesting(int n, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto queued = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return static_cast<int>(writers_.size()) >= n + 1;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&queued), timeout);
}

void StoreLedger::SubmitWrite(std::unique_ptr<Write> write) {
  absl::MutexLock lock(&mu_);
  writers_.push_back(std::move(write));
}

void StoreLedger::CommitLoop() {
  while (true) {
    std::vector<Write*> group;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !writers_.empty() || stopping_;
      };
      mu_.Await(absl::Condition(&ready));
      if (writers_.empty()) return;
      for (const std::unique_ptr<Write>& queued : writers_) {
        if (static_cast<int>(group.size()) == options_.max_group_size) break;
        group.push_back(queued.get());
      }
    }
    absl::Status status = CommitGroup(group);
    std::vector<std::unique_ptr<Write>> committed;
    committed.reserve(group.size());
    {
      absl::MutexLock lock(&mu_);
      for (size_t i = 0; i < group.size(); ++i) {
        committed.push_back(std::move(writers_.front()));
        writers_.pop_front();
      }
    }
    for (std::unique_ptr<Write>& write : committed) {
      if (!status.ok()) write->status = status;
      std::move(write->complete)(*write);
    }
  }
}

absl::Status StoreLedger::CommitGroup(const std::vector<Write*>& group) {
  GroupPlan plan;
  absl::Status status =
      backend_->InWriteTransaction([&](LedgerTransaction& txn) -> absl::Status {
        ASSIGN_OR_RETURN(LedgerStamp stamp, txn.ReadStamp());
        bool stale = false;
        {
          absl::MutexLock lock(&mu_);
          stale = stamp != stamp_ || reload_requested_;
        }
        // Another connection wrote, or an earlier commit failed in a way
        // that left its outcome unknown, or the store asked for a reload:
        // start again from what is committed.
        if (stale) {
          ASSIGN_OR_RETURN(LedgerSnapshot snapshot, txn.LoadSnapshot());
          absl::MutexLock lock(&mu_);
          ResetLocked(snapshot);
        }
        {
          absl::MutexLock lock(&mu_);
          // Only a tampered database has a head outside [0, max - group];
          // the group's sequences must not overflow.
          if (stamp_.head_sequence < 0 ||
              stamp_.head_sequence > std::numeric_limits<int64_t>::max() -
                                         static_cast<int64_t>(group.size())) {
            return absl::DataLossError(absl::StrCat(
                "audit head sequence ", stamp_.head_sequence,
                " is out of range (the database was altered; see oraclectl "
                "verify)"));
          }
          PlanGroupLocked(group, &plan);
        }
        if (plan.write.rows.empty()) return absl::OkStatus();
        const std::string* prev_hash = &plan.prev_hash;
        for (AuditRecord& row : plan.write.rows) {
          row.prev_hash = *prev_hash;
          row.hash = AuditRowHash(row.prev_hash, row);
          prev_hash = &row.hash;
        }
        return txn.WriteGroup(plan.write);
      });
  absl::MutexLock lock(&mu_);
  FinishGroupLocked(plan, status.ok());
  return status;
}

void StoreLedger::PlanGroupLocked(const std::vector<Write*>& group,
                                  GroupPlan* plan) {
  int64_t sequence = stamp_.head_sequence;
  plan->prev_hash = stamp_.head_hash;
  std::vector<AuditRecord>& rows = plan->write.rows;
  rows.reserve(group.size());
  size_t ids = 0;
  for (const Write* write : group) {
    if (write->reveal.has_value()) ids += write->reveal->ids.size();
  }
  plan->write.revealed.reserve(ids);
  plan->pending.reserve(ids);
  for (Write* write : group) {
    if (write->audit.has_value()) {
      AuditRecord& row = rows.emplace_back(*write->audit);
      row.sequence = ++sequence;
      plan->counter_delta[row.experiment].Count(row.kind,
                                                OutcomeName(row.outcome), 1);
      plan->CountEvaluation(row);
      write->audit_sequence = row.sequence;
      continue;
    }
    const std::string& name = write->reveal.has_value()
                                  ? write->reveal->experiment
                                  : write->evaluation->experiment;
    auto found = experiments_.find(name);
    if (found == experiments_.end()) {
      write->status = NoSuchExperiment(name);
      continue;
    }
    ExperimentState& experiment = found->second;
    AuditCounters& counters = plan->counter_delta[name];

    if (write->evaluation.has_value()) {
      const EvaluationRequest& request = *write->evaluation;
      auto committed = counters_.find(name);
      const int64_t evaluations =
          (committed != counters_.end() ? committed->second.evaluations : 0) +
          counters.evaluations;
      auto by_peer = evaluations_by_peer_.find(request.peer);
      const int64_t peer_evaluations =
          (by_peer != evaluations_by_peer_.end() ? by_peer->second : 0) +
          plan->peer_evaluations_delta[request.peer];
      const int64_t total_evaluations =
          evaluations_total_ + plan->evaluations_delta;
      AuditRecord& row = rows.emplace_back();
      row.sequence = ++sequence;
      row.time_unix_micros = request.time_unix_micros;
      row.experiment = name;
      row.client = request.client;
      row.kind = kKindEvaluate;
      row.role = request.role;
      row.peer = request.peer;
      EvaluationResult& result = write->evaluation_result;
      result.evaluation_cap = experiment.record.evaluation_cap;
      result.evaluations = evaluations;
      if (evaluations >= experiment.record.evaluation_cap) {
        result.denial = absl::StrCat(
            "evaluation cap of ", experiment.record.evaluation_cap, " reached");
      } else if (request.max_total > 0 &&
                 total_evaluations >= request.max_total) {
        result.denial = absl::StrCat("server-wide evaluation cap of ",
                                     request.max_total, " reached");
      } else if (request.max_per_peer > 0 &&
                 peer_evaluations >= request.max_per_peer) {
        result.denial = absl::StrCat("evaluation cap of ", request.max_per_peer,
                                     " per client identity reached for \"",
                                     request.peer, "\"");
      } else {
        result.allowed = true;
        result.evaluations = evaluations + 1;
      }
      row.outcome =
          result.allowed ? Outcome::kEvaluated : Outcome::kDeniedEvaluationCap;
      // The caps and counts this decision was made under go into the
      // chained detail, ahead of the summary or the denial.
      const int64_t counted = result.allowed ? 1 : 0;
      LedgerTerms terms;
      terms.evaluations = result.evaluations;
      terms.evaluation_cap = experiment.record.evaluation_cap;
      if (request.max_total > 0) {
        terms.total = total_evaluations + counted;
        terms.total_cap = request.max_total;
      }
      if (request.max_per_peer > 0) {
        terms.peer_evaluations = peer_evaluations + counted;
        terms.peer_cap = request.max_per_peer;
      }
      row.detail = DetailWithTerms(
          terms, result.allowed ? request.detail : result.denial);
      counters.Count(row.kind, OutcomeName(row.outcome), 1);
      plan->CountEvaluation(row);
      result.audit_sequence = row.sequence;
      continue;
    }

    const RevealRequest& request = *write->reveal;
    int64_t& spent_delta = plan->spent_delta[&experiment];
    const int64_t spent = experiment.spent + spent_delta;
    const int64_t remaining = experiment.record.label_budget - spent;
    // New ids are those neither committed nor granted earlier in the group;
    // marking them pending as they are found also skips repeats.
    std::vector<int64_t> new_ids;
    for (int64_t id : request.ids) {
      if (TestBit(experiment.revealed, id) || TestBit(experiment.pending, id)) {
        continue;
      }
      SetBit(experiment.pending, id);
      new_ids.push_back(id);
    }
    AuditRecord& row = rows.emplace_back();
    row.sequence = ++sequence;
    row.time_unix_micros = request.time_unix_micros;
    row.experiment = name;
    row.client = request.client;
    row.strategy = request.strategy;
    row.round = request.round;
    row.kind = kKindQuery;
    row.ids_asked = request.ids;
    row.role = request.role;
    row.peer = request.peer;
    RevealResult& result = write->reveal_result;
    result.requested_new = static_cast<int64_t>(new_ids.size());
    result.audit_sequence = row.sequence;
    if (result.requested_new > remaining) {
      for (int64_t id : new_ids) ClearBit(experiment.pending, id);
      row.outcome = Outcome::kDeniedBudget;
      result.granted = false;
      result.spent = spent;
      result.remaining = remaining;
      row.detail = DetailWithTerms(
          QueryTerms(experiment.record.label_budget, result.spent),
          absl::StrCat("requested ", new_ids.size(), " new labels but only ",
                       remaining, " remain"));
    } else {
      row.outcome = Outcome::kGranted;
      for (int64_t id : new_ids) {
        plan->pending.emplace_back(&experiment, id);
        plan->write.revealed.push_back(
            {experiment.record.id, id, row.sequence});
      }
      spent_delta += result.requested_new;
      result.granted = true;
      result.spent = spent + result.requested_new;
      result.remaining = remaining - result.requested_new;
      row.ids_revealed = new_ids;
      result.newly_revealed = std::move(new_ids);
      row.detail = DetailWithTerms(
          QueryTerms(experiment.record.label_budget, result.spent), "");
    }
    counters.Count(row.kind, OutcomeName(row.outcome), 1);
  }
}

void StoreLedger::FinishGroupLocked(const GroupPlan& plan, bool committed) {
  for (const auto& [experiment, id] : plan.pending) {
    ClearBit(experiment->pending, id);
    if (committed) SetBit(experiment->revealed, id);
  }
  if (!committed || plan.write.rows.empty()) return;
  for (const auto& [experiment, delta] : plan.spent_delta) {
    experiment->spent += delta;
  }
  for (const auto& [name, delta] : plan.counter_delta) {
    counters_[name].Add(delta);
  }
  for (const auto& [peer, delta] : plan.peer_evaluations_delta) {
    evaluations_by_peer_[peer] += delta;
  }
  evaluations_total_ += plan.evaluations_delta;
  stamp_.head_sequence = plan.write.rows.back().sequence;
  stamp_.head_hash = plan.write.rows.back().hash;
}

absl::StatusOr<RevealResult> LedgerLabelStore::Reveal(
    const RevealRequest& request) {
  RETURN_IF_ERROR(CheckWritable());
  RETURN_IF_ERROR(
      CheckTrainIds(request.ids, static_cast<int64_t>(train_labels().size())));
  ASSIGN_OR_RETURN(RevealResult result, ledger().Reveal(request));
  AddRevealedLabels(train_labels(), request.ids, &result);
  return result;
}

absl::StatusOr<EvaluationResult> LedgerLabelStore::RecordEvaluation(
    const EvaluationRequest& request) {
  RETURN_IF_ERROR(CheckWritable());
  return ledger().RecordEvaluation(request);
}

absl::StatusOr<int64_t> LedgerLabelStore::AppendAudit(
    const AuditRecord& row) {
  RETURN_IF_ERROR(CheckWritable());
  RETURN_IF_ERROR(CheckAuditRowRevealsNothing(row));
  return ledger().AppendAudit(row);
}

void LedgerLabelStore::RevealAsync(const RevealRequest& request,
                                     RevealDone done) {
  absl::Status status = CheckWritable();
  if (status.ok()) {
    status =
        CheckTrainIds(request.ids, static_cast<int64_t>(train_labels().size()));
  }
  if (!status.ok()) {
    std::move(done)(status);
    return;
  }
  ledger().RevealAsync(request,
                       [this, ids = request.ids, done = std::move(done)](
                           absl::StatusOr<RevealResult> result) mutable {
                         if (result.ok())
                           AddRevealedLabels(train_labels(), ids, &*result);
                         std::move(done)(std::move(result));
                       });
}

void LedgerLabelStore::RecordEvaluationAsync(const EvaluationRequest& request,
                                               EvaluationDone done) {
  absl::Status status = CheckWritable();
  if (!status.ok()) {
    std::move(done)(status);
    return;
  }
  ledger().RecordEvaluationAsync(request, std::move(done));
}

void LedgerLabelStore::AppendAuditAsync(const AuditRecord& row,
                                          AuditDone done) {
  absl::Status status = CheckWritable();
  if (status.ok()) status = CheckAuditRowRevealsNothing(row);
  if (!status.ok()) {
    std::move(done)(status);
    return;
  }
  ledger().AppendAuditAsync(row, std::move(done));
}

bool LedgerLabelStore::AwaitQueuedWritesForTesting(int n,
                                                   absl::Duration timeout) {
  return ledger().AwaitQueuedWritesForTesting(n, timeout);
}

}  // namespace oracle_server
