// gRPC adapter for LabelOracle, and a helper that builds and starts a server
// exposing it together with the standard health service.
#ifndef ORACLE_SERVER_LABEL_ORACLE_SERVICE_H_
#define ORACLE_SERVER_LABEL_ORACLE_SERVICE_H_

#include <grpcpp/server.h>
#include <grpcpp/server_context.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/tls_options.h"
#include "oracle_server/label_oracle.h"
#include "proto/oracle.grpc.pb.h"

namespace oracle_server {

// Metadata key carrying an experiment's secret token, or the operator's admin
// token.
inline constexpr char kTokenMetadataKey[] = "x-oracle-token";

// The client identity in a gRPC peer string: the address without its port
// ("ipv4:10.0.0.7:5000" -> "ipv4:10.0.0.7", "ipv6:[::1]:5000" ->
// "ipv6:[::1]"); other peers (unix sockets, in-process) unchanged.
std::string PeerIdentity(const std::string& grpc_peer);

// Thin adapter on gRPC's callback API: reads the token from the call's
// metadata and the caller's address, calls the oracle and maps its status
// with common::ToGrpcStatus. QueryLabels and Evaluate use the oracle's
// asynchronous forms and finish the call from their `done`, so no gRPC thread
// waits for a store commit; the other RPCs run on the gRPC thread that
// received them. Thread-safe; does not own the oracle, which must outlive it.
class LabelOracleService final
    : public oracle::v1::LabelOracle::CallbackService {
 public:
  explicit LabelOracleService(LabelOracle* oracle) : oracle_(oracle) {}

  grpc::ServerUnaryReactor* CreateExperiment(
      grpc::CallbackServerContext* context,
      const oracle::v1::CreateExperimentRequest* request,
      oracle::v1::Experiment* response) override;
  grpc::ServerUnaryReactor* QueryLabels(
      grpc::CallbackServerContext* context,
      const oracle::v1::QueryLabelsRequest* request,
      oracle::v1::QueryLabelsResponse* response) override;
  grpc::ServerUnaryReactor* GetBudget(
      grpc::CallbackServerContext* context,
      const oracle::v1::GetBudgetRequest* request,
      oracle::v1::BudgetStatus* response) override;
  grpc::ServerUnaryReactor* Evaluate(
      grpc::CallbackServerContext* context,
      const oracle::v1::EvaluateRequest* request,
      oracle::v1::EvaluateResponse* response) override;
  grpc::ServerUnaryReactor* ListQueries(
      grpc::CallbackServerContext* context,
      const oracle::v1::ListQueriesRequest* request,
      oracle::v1::ListQueriesResponse* response) override;

 private:
  LabelOracle* const oracle_;
};

struct ServerOptions {
  // Address to listen on ("0.0.0.0", "127.0.0.1", "::", a host name).
  std::string host = "0.0.0.0";
  // Port to listen on; 0 lets the OS pick one (see RunningServer::port).
  int port = 50051;
  // Largest request and response message, in bytes.
  int max_message_bytes = 64 << 20;
  // TLS certificate and key (and client CA for mutual TLS); empty: plaintext.
  common::ServerTlsOptions tls;
};

// A started server. Members are destroyed server first, then the service.
struct RunningServer {
  std::unique_ptr<LabelOracleService> service;
  std::unique_ptr<grpc::Server> server;
  int port = 0;  // the port actually bound
};

// Builds and starts a server for `oracle` (not owned; it must outlive the
// server) with the default health service enabled and SERVING; plaintext
// unless options.tls is set. UNAVAILABLE if it cannot listen on host:port
// (SO_REUSEPORT is off, so a port in use is refused); the errors of
// common::MakeServerCredentials for unusable TLS files.
absl::StatusOr<RunningServer> StartOracleServer(const ServerOptions& options,
                                                LabelOracle* oracle);

}  // namespace oracle_server

#endif  // ORACLE_SERVER_LABEL_ORACLE_SERVICE_H_
