#include "oracle_server/label_oracle_service.h"

#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/grpc_status.h"
#include "common/status_macros.h"
#include "common/tls_credentials.h"

namespace oracle_server {
namespace {

// The caller: the token it sent ("" if none) and its address.
Caller CallerOf(const grpc::CallbackServerContext& context) {
  Caller caller;
  const auto& metadata = context.client_metadata();
  auto it = metadata.find(kTokenMetadataKey);
  if (it != metadata.end()) {
    caller.token.assign(it->second.data(), it->second.size());
  }
  caller.peer = PeerIdentity(context.peer());
  return caller;
}

// Moves an OK result into `response` and finishes `reactor` with the mapped
// status. `response` is gRPC's, valid until Finish.
template <typename Response>
void Finish(grpc::ServerUnaryReactor* reactor, Response* response,
            absl::StatusOr<Response> result) {
  if (!result.ok()) {
    reactor->Finish(common::ToGrpcStatus(result.status()));
    return;
  }
  *response = *std::move(result);
  reactor->Finish(grpc::Status::OK);
}

// A `done` for the oracle's asynchronous forms that finishes the call.
template <typename Response>
auto FinishWhenDone(grpc::ServerUnaryReactor* reactor, Response* response) {
  return [reactor, response](absl::StatusOr<Response> result) {
    Finish(reactor, response, std::move(result));
  };
}

}  // namespace

std::string PeerIdentity(const std::string& grpc_peer) {
  if (grpc_peer.rfind("ipv4:", 0) != 0 && grpc_peer.rfind("ipv6:", 0) != 0) {
    return grpc_peer;
  }
  const size_t colon = grpc_peer.rfind(':');
  // The scheme's own colon is at index 4; a port needs one after it.
  if (colon <= 4) return grpc_peer;
  return grpc_peer.substr(0, colon);
}

grpc::ServerUnaryReactor* LabelOracleService::CreateExperiment(
    grpc::CallbackServerContext* context,
    const oracle::v1::CreateExperimentRequest* request,
    oracle::v1::Experiment* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  Finish(reactor, response,
         oracle_->CreateExperiment(*request, CallerOf(*context)));
  return reactor;
}

grpc::ServerUnaryReactor* LabelOracleService::QueryLabels(
    grpc::CallbackServerContext* context,
    const oracle::v1::QueryLabelsRequest* request,
    oracle::v1::QueryLabelsResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  oracle_->QueryLabelsAsync(*request, CallerOf(*context),
                            FinishWhenDone(reactor, response));
  return reactor;
}

grpc::ServerUnaryReactor* LabelOracleService::GetBudget(
    grpc::CallbackServerContext* context,
    const oracle::v1::GetBudgetRequest* request,
    oracle::v1::BudgetStatus* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  Finish(reactor, response, oracle_->GetBudget(*request, CallerOf(*context)));
  return reactor;
}

grpc::ServerUnaryReactor* LabelOracleService::Evaluate(
    grpc::CallbackServerContext* context,
    const oracle::v1::EvaluateRequest* request,
    oracle::v1::EvaluateResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  oracle_->EvaluateAsync(*request, CallerOf(*context),
                         FinishWhenDone(reactor, response));
  return reactor;
}

grpc::ServerUnaryReactor* LabelOracleService::ListQueries(
    grpc::CallbackServerContext* context,
    const oracle::v1::ListQueriesRequest* request,
    oracle::v1::ListQueriesResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  Finish(reactor, response, oracle_->ListQueries(*request, CallerOf(*context)));
  return reactor;
}

absl::StatusOr<RunningServer> StartOracleServer(const ServerOptions& options,
                                                LabelOracle* oracle) {
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials,
                   common::MakeServerCredentials(options.tls));
  grpc::EnableDefaultHealthCheckService(true);
  RunningServer running;
  running.service = std::make_unique<LabelOracleService>(oracle);
  const std::string address =
      options.host.find(':') != std::string::npos
          ? absl::StrCat("[", options.host, "]:", options.port)
          : absl::StrCat(options.host, ":", options.port);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, credentials, &running.port);
  builder.RegisterService(running.service.get());
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  // A second server on a busy port must fail, not share it.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  running.server = builder.BuildAndStart();
  if (running.server == nullptr || running.port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", address));
  }
  return running;
}

}  // namespace oracle_server
