#include "common/tls_credentials.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/grpc/health/v1/health.grpc.pb.h"

namespace common {
namespace {

using ::testing::HasSubstr;

// A throw-away PKI from tests/common/make_test_certs.sh in a fresh temp dir,
// made once per test process and removed at exit; "" if that failed.
class TestPki {
 public:
  TestPki() {
    const char* source = std::getenv("FEWLABELS_SOURCE_DIR");
    const std::string script =
        absl::StrCat(source != nullptr ? source : ".",
                     "/tests/common/make_test_certs.sh");
    std::string pattern =
        (std::filesystem::temp_directory_path() / "tls_test.XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) return;
    dir_ = pattern;
    const std::string command =
        absl::StrCat("bash '", script, "' '", dir_, "' >/dev/null");
    if (std::system(command.c_str()) != 0) {
      std::filesystem::remove_all(dir_);
      dir_.clear();
    }
  }
  ~TestPki() {
    std::error_code ignored;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ignored);
  }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
};

const std::string& CertDir() {
  static const TestPki pki;
  return pki.dir();
}

std::string Cert(const std::string& name) {
  return absl::StrCat(CertDir(), "/", name);
}

std::string WriteFile(const std::string& name, const std::string& contents) {
  const std::string path = Cert(name);
  std::ofstream(path) << contents;
  return path;
}

ServerTlsOptions ServerTls() {
  ServerTlsOptions options;
  options.cert_file = Cert("server.pem");
  options.key_file = Cert("server.key");
  return options;
}

ServerTlsOptions MutualServerTls() {
  ServerTlsOptions options = ServerTls();
  options.client_ca_file = Cert("ca.pem");
  return options;
}

ClientTlsOptions ClientTls(const std::string& ca = "ca.pem") {
  ClientTlsOptions options;
  options.ca_file = Cert(ca);
  return options;
}

ClientTlsOptions ClientTlsWithCert(const std::string& name) {
  ClientTlsOptions options = ClientTls();
  options.cert_file = Cert(name + ".pem");
  options.key_file = Cert(name + ".key");
  return options;
}

// Answers every Check with SERVING.
class ServingHealth final : public grpc::health::v1::Health::Service {
 public:
  grpc::Status Check(grpc::ServerContext*,
                     const grpc::health::v1::HealthCheckRequest*,
                     grpc::health::v1::HealthCheckResponse* response) override {
    response->set_status(grpc::health::v1::HealthCheckResponse::SERVING);
    return grpc::Status::OK;
  }
};

// A server on 127.0.0.1 at an OS-picked port with only a health service.
class HealthServer {
 public:
  explicit HealthServer(const ServerTlsOptions& tls) {
    auto credentials = MakeServerCredentials(tls);
    EXPECT_THAT(credentials, IsOk());
    if (!credentials.ok()) return;
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", *credentials, &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    EXPECT_NE(server_, nullptr);
  }
  ~HealthServer() {
    if (server_ != nullptr) server_->Shutdown();
  }

  // Status code of one Health/Check call over a channel with `tls`.
  grpc::StatusCode Check(const ClientTlsOptions& tls) const {
    auto credentials = MakeChannelCredentials(tls);
    EXPECT_THAT(credentials, IsOk());
    if (!credentials.ok()) return grpc::StatusCode::INTERNAL;
    auto stub = grpc::health::v1::Health::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", port_), *credentials));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(20));
    grpc::health::v1::HealthCheckRequest request;
    grpc::health::v1::HealthCheckResponse response;
    return stub->Check(&context, request, &response).error_code();
  }

 private:
  ServingHealth service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

TEST(TlsCredentialsTest, NoOptionsMeansPlaintext) {
  EXPECT_FALSE(ServerTlsOptions().enabled());
  EXPECT_FALSE(ClientTlsOptions().enabled());
  HealthServer server{ServerTlsOptions()};
  EXPECT_EQ(server.Check(ClientTlsOptions()), grpc::StatusCode::OK);
}

TEST(TlsCredentialsTest, MissingFileIsNotFound) {
  ServerTlsOptions server;
  server.cert_file = "/nonexistent/server.pem";
  server.key_file = "/nonexistent/server.key";
  EXPECT_THAT(MakeServerCredentials(server),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("tls_cert \"/nonexistent/server.pem\"")));
  ClientTlsOptions client;
  client.ca_file = "/nonexistent/ca.pem";
  EXPECT_THAT(MakeChannelCredentials(client),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("tls_ca")));
}

TEST(TlsCredentialsTest, CertWithoutKeyIsInvalidArgument) {
  ServerTlsOptions server;
  server.cert_file = "server.pem";
  EXPECT_THAT(MakeServerCredentials(server),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("tls_cert alone")));
  ClientTlsOptions client;
  client.key_file = "client.key";
  EXPECT_THAT(MakeChannelCredentials(client),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("tls_key alone")));
}

TEST(TlsCredentialsTest, ClientCaWithoutServerCertIsInvalidArgument) {
  ServerTlsOptions server;
  server.client_ca_file = "ca.pem";
  EXPECT_THAT(MakeServerCredentials(server),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("tls_client_ca needs tls_cert")));
}

TEST(TlsCredentialsTest, FileWithoutPemIsInvalidArgument) {
  ASSERT_NE(CertDir(), "");
  ClientTlsOptions client;
  client.ca_file = WriteFile("garbage.pem", "not a certificate\n");
  EXPECT_THAT(MakeChannelCredentials(client),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("no PEM certificate")));
  ServerTlsOptions server = ServerTls();
  server.key_file = Cert("server.pem");
  EXPECT_THAT(MakeServerCredentials(server),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("no unencrypted PEM private key")));
}

TEST(TlsCredentialsTest, KeyOfAnotherCertificateIsInvalidArgument) {
  ASSERT_NE(CertDir(), "");
  ServerTlsOptions server = ServerTls();
  server.key_file = Cert("client.key");
  EXPECT_THAT(MakeServerCredentials(server),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("is not the key of tls_cert")));
}

TEST(TlsCredentialsTest, ClientTrustingTheCaIsServed) {
  ASSERT_NE(CertDir(), "");
  HealthServer server(ServerTls());
  EXPECT_EQ(server.Check(ClientTls()), grpc::StatusCode::OK);
}

TEST(TlsCredentialsTest, PlaintextClientIsRefused) {
  ASSERT_NE(CertDir(), "");
  HealthServer server(ServerTls());
  EXPECT_EQ(server.Check(ClientTlsOptions()), grpc::StatusCode::UNAVAILABLE);
}

TEST(TlsCredentialsTest, ClientTrustingAnotherCaRefusesTheServer) {
  ASSERT_NE(CertDir(), "");
  HealthServer server(ServerTls());
  EXPECT_EQ(server.Check(ClientTls("other_ca.pem")),
            grpc::StatusCode::UNAVAILABLE);
}

TEST(TlsCredentialsTest, TlsClientOfPlaintextServerFails) {
  ASSERT_NE(CertDir(), "");
  HealthServer server{ServerTlsOptions()};
  EXPECT_EQ(server.Check(ClientTls()), grpc::StatusCode::UNAVAILABLE);
}

TEST(TlsCredentialsTest, MutualTlsServesClientWithCertificateFromItsCa) {
  ASSERT_NE(CertDir(), "");
  HealthServer server(MutualServerTls());
  EXPECT_EQ(server.Check(ClientTlsWithCert("client")), grpc::StatusCode::OK);
}

TEST(TlsCredentialsTest, MutualTlsRefusesClientWithoutCertificate) {
  ASSERT_NE(CertDir(), "");
  HealthServer server(MutualServerTls());
  EXPECT_EQ(server.Check(ClientTls()), grpc::StatusCode::UNAVAILABLE);
}

TEST(TlsCredentialsTest, MutualTlsRefusesClientCertificateFromAnotherCa) {
  ASSERT_NE(CertDir(), "");
  HealthServer server(MutualServerTls());
  EXPECT_EQ(server.Check(ClientTlsWithCert("other_client")),
            grpc::StatusCode::UNAVAILABLE);
}

}  // namespace
}  // namespace common
