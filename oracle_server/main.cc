// oracle_server: serves the label oracle (proto/oracle.proto) over gRPC.
//
//   oracle_server --store=sqlite:oracle.db|postgres:CONNINFO --port=50051
//                 [--port_file=PATH] [--labels_table=T --test_labels_table=T]
//                 [--tls_cert=PEM --tls_key=PEM [--tls_client_ca=PEM]]
//
// With --admin_token_file, calls carrying that token act as the operator
// (create experiments, read every experiment's rows) and all others as
// clients of the experiment whose token they hold; without it the server is
// open (anyone may create experiments) and its start line says so.
//
// Imports the label files into a new database (--store, or --db for SQLite),
// checks them against an existing one, listens, and on SIGINT or SIGTERM
// stops accepting calls, lets the ones in flight finish (up to 10 s), closes
// the database and exits 0.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <system_error>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/atomic_file.h"
#include "common/idx_file.h"
#include "common/status_macros.h"
#include "oracle_server/label_oracle.h"
#include "oracle_server/label_oracle_service.h"
#include "oracle_server/open_label_store.h"
#include "oracle_server/token_file.h"

ABSL_FLAG(std::string, host, "0.0.0.0", "address to listen on");
ABSL_FLAG(int, port, 50051, "port to listen on; 0 lets the OS pick one");
ABSL_FLAG(std::string, port_file, "",
          "if set, the bound port is written to this file once listening");
ABSL_FLAG(std::string, db, "oracle.db",
          "SQLite database file (the same as --store=sqlite:PATH)");
ABSL_FLAG(std::string, store, "",
          "sqlite:PATH or postgres:CONNINFO (a libpq connection string or "
          "postgresql:// URI); empty: sqlite:<--db>");
ABSL_FLAG(std::string, labels_table, "",
          "postgres: table (columns id, label) holding the train labels, "
          "instead of --train_labels; with --test_labels_table");
ABSL_FLAG(std::string, test_labels_table, "",
          "postgres: table (columns id, label) holding the test labels");
ABSL_FLAG(std::string, train_labels,
          absl::StrCat(common::kDefaultDatasetDir, "/",
                       common::kTrainLabelsFile),
          "IDX train label file (imported into a new database)");
ABSL_FLAG(std::string, test_labels,
          absl::StrCat(common::kDefaultDatasetDir, "/",
                       common::kTestLabelsFile),
          "IDX test label file (imported into a new database)");
ABSL_FLAG(int64_t, default_budget, 100,
          "label budget of experiments created with budget 0");
ABSL_FLAG(int64_t, max_batch, 10000, "most ids one QueryLabels call may ask");
ABSL_FLAG(int64_t, eval_cap, 100, "evaluations allowed per experiment");
ABSL_FLAG(std::string, admin_token_file, "",
          "file holding the operator's admin token; empty: an open server on "
          "which any client may create experiments");
ABSL_FLAG(int64_t, max_evaluations_per_client, 0,
          "evaluations allowed per client address across all experiments; "
          "0: no cap");
ABSL_FLAG(int64_t, max_evaluations_total, 0,
          "evaluations allowed across all experiments and clients; 0: no cap");
ABSL_FLAG(int64_t, evaluate_min_predictions_per_class, 100,
          "Evaluate returns per-class accuracy and the confusion matrix only "
          "when every class is predicted for at least this many test images "
          "(otherwise only the accuracy); 0: always (trusted setups)");
ABSL_FLAG(std::string, tls_cert, "",
          "server certificate chain (PEM); with --tls_key serves TLS instead "
          "of plaintext");
ABSL_FLAG(std::string, tls_key, "", "private key of --tls_cert (PEM)");
ABSL_FLAG(std::string, tls_client_ca, "",
          "CA certificates (PEM); if set, clients must present a certificate "
          "signed by one of them (mutual TLS)");

namespace {

// How long in-flight calls may take to finish after a shutdown signal.
constexpr absl::Duration kShutdownGrace = absl::Seconds(10);

// Writes `port` to `path` atomically, so a reader never sees a partial
// number.
absl::Status WritePortFile(const std::string& path, int port) {
  return common::WriteFileAtomically(path, absl::StrCat(port, "\n"));
}

// `store` for the start line, without a password a connection string holds.
std::string StoreForLog(const std::string& store) {
  return absl::StrContains(store, "password") ? "postgres:(connection string "
                                                "with a password)"
                                              : store;
}

absl::Status Run(const sigset_t& shutdown_signals) {
  oracle_server::OpenStoreOptions store_options;
  store_options.store = absl::GetFlag(FLAGS_store).empty()
                            ? oracle_server::SqliteStoreSpec(
                                  absl::GetFlag(FLAGS_db))
                            : absl::GetFlag(FLAGS_store);
  store_options.train_labels_path = absl::GetFlag(FLAGS_train_labels);
  store_options.test_labels_path = absl::GetFlag(FLAGS_test_labels);
  store_options.labels_table = absl::GetFlag(FLAGS_labels_table);
  store_options.test_labels_table = absl::GetFlag(FLAGS_test_labels_table);
  ASSIGN_OR_RETURN(std::unique_ptr<oracle_server::LabelStore> store,
                   oracle_server::OpenLabelStore(store_options));

  oracle_server::OracleOptions oracle_options;
  oracle_options.default_budget = absl::GetFlag(FLAGS_default_budget);
  oracle_options.max_batch = absl::GetFlag(FLAGS_max_batch);
  oracle_options.eval_cap = absl::GetFlag(FLAGS_eval_cap);
  oracle_options.max_evaluations_per_client =
      absl::GetFlag(FLAGS_max_evaluations_per_client);
  oracle_options.max_evaluations_total =
      absl::GetFlag(FLAGS_max_evaluations_total);
  oracle_options.evaluate_min_predictions_per_class =
      absl::GetFlag(FLAGS_evaluate_min_predictions_per_class);
  if (!absl::GetFlag(FLAGS_admin_token_file).empty()) {
    ASSIGN_OR_RETURN(
        oracle_options.admin_token,
        oracle_server::ReadTokenFile(absl::GetFlag(FLAGS_admin_token_file)));
  }
  // The store completes writes on its own committer thread, so no gRPC
  // thread waits for a commit.
  ASSIGN_OR_RETURN(std::unique_ptr<oracle_server::LabelOracle> oracle,
                   oracle_server::LabelOracle::Create(oracle_options,
                                                      std::move(store)));
  ASSIGN_OR_RETURN(auto experiments, oracle->store().ListExperiments());
  ASSIGN_OR_RETURN(auto head, oracle->store().GetAuditHead());

  oracle_server::ServerOptions server_options;
  server_options.host = absl::GetFlag(FLAGS_host);
  server_options.port = absl::GetFlag(FLAGS_port);
  server_options.tls.cert_file = absl::GetFlag(FLAGS_tls_cert);
  server_options.tls.key_file = absl::GetFlag(FLAGS_tls_key);
  server_options.tls.client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  ASSIGN_OR_RETURN(
      oracle_server::RunningServer running,
      oracle_server::StartOracleServer(server_options, oracle.get()));
  const std::string port_file = absl::GetFlag(FLAGS_port_file);
  if (!port_file.empty()) {
    RETURN_IF_ERROR(WritePortFile(port_file, running.port));
  }
  std::cerr << "oracle_server: store=" << StoreForLog(store_options.store)
            << " train_labels=" << oracle->train_count()
            << " test_labels=" << oracle->test_count()
            << " experiments=" << experiments.size()
            << " audit_rows=" << head.first
            << " default_budget=" << oracle_options.default_budget
            << " max_batch=" << oracle_options.max_batch
            << " eval_cap=" << oracle_options.eval_cap
            << " max_evaluations_per_client="
            << oracle_options.max_evaluations_per_client
            << " max_evaluations_total=" << oracle_options.max_evaluations_total
            << " evaluate_min_predictions_per_class="
            << oracle_options.evaluate_min_predictions_per_class
            << (oracle_options.admin_token.empty()
                    ? " roles=open (no --admin_token_file: any client may "
                      "create experiments)"
                    : " roles=admin+client")
            << (server_options.tls.client_ca_file.empty() ? "" : " mutual")
            << (server_options.tls.enabled() ? " TLS" : " plaintext")
            << " listening on " << server_options.host << ":" << running.port
            << std::endl;

  int signal_number = 0;
  sigwait(&shutdown_signals, &signal_number);
  std::cerr << "oracle_server: signal " << signal_number << ", shutting down"
            << std::endl;
  running.server->Shutdown(absl::ToChronoTime(absl::Now() + kShutdownGrace));
  running.server->Wait();
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Serves the label oracle over gRPC.\n"
      "  oracle_server --store=sqlite:oracle.db|postgres:CONNINFO "
      "--port=50051 [--port_file=PATH]");
  absl::ParseCommandLine(argc, argv);
  // absl::Mutex deadlock detection (on by default in this Abseil build) costs
  // a lock-graph update per Mutex acquisition in the store and in gRPC.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  // Block the shutdown signals before gRPC starts threads, so that they are
  // delivered only to sigwait in Run.
  sigset_t shutdown_signals;
  sigemptyset(&shutdown_signals);
  sigaddset(&shutdown_signals, SIGINT);
  sigaddset(&shutdown_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &shutdown_signals, nullptr);

  absl::Status status = Run(shutdown_signals);
  if (!status.ok()) {
    std::cerr << "oracle_server: " << status << std::endl;
    return 1;
  }
  return 0;
}
