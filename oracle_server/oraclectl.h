// The subcommands of the `oraclectl` operator tool, as functions that write
// to a stream so they can be tested without a process. oraclectl_main.cc
// parses flags and opens the database (read-only) or the channel.
#ifndef ORACLE_SERVER_ORACLECTL_H_
#define ORACLE_SERVER_ORACLECTL_H_

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "oracle_server/audit_chain.h"
#include "oracle_server/label_store.h"
#include "proto/oracle.grpc.pb.h"

namespace oracle_server {

enum class LogFormat { kTable, kCsv, kJsonl };

// "table", "csv" or "jsonl"; INVALID_ARGUMENT otherwise.
absl::StatusOr<LogFormat> ParseLogFormat(absl::string_view name);

// `oraclectl summary`: one table line per experiment with its budget, spent,
// remaining, requests granted and denied, and evaluations; then the number of
// distinct train labels revealed across all experiments (what the label
// owner paid for: the same id revealed to two experiments counts once).
absl::Status PrintSummary(LabelStore& store, std::ostream& out);

// `oraclectl log`: every audit row (only `experiment`'s unless empty) in
// sequence order. The table shows id counts; csv (RFC 4180, with a header)
// and jsonl (one object per row) hold every field, ids space-separated in csv
// and as arrays in jsonl; role and peer come last (the last two csv
// columns). NOT_FOUND for an unknown experiment.
absl::Status PrintLog(LabelStore& store, absl::string_view experiment,
                      LogFormat format, std::ostream& out);

// `oraclectl verify`: VerifyAuditLog with `options`; prints "OK: N rows
// verified" (followed by "; saved head row S matches" when options holds an
// expected head) and returns true, or "FAIL at row SEQ: reason" and returns
// false. A non-OK status means the store could not be read.
absl::StatusOr<bool> PrintVerification(LabelStore& store,
                                       const VerifyOptions& options,
                                       std::ostream& out);

// PrintVerification without a saved head.
absl::StatusOr<bool> PrintVerification(LabelStore& store, std::ostream& out);

// `oraclectl head`: verifies the log and prints its last row as one line
// "SEQ HASH" (FormatAuditHead), for the operator to keep outside the database
// and pass back as `verify --expect_head`. DATA_LOSS naming the first bad row,
// with nothing printed, when the log does not verify; other errors mean the
// store could not be read.
absl::Status PrintHead(LabelStore& store, std::ostream& out);

struct QueryCommand {
  // Experiment to create or join.
  std::string experiment;
  // Its token, sent on creation and as x-oracle-token; empty: none.
  std::string token;
  // Budget when creating it; 0: the server's default.
  int64_t budget = 0;
  // Who asks, recorded in the audit log.
  std::string client = "oraclectl";
  // Train ids to reveal.
  std::vector<int64_t> ids;
};

struct CreateCommand {
  // Experiment to create.
  std::string experiment;
  // Its label budget; 0: the server's default.
  int64_t budget = 0;
  // The experiment's token, which its trainer will present.
  std::string token;
  // The operator's token, sent as x-oracle-token; empty: none (open server).
  std::string admin_token;
};

// `oraclectl create`: creates the experiment as the operator and prints
// "created experiment NAME (budget N)", or "experiment NAME exists (budget
// N)" when it exists with that budget and token. Returns the server's status
// (e.g. ALREADY_EXISTS for other settings, PERMISSION_DENIED without the
// admin token).
absl::Status RunCreate(oracle::v1::LabelOracle::StubInterface& stub,
                       const CreateCommand& command, std::ostream& out);

// `oraclectl query`: creates or joins the experiment, reveals `ids`, prints
// one "id label" line per id and then "remaining N". Returns the server's
// status (e.g. RESOURCE_EXHAUSTED) as an absl::Status.
absl::Status RunQuery(oracle::v1::LabelOracle::StubInterface& stub,
                      const QueryCommand& command, std::ostream& out);

}  // namespace oracle_server

#endif  // ORACLE_SERVER_ORACLECTL_H_
