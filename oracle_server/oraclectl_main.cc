// oraclectl: inspects a label oracle database and asks a running oracle.
//
//   oraclectl summary --store=sqlite:PATH|postgres:CONNINFO
//   oraclectl log --store=... [--experiment=X] [--format=table|csv|jsonl]
//   oraclectl verify --store=... [--expect_head=SEQ:HASH]
//   oraclectl head --store=...
// (--db=PATH is the same as --store=sqlite:PATH)
//   oraclectl create --server=HOST:PORT --admin_token_file=PATH
//                    --experiment=X --budget=N [--token_file=PATH]
//   oraclectl query --server=HOST:PORT --experiment=X [--token=T]
//                   [--budget=N] [--client=NAME]
//                   [--tls_ca=PEM [--tls_cert=PEM --tls_key=PEM]] ID...
//
// summary, log, verify and head open the database read-only. head verifies
// the log and prints its last row as "SEQ HASH"; kept outside the database
// and passed back as verify --expect_head, it makes verify fail unless the log
// still holds that row with that hash (rows cut off the end are otherwise
// not noticed).
//
// create is the operator's: it creates an experiment with a new random token,
// written to --token_file (mode 0600; an existing file's token is reused, so
// creating again is idempotent) or else printed alone on stdout, and hands
// that token to the experiment's trainer. Exit status: 0 on success, 1 when
// verification fails or a command fails, 2 for bad usage.
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "common/tls_credentials.h"
#include "oracle_server/oraclectl.h"
#include "oracle_server/open_label_store.h"
#include "oracle_server/token_file.h"

ABSL_FLAG(std::string, db, "oracle.db",
          "SQLite database (summary, log, verify, head); the same as "
          "--store=sqlite:PATH");
ABSL_FLAG(std::string, store, "",
          "sqlite:PATH or postgres:CONNINFO (summary, log, verify, head); "
          "empty: sqlite:<--db>");
ABSL_FLAG(std::string, expect_head, "",
          "verify: a head saved earlier from `oraclectl head` (SEQ:HASH or "
          "\"SEQ HASH\"); fail unless the log holds row SEQ with that hash");
ABSL_FLAG(std::string, experiment, "", "experiment (log: filter; query)");
ABSL_FLAG(std::string, format, "table", "log format: table, csv or jsonl");
ABSL_FLAG(std::string, server, "localhost:50051", "oracle address (query)");
ABSL_FLAG(std::string, token, "", "experiment token (query)");
ABSL_FLAG(int64_t, budget, 0,
          "label budget when query creates the experiment; 0: server default");
ABSL_FLAG(std::string, client, "oraclectl", "client name for the audit log");
ABSL_FLAG(std::string, admin_token_file, "",
          "file holding the operator's admin token (create)");
ABSL_FLAG(std::string, token_file, "",
          "file holding the experiment token (query: read instead of "
          "--token; create: read if it exists, else a new token is written "
          "there)");
ABSL_FLAG(std::string, tls_ca, "",
          "CA certificates (PEM) to verify the oracle's TLS certificate; "
          "TLS is used if any --tls_* flag is set (query)");
ABSL_FLAG(std::string, tls_cert, "",
          "client certificate (PEM) for an oracle that requires mutual TLS");
ABSL_FLAG(std::string, tls_key, "", "private key of --tls_cert (PEM)");

namespace {

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

int Usage(const std::string& message) {
  std::cerr << "oraclectl: " << message << "\n"
            << absl::ProgramUsageMessage() << "\n";
  return kExitUsage;
}

int Fail(const absl::Status& status) {
  std::cerr << "oraclectl: " << status << "\n";
  return kExitFailure;
}

absl::StatusOr<std::unique_ptr<oracle_server::LabelStore>> OpenReadOnly() {
  oracle_server::OpenStoreOptions options;
  options.store = absl::GetFlag(FLAGS_store).empty()
                      ? oracle_server::SqliteStoreSpec(absl::GetFlag(FLAGS_db))
                      : absl::GetFlag(FLAGS_store);
  options.read_only = true;
  return oracle_server::OpenLabelStore(options);
}

// A stub for --server, over TLS if any --tls_* flag is set.
absl::StatusOr<std::unique_ptr<oracle::v1::LabelOracle::Stub>> Connect() {
  common::ClientTlsOptions tls;
  tls.ca_file = absl::GetFlag(FLAGS_tls_ca);
  tls.cert_file = absl::GetFlag(FLAGS_tls_cert);
  tls.key_file = absl::GetFlag(FLAGS_tls_key);
  auto credentials = common::MakeChannelCredentials(tls);
  if (!credentials.ok()) return credentials.status();
  return oracle::v1::LabelOracle::NewStub(
      grpc::CreateChannel(absl::GetFlag(FLAGS_server), *credentials));
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "oraclectl summary --store=sqlite:PATH|postgres:CONNINFO (or --db=PATH)\n"
      "  oraclectl log --store=... [--experiment=X] [--format=table|csv|jsonl]\n"
      "  oraclectl verify --store=... [--expect_head=SEQ:HASH]\n"
      "  oraclectl head --store=...\n"
      "  oraclectl create --server=HOST:PORT --admin_token_file=PATH "
      "--experiment=X --budget=N [--token_file=PATH]\n"
      "  oraclectl query --server=HOST:PORT --experiment=X [--token=T] "
      "[--budget=N] [--client=NAME]\n"
      "                  [--tls_ca=PEM [--tls_cert=PEM --tls_key=PEM]] ID...");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() < 2) return Usage("missing command");
  const std::string command = args[1];
  const std::vector<std::string> operands(args.begin() + 2, args.end());

  if (command == "summary" || command == "log" || command == "verify" ||
      command == "head") {
    if (!operands.empty()) return Usage("unexpected argument " + operands[0]);
    oracle_server::VerifyOptions verify;
    if (!absl::GetFlag(FLAGS_expect_head).empty()) {
      if (command != "verify") return Usage("--expect_head is for verify");
      auto head =
          oracle_server::ParseAuditHead(absl::GetFlag(FLAGS_expect_head));
      if (!head.ok()) return Usage(std::string(head.status().message()));
      verify.expected_head = *std::move(head);
    }
    auto store = OpenReadOnly();
    if (!store.ok()) return Fail(store.status());
    if (command == "summary") {
      absl::Status status = oracle_server::PrintSummary(**store, std::cout);
      return status.ok() ? 0 : Fail(status);
    }
    if (command == "log") {
      auto format = oracle_server::ParseLogFormat(absl::GetFlag(FLAGS_format));
      if (!format.ok()) return Usage(std::string(format.status().message()));
      absl::Status status = oracle_server::PrintLog(
          **store, absl::GetFlag(FLAGS_experiment), *format, std::cout);
      return status.ok() ? 0 : Fail(status);
    }
    if (command == "head") {
      absl::Status status = oracle_server::PrintHead(**store, std::cout);
      return status.ok() ? 0 : Fail(status);
    }
    auto verified =
        oracle_server::PrintVerification(**store, verify, std::cout);
    if (!verified.ok()) return Fail(verified.status());
    return *verified ? 0 : kExitFailure;
  }

  if (command == "create") {
    if (!operands.empty()) return Usage("unexpected argument " + operands[0]);
    oracle_server::CreateCommand create;
    create.experiment = absl::GetFlag(FLAGS_experiment);
    create.budget = absl::GetFlag(FLAGS_budget);
    if (create.experiment.empty()) return Usage("create needs --experiment");
    const std::string admin_token_file = absl::GetFlag(FLAGS_admin_token_file);
    if (!admin_token_file.empty()) {
      auto admin_token = oracle_server::ReadTokenFile(admin_token_file);
      if (!admin_token.ok()) return Fail(admin_token.status());
      create.admin_token = *std::move(admin_token);
    }
    const std::string token_file = absl::GetFlag(FLAGS_token_file);
    const bool reuse = !token_file.empty() && std::filesystem::exists(token_file);
    auto token = reuse ? oracle_server::ReadTokenFile(token_file)
                       : oracle_server::GenerateToken();
    if (!token.ok()) return Fail(token.status());
    create.token = *std::move(token);
    auto stub = Connect();
    if (!stub.ok()) return Fail(stub.status());
    absl::Status status = oracle_server::RunCreate(
        **stub, create, token_file.empty() ? std::cerr : std::cout);
    if (!status.ok()) return Fail(status);
    if (token_file.empty()) {
      std::cout << create.token << std::endl;
    } else if (!reuse) {
      status = oracle_server::WriteTokenFile(token_file, create.token);
      if (!status.ok()) return Fail(status);
    }
    return 0;
  }

  if (command == "query") {
    oracle_server::QueryCommand query;
    query.experiment = absl::GetFlag(FLAGS_experiment);
    query.token = absl::GetFlag(FLAGS_token);
    if (!absl::GetFlag(FLAGS_token_file).empty()) {
      auto token = oracle_server::ReadTokenFile(absl::GetFlag(FLAGS_token_file));
      if (!token.ok()) return Fail(token.status());
      query.token = *std::move(token);
    }
    query.budget = absl::GetFlag(FLAGS_budget);
    query.client = absl::GetFlag(FLAGS_client);
    if (query.experiment.empty()) return Usage("query needs --experiment");
    if (operands.empty()) return Usage("query needs at least one id");
    for (const std::string& operand : operands) {
      int64_t id = 0;
      if (!absl::SimpleAtoi(operand, &id)) {
        return Usage("\"" + operand + "\" is not an id");
      }
      query.ids.push_back(id);
    }
    common::ClientTlsOptions tls;
    tls.ca_file = absl::GetFlag(FLAGS_tls_ca);
    tls.cert_file = absl::GetFlag(FLAGS_tls_cert);
    tls.key_file = absl::GetFlag(FLAGS_tls_key);
    auto credentials = common::MakeChannelCredentials(tls);
    if (!credentials.ok()) return Fail(credentials.status());
    auto channel =
        grpc::CreateChannel(absl::GetFlag(FLAGS_server), *credentials);
    auto stub = oracle::v1::LabelOracle::NewStub(channel);
    absl::Status status = oracle_server::RunQuery(*stub, query, std::cout);
    return status.ok() ? 0 : Fail(status);
  }
  return Usage("unknown command \"" + command + "\"");
}
