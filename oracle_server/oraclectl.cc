#include "oracle_server/oraclectl.h"

#include <grpcpp/client_context.h>

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/grpc_status.h"
#include "common/json_writer.h"
#include "common/status_macros.h"
#include "oracle_server/audit_chain.h"
#include "oracle_server/label_oracle_service.h"

namespace oracle_server {
namespace {

// Audit rows read per ListAudit call.
constexpr int64_t kLogPageSize = 10000;

// Writes `rows` under `header` with columns padded to their widest cell;
// columns flagged in `right` are right-aligned.
void PrintTable(const std::vector<std::string>& header,
                const std::vector<bool>& right,
                const std::vector<std::vector<std::string>>& rows,
                std::ostream& out) {
  std::vector<size_t> width(header.size());
  for (size_t c = 0; c < header.size(); ++c) width[c] = header[c].size();
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size(); ++c) {
      width[c] = std::max(width[c], row[c].size());
    }
  }
  auto print_row = [&](const std::vector<std::string>& cells) {
    std::string line;
    for (size_t c = 0; c < cells.size(); ++c) {
      if (c > 0) line += "  ";
      const std::string padding(width[c] - cells[c].size(), ' ');
      const bool last = c + 1 == cells.size();
      if (right[c]) {
        absl::StrAppend(&line, padding, cells[c]);
      } else {
        absl::StrAppend(&line, cells[c], last ? "" : padding);
      }
    }
    line.erase(line.find_last_not_of(' ') + 1);
    out << line << "\n";
  };
  print_row(header);
  for (const auto& row : rows) print_row(row);
}

std::string CsvField(absl::string_view value) {
  if (value.find_first_of(",\"\r\n") == absl::string_view::npos) {
    return std::string(value);
  }
  std::string quoted = "\"";
  for (char c : value) {
    if (c == '"') quoted += '"';
    quoted += c;
  }
  quoted += '"';
  return quoted;
}


std::string FormatTime(int64_t unix_micros) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ",
                          absl::FromUnixMicros(unix_micros),
                          absl::UTCTimeZone());
}

const std::vector<std::string>& CsvHeader() {
  static const auto* header = new std::vector<std::string>{
      "sequence", "time_unix_micros", "experiment",
      "client",   "strategy",         "round",
      "kind",     "ids_asked",        "ids_revealed",
      "outcome",  "detail",           "prev_hash",
      "hash",     "role",             "peer"};
  return *header;
}

void PrintCsvRow(const AuditRecord& row, std::ostream& out) {
  out << absl::StrJoin(
             {absl::StrCat(row.sequence), absl::StrCat(row.time_unix_micros),
              CsvField(row.experiment), CsvField(row.client),
              CsvField(row.strategy), absl::StrCat(row.round),
              CsvField(row.kind), absl::StrJoin(row.ids_asked, " "),
              absl::StrJoin(row.ids_revealed, " "),
              std::string(OutcomeName(row.outcome)), CsvField(row.detail),
              row.prev_hash, row.hash, CsvField(row.role),
              CsvField(row.peer)},
             ",")
      << "\n";
}

void PrintJsonRow(const AuditRecord& row, std::ostream& out) {
  out << "{\"sequence\":" << row.sequence
      << ",\"time_unix_micros\":" << row.time_unix_micros
      << ",\"experiment\":" << common::JsonQuote(row.experiment)
      << ",\"client\":" << common::JsonQuote(row.client)
      << ",\"strategy\":" << common::JsonQuote(row.strategy)
      << ",\"round\":" << row.round << ",\"kind\":" << common::JsonQuote(row.kind)
      << ",\"ids_asked\":[" << absl::StrJoin(row.ids_asked, ",") << "]"
      << ",\"ids_revealed\":[" << absl::StrJoin(row.ids_revealed, ",") << "]"
      << ",\"outcome\":" << common::JsonQuote(OutcomeName(row.outcome))
      << ",\"detail\":" << common::JsonQuote(row.detail)
      << ",\"prev_hash\":" << common::JsonQuote(row.prev_hash)
      << ",\"hash\":" << common::JsonQuote(row.hash)
      << ",\"role\":" << common::JsonQuote(row.role)
      << ",\"peer\":" << common::JsonQuote(row.peer) << "}\n";
}

}  // namespace

absl::StatusOr<LogFormat> ParseLogFormat(absl::string_view name) {
  if (name == "table") return LogFormat::kTable;
  if (name == "csv") return LogFormat::kCsv;
  if (name == "jsonl") return LogFormat::kJsonl;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown log format \"", name, "\"; use table, csv or jsonl"));
}

absl::Status PrintSummary(LabelStore& store, std::ostream& out) {
  ASSIGN_OR_RETURN(std::vector<ExperimentRecord> experiments,
                   store.ListExperiments());
  std::vector<std::vector<std::string>> rows;
  for (const ExperimentRecord& experiment : experiments) {
    ASSIGN_OR_RETURN(ExperimentUsage usage, store.GetUsage(experiment.name));
    rows.push_back({experiment.name, absl::StrCat(experiment.label_budget),
                    absl::StrCat(usage.spent),
                    absl::StrCat(experiment.label_budget - usage.spent),
                    absl::StrCat(usage.requests_granted),
                    absl::StrCat(usage.requests_denied),
                    absl::StrCat(usage.evaluations)});
  }
  PrintTable({"experiment", "budget", "spent", "remaining", "granted", "denied",
              "evaluations"},
             {false, true, true, true, true, true, true}, rows, out);
  ASSIGN_OR_RETURN(std::vector<RevealedRecord> revealed, store.ListRevealed());
  std::set<int64_t> distinct;
  for (const RevealedRecord& record : revealed) {
    distinct.insert(record.sample_id);
  }
  out << "distinct train labels revealed across all experiments: "
      << distinct.size() << "\n";
  return absl::OkStatus();
}

absl::Status PrintLog(LabelStore& store, absl::string_view experiment,
                      LogFormat format, std::ostream& out) {
  if (!experiment.empty())
    RETURN_IF_ERROR(store.GetExperiment(experiment).status());
  std::vector<std::vector<std::string>> table;
  if (format == LogFormat::kCsv) out << absl::StrJoin(CsvHeader(), ",") << "\n";
  int64_t after = 0;
  while (true) {
    ASSIGN_OR_RETURN(std::vector<AuditRecord> page,
                     store.ListAudit(experiment, after, kLogPageSize));
    if (page.empty()) break;
    after = page.back().sequence;
    for (const AuditRecord& row : page) {
      switch (format) {
        case LogFormat::kTable:
          table.push_back({absl::StrCat(row.sequence),
                           FormatTime(row.time_unix_micros), row.experiment,
                           row.client, row.strategy, absl::StrCat(row.round),
                           row.kind, std::string(OutcomeName(row.outcome)),
                           absl::StrCat(row.ids_asked.size()),
                           absl::StrCat(row.ids_revealed.size()), row.detail});
          break;
        case LogFormat::kCsv:
          PrintCsvRow(row, out);
          break;
        case LogFormat::kJsonl:
          PrintJsonRow(row, out);
          break;
      }
    }
  }
  if (format == LogFormat::kTable) {
    PrintTable({"seq", "time", "experiment", "client", "strategy", "round",
                "kind", "outcome", "asked", "revealed", "detail"},
               {true, false, false, false, false, true, false, false, true,
                true, false},
               table, out);
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> PrintVerification(LabelStore& store,
                                       const VerifyOptions& options,
                                       std::ostream& out) {
  ASSIGN_OR_RETURN(AuditVerification verification,
                   VerifyAuditLog(store, options));
  if (verification.ok) {
    out << "OK: " << verification.rows_verified << " rows verified";
    if (options.expected_head.has_value()) {
      out << "; saved head row " << options.expected_head->sequence
          << " matches";
    }
    out << "\n";
    return true;
  }
  out << "FAIL at row " << verification.bad_sequence << ": "
      << verification.reason << "\n";
  return false;
}

absl::StatusOr<bool> PrintVerification(LabelStore& store, std::ostream& out) {
  return PrintVerification(store, VerifyOptions(), out);
}

absl::Status PrintHead(LabelStore& store, std::ostream& out) {
  ASSIGN_OR_RETURN(AuditVerification verification, VerifyAuditLog(store));
  if (!verification.ok) {
    return absl::DataLossError(absl::StrCat(
        "the audit log does not verify, so it has no head to save: FAIL at "
        "row ",
        verification.bad_sequence, ": ", verification.reason));
  }
  out << FormatAuditHead(verification.head) << "\n";
  return absl::OkStatus();
}

absl::Status RunCreate(oracle::v1::LabelOracle::StubInterface& stub,
                       const CreateCommand& command, std::ostream& out) {
  grpc::ClientContext context;
  if (!command.admin_token.empty()) {
    context.AddMetadata(kTokenMetadataKey, command.admin_token);
  }
  oracle::v1::CreateExperimentRequest request;
  request.set_name(command.experiment);
  request.set_label_budget(command.budget);
  request.set_token(command.token);
  oracle::v1::Experiment experiment;
  RETURN_IF_ERROR(common::FromGrpcStatus(
      stub.CreateExperiment(&context, request, &experiment)));
  if (experiment.created()) {
    out << "created experiment " << experiment.name() << " (budget "
        << experiment.label_budget() << ")\n";
  } else {
    out << "experiment " << experiment.name() << " exists (budget "
        << experiment.label_budget() << ")\n";
  }
  return absl::OkStatus();
}

absl::Status RunQuery(oracle::v1::LabelOracle::StubInterface& stub,
                      const QueryCommand& command, std::ostream& out) {
  {
    grpc::ClientContext context;
    oracle::v1::CreateExperimentRequest request;
    request.set_name(command.experiment);
    request.set_label_budget(command.budget);
    request.set_token(command.token);
    oracle::v1::Experiment experiment;
    RETURN_IF_ERROR(common::FromGrpcStatus(
        stub.CreateExperiment(&context, request, &experiment)));
  }
  grpc::ClientContext context;
  if (!command.token.empty()) {
    context.AddMetadata(kTokenMetadataKey, command.token);
  }
  oracle::v1::QueryLabelsRequest request;
  request.set_experiment(command.experiment);
  request.mutable_ids()->Add(command.ids.begin(), command.ids.end());
  request.set_client(command.client);
  request.set_strategy("manual");
  oracle::v1::QueryLabelsResponse response;
  RETURN_IF_ERROR(
      common::FromGrpcStatus(stub.QueryLabels(&context, request, &response)));
  if (response.labels_size() != request.ids_size()) {
    return absl::InternalError(absl::StrCat("asked for ", request.ids_size(),
                                            " labels, got ",
                                            response.labels_size()));
  }
  for (int i = 0; i < request.ids_size(); ++i) {
    out << request.ids(i) << " " << response.labels(i) << "\n";
  }
  out << "remaining " << response.remaining() << "\n";
  return absl::OkStatus();
}

}  // namespace oracle_server
