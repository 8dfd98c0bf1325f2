#include "oracle_server/audit_chain.h"

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "oracle_server/sqlite_label_store.h"

namespace oracle_server {
namespace {

void AppendField(absl::string_view name, absl::string_view value,
                 std::string* out) {
  absl::StrAppend(out, name, "=", value.size(), ":", value, ";");
}

// Rows read from the store per ListAudit call while verifying.
constexpr int64_t kVerifyPageSize = 10000;

AuditVerification Bad(int64_t sequence, std::string reason,
                      int64_t rows_verified) {
  AuditVerification result;
  result.ok = false;
  result.bad_sequence = sequence;
  result.reason = std::move(reason);
  result.rows_verified = rows_verified;
  return result;
}

// The keys of LedgerTerms, in the order DetailWithTerms writes them.
struct TermKey {
  absl::string_view name;
  int64_t LedgerTerms::*field;
};
constexpr TermKey kTermKeys[] = {
    {"budget", &LedgerTerms::budget},
    {"spent", &LedgerTerms::spent},
    {"evaluations", &LedgerTerms::evaluations},
    {"evaluation_cap", &LedgerTerms::evaluation_cap},
    {"total", &LedgerTerms::total},
    {"total_cap", &LedgerTerms::total_cap},
    {"peer_evaluations", &LedgerTerms::peer_evaluations},
    {"peer_cap", &LedgerTerms::peer_cap},
};

// Counts over the log from row 1 up to and including the row being checked.
struct LogCounts {
  std::map<std::string, int64_t> spent;      // by experiment
  std::map<std::string, int64_t> evaluated;  // EVALUATED rows by experiment
  std::map<std::string, int64_t> evaluated_by_peer;
  int64_t evaluated_total = 0;
};

int64_t CountOf(const std::map<std::string, int64_t>& counts,
                const std::string& key) {
  auto it = counts.find(key);
  return it == counts.end() ? 0 : it->second;
}

// Why the terms at the start of `row`'s detail disagree with the log counted
// up to it or with `experiment` as the table holds it (nullptr: unknown);
// empty if they agree, or if the row has no terms or is not a row the store
// decides.
std::string TermsMismatch(const AuditRecord& row,
                          const ExperimentRecord* experiment,
                          const LogCounts& counts) {
  const bool query =
      row.kind == kKindQuery && (row.outcome == Outcome::kGranted ||
                                 row.outcome == Outcome::kDeniedBudget);
  const bool evaluation = row.kind == kKindEvaluate &&
                          (row.outcome == Outcome::kEvaluated ||
                           row.outcome == Outcome::kDeniedEvaluationCap);
  if (!query && !evaluation) return "";
  const std::optional<LedgerTerms> terms = ParseDetailTerms(row.detail);
  if (!terms.has_value()) return "";
  const std::string& name = row.experiment;
  if (experiment == nullptr) {
    return absl::StrCat("records the terms of unknown experiment \"", name,
                        "\"");
  }
  if (query) {
    if (terms->budget < 0 || terms->spent < 0) {
      return "a query row's terms lack budget or spent";
    }
    if (terms->budget != experiment->label_budget) {
      return absl::StrCat("was decided under a budget of ", terms->budget,
                          " but the experiments table now gives \"", name,
                          "\" ", experiment->label_budget,
                          " (the table was changed)");
    }
    const int64_t spent = CountOf(counts.spent, name);
    if (terms->spent != spent) {
      return absl::StrCat("records ", terms->spent, " labels spent by \"", name,
                          "\" but the log up to it reveals ", spent);
    }
    return "";
  }
  if (terms->evaluations < 0 || terms->evaluation_cap < 0 ||
      (terms->total < 0) != (terms->total_cap < 0) ||
      (terms->peer_evaluations < 0) != (terms->peer_cap < 0)) {
    return "an evaluation row's terms are incomplete";
  }
  if (terms->evaluation_cap != experiment->evaluation_cap) {
    return absl::StrCat("was decided under an evaluation cap of ",
                        terms->evaluation_cap,
                        " but the experiments table now gives \"", name, "\" ",
                        experiment->evaluation_cap, " (the table was changed)");
  }
  const int64_t evaluated = CountOf(counts.evaluated, name);
  if (terms->evaluations != evaluated) {
    return absl::StrCat("records ", terms->evaluations, " evaluations of \"",
                        name, "\" but the log up to it holds ", evaluated);
  }
  if (terms->total >= 0 && terms->total != counts.evaluated_total) {
    return absl::StrCat("records ", terms->total,
                        " evaluations in all but the log up to it holds ",
                        counts.evaluated_total);
  }
  const int64_t by_peer = CountOf(counts.evaluated_by_peer, row.peer);
  if (terms->peer_evaluations >= 0 && terms->peer_evaluations != by_peer) {
    return absl::StrCat("records ", terms->peer_evaluations,
                        " evaluations by peer \"", row.peer,
                        "\" but the log up to it holds ", by_peer);
  }
  const bool over =
      terms->evaluations > terms->evaluation_cap ||
      (terms->total_cap >= 0 && terms->total > terms->total_cap) ||
      (terms->peer_cap >= 0 && terms->peer_evaluations > terms->peer_cap);
  if (row.outcome == Outcome::kEvaluated && over) {
    return absl::StrCat("an evaluation beyond a cap it records (\"",
                        row.detail.substr(0, row.detail.find("; ")), "\")");
  }
  const bool reached =
      terms->evaluations >= terms->evaluation_cap ||
      (terms->total_cap >= 0 && terms->total >= terms->total_cap) ||
      (terms->peer_cap >= 0 && terms->peer_evaluations >= terms->peer_cap);
  if (row.outcome == Outcome::kDeniedEvaluationCap && !reached) {
    return absl::StrCat(
        "denied an evaluation though no cap it records was reached (\"",
        row.detail.substr(0, row.detail.find("; ")), "\")");
  }
  return "";
}

}  // namespace

std::string DetailWithTerms(const LedgerTerms& terms, absl::string_view rest) {
  std::string out;
  for (const TermKey& key : kTermKeys) {
    const int64_t value = terms.*key.field;
    if (value < 0) continue;
    absl::StrAppend(&out, out.empty() ? "" : " ", key.name, "=", value);
  }
  if (!rest.empty()) absl::StrAppend(&out, out.empty() ? "" : "; ", rest);
  return out;
}

std::optional<LedgerTerms> ParseDetailTerms(absl::string_view detail) {
  const absl::string_view head = detail.substr(0, detail.find("; "));
  if (head.empty()) return std::nullopt;
  LedgerTerms terms;
  for (absl::string_view pair : absl::StrSplit(head, ' ')) {
    const size_t equals = pair.find('=');
    if (equals == absl::string_view::npos) return std::nullopt;
    const absl::string_view name = pair.substr(0, equals);
    const absl::string_view value = pair.substr(equals + 1);
    const TermKey* key = nullptr;
    for (const TermKey& candidate : kTermKeys) {
      if (candidate.name == name) key = &candidate;
    }
    int64_t number = 0;
    if (key == nullptr || terms.*key->field >= 0 || value.empty() ||
        value.find_first_not_of("0123456789") != absl::string_view::npos ||
        !absl::SimpleAtoi(value, &number)) {
      return std::nullopt;
    }
    terms.*key->field = number;
  }
  return terms;
}

std::string FormatAuditIds(const std::vector<int64_t>& ids) {
  return absl::StrJoin(ids, ",");
}

absl::StatusOr<std::vector<int64_t>> ParseAuditIds(absl::string_view text,
                                                   int64_t sequence) {
  std::vector<int64_t> ids;
  if (text.empty()) return ids;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    int64_t id = 0;
    if (!absl::SimpleAtoi(part, &id)) {
      return absl::DataLossError(absl::StrCat(
          "audit row ", sequence, ": malformed id list \"", text, "\""));
    }
    ids.push_back(id);
  }
  return ids;
}

std::string CanonicalAuditRow(const AuditRecord& row) {
  std::string out;
  AppendField("sequence", absl::StrCat(row.sequence), &out);
  AppendField("time_unix_micros", absl::StrCat(row.time_unix_micros), &out);
  AppendField("experiment", row.experiment, &out);
  AppendField("client", row.client, &out);
  AppendField("strategy", row.strategy, &out);
  AppendField("round", absl::StrCat(row.round), &out);
  AppendField("kind", row.kind, &out);
  AppendField("ids_asked", FormatAuditIds(row.ids_asked), &out);
  AppendField("ids_revealed", FormatAuditIds(row.ids_revealed), &out);
  AppendField("outcome", OutcomeName(row.outcome), &out);
  AppendField("detail", row.detail, &out);
  // Left out when empty, so rows written before these fields existed keep
  // their hashes.
  if (!row.role.empty()) AppendField("role", row.role, &out);
  if (!row.peer.empty()) AppendField("peer", row.peer, &out);
  return out;
}

std::string AuditRowHash(absl::string_view prev_hash, const AuditRecord& row) {
  return common::Sha256Hex(absl::StrCat(prev_hash, CanonicalAuditRow(row)));
}

std::string FormatAuditHead(const AuditHead& head) {
  return absl::StrCat(head.sequence, " ", head.hash);
}

absl::StatusOr<AuditHead> ParseAuditHead(absl::string_view text) {
  const std::vector<absl::string_view> parts =
      absl::StrSplit(text, absl::ByAnyChar(": "));
  AuditHead head;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &head.sequence) ||
      head.sequence < 0 || parts[1].size() != 64 ||
      parts[1].find_first_not_of("0123456789abcdef") !=
          absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", text,
        "\" is not an audit head SEQ:HASH (a row number and 64 lower-case "
        "hex digits, as `oraclectl head` prints them)"));
  }
  head.hash = std::string(parts[1]);
  if (head.sequence == 0 && head.hash != kGenesisHash) {
    return absl::InvalidArgumentError(
        absl::StrCat("audit head \"", text,
                     "\": row 0 (the empty log) has hash ", kGenesisHash));
  }
  return head;
}

absl::StatusOr<AuditVerification> VerifyAuditLog(LabelStore& store) {
  return VerifyAuditLog(store, VerifyOptions());
}

absl::StatusOr<AuditVerification> VerifyAuditLog(LabelStore& store,
                                                 const VerifyOptions& options) {
  const std::optional<AuditHead>& saved = options.expected_head;
  ASSIGN_OR_RETURN(std::vector<ExperimentRecord> experiments,
                   store.ListExperiments());
  std::map<std::string, const ExperimentRecord*> by_name;
  std::map<int64_t, const ExperimentRecord*> by_id;
  for (const ExperimentRecord& experiment : experiments) {
    by_name[experiment.name] = &experiment;
    by_id[experiment.id] = &experiment;
  }

  // (experiment name, sample id) -> the GRANTED row that revealed it.
  std::map<std::pair<std::string, int64_t>, int64_t> revealed_by_row;
  LogCounts counts;
  int64_t rows = 0;
  std::string prev_hash = kGenesisHash;
  while (true) {
    ASSIGN_OR_RETURN(std::vector<AuditRecord> page,
                     store.ListAudit("", rows, kVerifyPageSize));
    if (page.empty()) break;
    for (const AuditRecord& row : page) {
      if (row.sequence != rows + 1) {
        return Bad(row.sequence,
                   absl::StrCat("sequence jumps from ", rows, " to ",
                                row.sequence, " (rows missing)"),
                   rows);
      }
      if (row.prev_hash != prev_hash) {
        return Bad(row.sequence,
                   absl::StrCat("prev_hash ", row.prev_hash,
                                " does not match the hash of row ", rows, " (",
                                prev_hash, ")"),
                   rows);
      }
      const std::string hash = AuditRowHash(row.prev_hash, row);
      if (row.hash != hash) {
        return Bad(row.sequence,
                   absl::StrCat("hash ", row.hash,
                                " does not match the row's "
                                "content (recomputed ",
                                hash, ")"),
                   rows);
      }
      if (saved.has_value() && row.sequence == saved->sequence &&
          row.hash != saved->hash) {
        return Bad(row.sequence,
                   absl::StrCat("hash ", row.hash, " is not the saved head's (",
                                saved->hash,
                                "); the log was rewritten after that head was "
                                "saved"),
                   rows);
      }
      if (row.outcome != Outcome::kGranted && !row.ids_revealed.empty()) {
        return Bad(row.sequence,
                   absl::StrCat("a ", OutcomeName(row.outcome), " row reveals ",
                                row.ids_revealed.size(), " ids"),
                   rows);
      }
      if (row.outcome == Outcome::kGranted) {
        auto experiment = by_name.find(row.experiment);
        if (experiment == by_name.end()) {
          return Bad(row.sequence,
                     absl::StrCat("GRANTED row for unknown experiment \"",
                                  row.experiment, "\""),
                     rows);
        }
        const std::set<int64_t> asked(row.ids_asked.begin(),
                                      row.ids_asked.end());
        for (int64_t id : row.ids_revealed) {
          if (asked.count(id) == 0) {
            return Bad(row.sequence,
                       absl::StrCat("reveals id ", id, " that was not asked"),
                       rows);
          }
          auto [it, inserted] = revealed_by_row.emplace(
              std::make_pair(row.experiment, id), row.sequence);
          if (!inserted) {
            return Bad(row.sequence,
                       absl::StrCat("reveals id ", id, " to \"", row.experiment,
                                    "\" again (already revealed by row ",
                                    it->second, ")"),
                       rows);
          }
        }
        // The row returned a label for every id it asked: each must have been
        // paid for, by this row or an earlier one of the same experiment.
        for (int64_t id : row.ids_asked) {
          if (revealed_by_row.count(std::make_pair(row.experiment, id)) == 0) {
            return Bad(row.sequence,
                       absl::StrCat("returns id ", id, " to \"", row.experiment,
                                    "\" but no row up to it revealed (paid "
                                    "for) that id"),
                       rows);
          }
        }
        int64_t& experiment_spent = counts.spent[row.experiment];
        experiment_spent += static_cast<int64_t>(row.ids_revealed.size());
        if (experiment_spent > experiment->second->label_budget) {
          return Bad(row.sequence,
                     absl::StrCat("\"", row.experiment, "\" has now seen ",
                                  experiment_spent,
                                  " labels, over its budget "
                                  "of ",
                                  experiment->second->label_budget),
                     rows);
        }
      }
      if (row.kind == kKindEvaluate && row.outcome == Outcome::kEvaluated) {
        ++counts.evaluated[row.experiment];
        ++counts.evaluated_by_peer[row.peer];
        ++counts.evaluated_total;
      }
      auto experiment = by_name.find(row.experiment);
      const std::string mismatch = TermsMismatch(
          row, experiment == by_name.end() ? nullptr : experiment->second,
          counts);
      if (!mismatch.empty()) return Bad(row.sequence, mismatch, rows);
      prev_hash = row.hash;
      ++rows;
    }
  }

  if (saved.has_value() && rows < saved->sequence) {
    return Bad(
        rows + 1,
        absl::StrCat("the log ends at row ", rows,
                     " but the saved head is row ", saved->sequence, " (",
                     saved->hash, "); rows were removed from the end"),
        rows);
  }

  ASSIGN_OR_RETURN(auto head, store.GetAuditHead());
  if (head.first != rows || head.second != prev_hash) {
    return Bad(
        rows + 1,
        absl::StrCat("the log ends at row ", rows,
                     " but the store recorded its newest row as ", head.first,
                     " (", head.second, "); rows were removed from the end"),
        rows);
  }

  ASSIGN_OR_RETURN(std::vector<RevealedRecord> revealed, store.ListRevealed());
  std::set<std::pair<std::string, int64_t>> matched;
  for (const RevealedRecord& record : revealed) {
    auto experiment = by_id.find(record.experiment_id);
    if (experiment == by_id.end()) {
      return Bad(record.audit_sequence,
                 absl::StrCat("id ", record.sample_id,
                              " is recorded as revealed to unknown experiment ",
                              record.experiment_id),
                 rows);
    }
    const std::string& name = experiment->second->name;
    auto row = revealed_by_row.find(std::make_pair(name, record.sample_id));
    if (row == revealed_by_row.end() || row->second != record.audit_sequence) {
      return Bad(record.audit_sequence,
                 absl::StrCat("id ", record.sample_id,
                              " is recorded as "
                              "revealed to \"",
                              name, "\" by row ", record.audit_sequence,
                              " but no GRANTED row lists it there"),
                 rows);
    }
    matched.insert(row->first);
  }
  for (const auto& [key, sequence] : revealed_by_row) {
    if (matched.count(key) == 0) {
      return Bad(sequence,
                 absl::StrCat("reveals id ", key.second, " to \"", key.first,
                              "\" but the revealed table does not record it"),
                 rows);
    }
  }

  AuditVerification result;
  result.rows_verified = rows;
  result.head.sequence = rows;
  result.head.hash = prev_hash;
  return result;
}

absl::StatusOr<AuditVerification> VerifyAuditLogFile(
    const std::string& db_path) {
  StoreOptions options;
  options.db_path = db_path;
  options.read_only = true;
  ASSIGN_OR_RETURN(std::unique_ptr<SqliteLabelStore> store,
                   SqliteLabelStore::Open(options));
  return VerifyAuditLog(*store);
}

}  // namespace oracle_server
