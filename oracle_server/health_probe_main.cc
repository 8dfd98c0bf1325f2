// oracle_health_probe: asks a gRPC server's standard health service
// (grpc.health.v1.Health/Check) whether it is serving. A stand-in for
// grpc_health_probe, used by the oracle container's health check.
//
//   oracle_health_probe --server=localhost:50051 [--service=NAME]
//                       [--tls_ca=PEM [--tls_cert=PEM --tls_key=PEM]]
//
// Exit status: 0 iff the answer is SERVING; 1 for any other answer or a
// failed call (the reason goes to stderr); 2 for bad usage or unusable TLS
// files.
#include <grpcpp/grpcpp.h>

#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/tls_credentials.h"
#include "proto/grpc/health/v1/health.grpc.pb.h"

ABSL_FLAG(std::string, server, "localhost:50051", "host:port of the server");
ABSL_FLAG(std::string, service, "",
          "service name to ask about; empty asks about the server as a whole");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(3),
          "deadline for connecting and answering");
ABSL_FLAG(std::string, tls_ca, "",
          "CA certificates (PEM) to verify the server's TLS certificate; TLS "
          "is used if any --tls_* flag is set");
ABSL_FLAG(std::string, tls_cert, "",
          "client certificate (PEM) for a server that requires mutual TLS");
ABSL_FLAG(std::string, tls_key, "", "private key of --tls_cert (PEM)");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Exits 0 iff the gRPC health service at --server answers SERVING.");
  absl::ParseCommandLine(argc, argv);
  const std::string server = absl::GetFlag(FLAGS_server);
  if (server.empty()) {
    std::cerr << "oracle_health_probe: --server must not be empty\n";
    return 2;
  }

  common::ClientTlsOptions tls;
  tls.ca_file = absl::GetFlag(FLAGS_tls_ca);
  tls.cert_file = absl::GetFlag(FLAGS_tls_cert);
  tls.key_file = absl::GetFlag(FLAGS_tls_key);
  auto credentials = common::MakeChannelCredentials(tls);
  if (!credentials.ok()) {
    std::cerr << "oracle_health_probe: " << credentials.status() << "\n";
    return 2;
  }
  auto channel = grpc::CreateChannel(server, *credentials);
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(
      absl::ToChronoTime(absl::Now() + absl::GetFlag(FLAGS_timeout)));
  context.set_wait_for_ready(true);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(absl::GetFlag(FLAGS_service));
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) {
    std::cerr << "oracle_health_probe: " << server << ": code "
              << status.error_code() << ": " << status.error_message() << "\n";
    return 1;
  }
  const std::string name =
      grpc::health::v1::HealthCheckResponse::ServingStatus_Name(
          response.status());
  std::cout << name << "\n";
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING
             ? 0
             : 1;
}
