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
Caller CallerOf(const grpc::ServerContext& context) {
  Caller caller;
  const auto& metadata = context.client_metadata();
  auto it = metadata.find(kTokenMetadataKey);
  if (it != metadata.end()) {
    caller.token.assign(it->second.data(), it->second.size());
  }
  caller.peer = PeerIdentity(context.peer());
  return caller;
}

template <typename Response>
grpc::Status Reply(absl::StatusOr<Response> result, Response* response) {
  if (!result.ok()) return common::ToGrpcStatus(result.status());
  *response = *std::move(result);
  return grpc::Status::OK;
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

grpc::Status LabelOracleService::CreateExperiment(
    grpc::ServerContext* context,
    const oracle::v1::CreateExperimentRequest* request,
    oracle::v1::Experiment* response) {
  return Reply(oracle_->CreateExperiment(*request, CallerOf(*context)),
               response);
}

grpc::Status LabelOracleService::QueryLabels(
    grpc::ServerContext* context, const oracle::v1::QueryLabelsRequest* request,
    oracle::v1::QueryLabelsResponse* response) {
  return Reply(oracle_->QueryLabels(*request, CallerOf(*context)), response);
}

grpc::Status LabelOracleService::GetBudget(
    grpc::ServerContext* context, const oracle::v1::GetBudgetRequest* request,
    oracle::v1::BudgetStatus* response) {
  return Reply(oracle_->GetBudget(*request, CallerOf(*context)), response);
}

grpc::Status LabelOracleService::Evaluate(
    grpc::ServerContext* context, const oracle::v1::EvaluateRequest* request,
    oracle::v1::EvaluateResponse* response) {
  return Reply(oracle_->Evaluate(*request, CallerOf(*context)), response);
}

grpc::Status LabelOracleService::ListQueries(
    grpc::ServerContext* context, const oracle::v1::ListQueriesRequest* request,
    oracle::v1::ListQueriesResponse* response) {
  return Reply(oracle_->ListQueries(*request, CallerOf(*context)), response);
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
