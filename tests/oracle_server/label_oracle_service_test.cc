#include "oracle_server/label_oracle_service.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/status_matchers.h"
#include "oracle_server/forwarding_label_store.h"
#include "oracle_server/label_oracle.h"
#include "oracle_server/sqlite_label_store.h"
#include "proto/grpc/health/v1/health.grpc.pb.h"
#include "proto/oracle.grpc.pb.h"
#include "tests/oracle_server/oracle_test_data.h"

namespace oracle_server {
namespace {

using ::common::IsOk;
using testdata::TestDir;
using testdata::TrainLabel;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr int64_t kTrainCount = 1000;
constexpr int64_t kTestCount = 50;

// Owns an oracle on an in-memory store and a server for it on 127.0.0.1:0.
class LabelOracleServiceTest : public ::testing::Test {
 public:
  void SetUp() override {
    auto store = SqliteLabelStore::Open(
        testdata::SyntheticStoreOptions(dir_.path(), kTrainCount, kTestCount));
    ASSERT_THAT(store, IsOk());
    auto oracle = LabelOracle::Create(Options(), WrapStore(*std::move(store)));
    ASSERT_THAT(oracle, IsOk());
    oracle_ = *std::move(oracle);
    ServerOptions server_options;
    server_options.host = "127.0.0.1";
    server_options.port = 0;
    auto running = StartOracleServer(server_options, oracle_.get());
    ASSERT_THAT(running, IsOk());
    server_ = *std::move(running);
    ASSERT_GT(server_.port, 0);
    stub_ = oracle::v1::LabelOracle::NewStub(
        server_.server->InProcessChannel(grpc::ChannelArguments()));
  }

  void TearDown() override {
    if (server_.server != nullptr) server_.server->Shutdown();
  }

  virtual OracleOptions Options() {
    OracleOptions options;
    options.eval_cap = 1;
    // 50 test images: per-class results come back only without the rule.
    options.evaluate_min_predictions_per_class = 0;
    return options;
  }

  // The store the oracle gets, made from the SQLite store.
  virtual std::unique_ptr<LabelStore> WrapStore(
      std::unique_ptr<LabelStore> store) {
    return store;
  }

  // CreateExperiment with `caller_token` in the metadata (the admin token or
  // an experiment's).
  grpc::Status CreateAs(const std::string& caller_token,
                        const std::string& name, int64_t budget,
                        const std::string& token,
                        oracle::v1::Experiment* experiment = nullptr) {
    grpc::ClientContext context;
    if (!caller_token.empty()) {
      context.AddMetadata(kTokenMetadataKey, caller_token);
    }
    oracle::v1::CreateExperimentRequest request;
    request.set_name(name);
    request.set_label_budget(budget);
    request.set_token(token);
    oracle::v1::Experiment ignored;
    return stub_->CreateExperiment(
        &context, request, experiment != nullptr ? experiment : &ignored);
  }

  std::shared_ptr<grpc::Channel> TcpChannel() {
    return grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_.port),
                               grpc::InsecureChannelCredentials());
  }

  grpc::Status CreateExperiment(const std::string& name, int64_t budget,
                                const std::string& token = "",
                                oracle::v1::Experiment* experiment = nullptr) {
    grpc::ClientContext context;
    oracle::v1::CreateExperimentRequest request;
    request.set_name(name);
    request.set_label_budget(budget);
    request.set_token(token);
    oracle::v1::Experiment ignored;
    return stub_->CreateExperiment(
        &context, request, experiment != nullptr ? experiment : &ignored);
  }

  grpc::Status QueryLabels(const std::string& experiment,
                           const std::vector<int64_t>& ids,
                           const std::string& token,
                           oracle::v1::QueryLabelsResponse* response) {
    grpc::ClientContext context;
    if (!token.empty()) context.AddMetadata(kTokenMetadataKey, token);
    oracle::v1::QueryLabelsRequest request;
    request.set_experiment(experiment);
    request.mutable_ids()->Add(ids.begin(), ids.end());
    request.set_client("service-test");
    return stub_->QueryLabels(&context, request, response);
  }

  grpc::Status GetBudget(const std::string& experiment,
                         const std::string& token,
                         oracle::v1::BudgetStatus* response) {
    grpc::ClientContext context;
    if (!token.empty()) context.AddMetadata(kTokenMetadataKey, token);
    oracle::v1::GetBudgetRequest request;
    request.set_experiment(experiment);
    return stub_->GetBudget(&context, request, response);
  }

  grpc::Status Evaluate(const std::string& experiment,
                        const std::vector<int32_t>& predictions,
                        const std::string& token,
                        oracle::v1::EvaluateResponse* response) {
    grpc::ClientContext context;
    if (!token.empty()) context.AddMetadata(kTokenMetadataKey, token);
    oracle::v1::EvaluateRequest request;
    request.set_experiment(experiment);
    request.mutable_predictions()->Add(predictions.begin(), predictions.end());
    return stub_->Evaluate(&context, request, response);
  }

  grpc::Status ListQueries(const std::string& experiment,
                           const std::string& token,
                           oracle::v1::ListQueriesResponse* response) {
    grpc::ClientContext context;
    if (!token.empty()) context.AddMetadata(kTokenMetadataKey, token);
    oracle::v1::ListQueriesRequest request;
    request.set_experiment(experiment);
    return stub_->ListQueries(&context, request, response);
  }

  TestDir dir_;
  std::unique_ptr<LabelOracle> oracle_;
  RunningServer server_;
  std::unique_ptr<oracle::v1::LabelOracle::Stub> stub_;
};

TEST_F(LabelOracleServiceTest, EveryRpcSucceedsInProcess) {
  oracle::v1::Experiment experiment;
  ASSERT_TRUE(CreateExperiment("e", 3, "", &experiment).ok());
  EXPECT_TRUE(experiment.created());
  EXPECT_EQ(experiment.name(), "e");
  EXPECT_EQ(experiment.label_budget(), 3);

  oracle::v1::QueryLabelsResponse query;
  grpc::Status status = QueryLabels("e", {5, 6}, "", &query);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_THAT(query.labels(), ElementsAre(TrainLabel(5), TrainLabel(6)));
  EXPECT_EQ(query.newly_revealed(), 2);
  EXPECT_EQ(query.remaining(), 1);
  EXPECT_EQ(query.audit_sequence(), 1);

  oracle::v1::BudgetStatus budget;
  ASSERT_TRUE(GetBudget("e", "", &budget).ok());
  EXPECT_EQ(budget.spent(), 2);
  EXPECT_EQ(budget.remaining(), 1);
  EXPECT_EQ(budget.requests_granted(), 1);
  EXPECT_EQ(budget.evaluation_cap(), 1);

  std::vector<int32_t> predictions;
  for (int64_t i = 0; i < kTestCount; ++i) {
    predictions.push_back(testdata::TestLabel(i));
  }
  oracle::v1::EvaluateResponse evaluation;
  ASSERT_TRUE(Evaluate("e", predictions, "", &evaluation).ok());
  EXPECT_DOUBLE_EQ(evaluation.accuracy(), 1.0);
  EXPECT_EQ(evaluation.num_classes(), 10);
  EXPECT_EQ(evaluation.confusion_size(), 100);
  EXPECT_EQ(evaluation.evaluations_left(), 0);

  oracle::v1::ListQueriesResponse rows;
  ASSERT_TRUE(ListQueries("e", "", &rows).ok());
  ASSERT_EQ(rows.rows_size(), 2);
  EXPECT_EQ(rows.rows(0).client(), "service-test");
  EXPECT_THAT(rows.rows(0).ids_revealed(), ElementsAre(5, 6));
  EXPECT_EQ(rows.rows(1).kind(), "evaluate");
  EXPECT_EQ(rows.next_after_sequence(), 0);
}

TEST_F(LabelOracleServiceTest, ErrorCodesReachTheClientUnchanged) {
  ASSERT_TRUE(CreateExperiment("e", 2).ok());
  oracle::v1::QueryLabelsResponse query;

  grpc::Status status = QueryLabels("e", {}, "", &query);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("ids is empty"));

  status = QueryLabels("e", {1, 1}, "", &query);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "id 1 appears twice (at index 0 and 1)");

  status = QueryLabels("e", {kTrainCount}, "", &query);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "id 1000 at index 0 is not in [0, 1000)");

  status = QueryLabels("ghost", {1}, "", &query);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);

  status = QueryLabels("e", {1, 2, 3}, "", &query);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(status.error_message(), "requested 3 new labels but only 2 remain");

  status = CreateExperiment("e", 5);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ALREADY_EXISTS);

  status = CreateExperiment("bad name", 5);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  oracle::v1::EvaluateResponse evaluation;
  status = Evaluate("e", {1, 2, 3}, "", &evaluation);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("expected 50 predictions"));
  const std::vector<int32_t> zeros(kTestCount, 0);
  ASSERT_TRUE(Evaluate("e", zeros, "", &evaluation).ok());
  status = Evaluate("e", zeros, "", &evaluation);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);

  oracle::v1::BudgetStatus budget;
  status = GetBudget("ghost", "", &budget);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  ASSERT_TRUE(GetBudget("e", "", &budget).ok());
  EXPECT_EQ(budget.spent(), 0);
  EXPECT_EQ(budget.requests_denied(), 4);
  EXPECT_EQ(budget.evaluations(), 1);
}

TEST_F(LabelOracleServiceTest, TokenComesFromMetadata) {
  ASSERT_TRUE(CreateExperiment("secure", 5, "tok").ok());
  oracle::v1::QueryLabelsResponse query;
  oracle::v1::BudgetStatus budget;
  oracle::v1::EvaluateResponse evaluation;
  oracle::v1::ListQueriesResponse rows;
  const std::vector<int32_t> zeros(kTestCount, 0);
  for (const std::string token : {"", "wrong"}) {
    SCOPED_TRACE("token \"" + token + "\"");
    EXPECT_EQ(QueryLabels("secure", {1}, token, &query).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_EQ(GetBudget("secure", token, &budget).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_EQ(Evaluate("secure", zeros, token, &evaluation).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_EQ(ListQueries("secure", token, &rows).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  EXPECT_EQ(CreateExperiment("secure", 0).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(CreateExperiment("secure", 0, "tok").ok());

  grpc::Status status = QueryLabels("secure", {1}, "tok", &query);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_THAT(query.labels(), ElementsAre(TrainLabel(1)));
  ASSERT_TRUE(GetBudget("secure", "tok", &budget).ok());
  EXPECT_EQ(budget.spent(), 1);
  ASSERT_TRUE(ListQueries("secure", "tok", &rows).ok());
  EXPECT_EQ(rows.rows_size(), 5);  // 2 unauthenticated queries, 2
                                   // unauthenticated evaluations, 1 grant.
}

TEST_F(LabelOracleServiceTest, OpenServerListsOnlyReadableExperiments) {
  ASSERT_TRUE(CreateExperiment("open", 5).ok());
  ASSERT_TRUE(CreateExperiment("secure", 5, "tok").ok());
  oracle::v1::QueryLabelsResponse query;
  ASSERT_TRUE(QueryLabels("open", {1}, "", &query).ok());
  ASSERT_TRUE(QueryLabels("secure", {2}, "tok", &query).ok());
  ASSERT_TRUE(QueryLabels("open", {3}, "", &query).ok());

  oracle::v1::ListQueriesResponse rows;
  ASSERT_TRUE(ListQueries("", "", &rows).ok());
  ASSERT_EQ(rows.rows_size(), 2);
  EXPECT_EQ(rows.rows(0).experiment(), "open");
  EXPECT_EQ(rows.rows(1).sequence(), 3);
  EXPECT_EQ(rows.rows(0).role(), "open");

  ASSERT_TRUE(ListQueries("", "tok", &rows).ok());
  ASSERT_EQ(rows.rows_size(), 3);
  EXPECT_EQ(rows.rows(1).experiment(), "secure");
}

TEST(PeerIdentityTest, DropsThePort) {
  EXPECT_EQ(PeerIdentity("ipv4:10.0.0.7:5000"), "ipv4:10.0.0.7");
  EXPECT_EQ(PeerIdentity("ipv6:[::1]:5000"), "ipv6:[::1]");
  EXPECT_EQ(PeerIdentity("ipv4:"), "ipv4:");
  EXPECT_EQ(PeerIdentity("unix:/tmp/oracle.sock"), "unix:/tmp/oracle.sock");
  EXPECT_EQ(PeerIdentity(""), "");
}

constexpr char kAdminToken[] = "admin-secret";

// The same server with an admin token: operator and client roles.
class AdminLabelOracleServiceTest : public LabelOracleServiceTest {
 protected:
  OracleOptions Options() override {
    OracleOptions options = LabelOracleServiceTest::Options();
    options.eval_cap = 5;
    options.admin_token = kAdminToken;
    return options;
  }
};

TEST_F(AdminLabelOracleServiceTest, OnlyTheOperatorCreates) {
  oracle::v1::Experiment experiment;
  ASSERT_TRUE(CreateAs(kAdminToken, "exp1", 5, "t1", &experiment).ok());
  EXPECT_TRUE(experiment.created());

  // No token: UNAUTHENTICATED; any other token: PERMISSION_DENIED.
  grpc::Status status = CreateAs("", "exp2", 60000, "");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(status.error_message(), HasSubstr("admin token"));
  status = CreateAs("", "exp2", 60000, "mine");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  status = CreateAs("t1", "exp2", 60000, "");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  status = CreateAs("admin-secreT", "exp2", 60000, "t2");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  oracle::v1::BudgetStatus budget;
  EXPECT_EQ(GetBudget("exp2", kAdminToken, &budget).error_code(),
            grpc::StatusCode::NOT_FOUND);

  // The client joins its experiment but cannot raise its budget.
  EXPECT_EQ(CreateAs("t1", "exp1", 60000, "t1").error_code(),
            grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(CreateAs("", "exp1", 0, "wrong").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  ASSERT_TRUE(CreateAs("", "exp1", 5, "t1", &experiment).ok());
  EXPECT_FALSE(experiment.created());
  ASSERT_TRUE(CreateAs("t1", "exp1", 0, "", &experiment).ok());
  EXPECT_EQ(experiment.label_budget(), 5);
  ASSERT_TRUE(GetBudget("exp1", "t1", &budget).ok());
  EXPECT_EQ(budget.label_budget(), 5);

  // The operator may join without the experiment token, but not re-create it
  // with another token.
  EXPECT_TRUE(CreateAs(kAdminToken, "exp1", 0, "").ok());
  EXPECT_EQ(CreateAs(kAdminToken, "exp1", 0, "t9").error_code(),
            grpc::StatusCode::ALREADY_EXISTS);
}

TEST_F(AdminLabelOracleServiceTest, ClientUsesOnlyItsOwnExperiment) {
  ASSERT_TRUE(CreateAs(kAdminToken, "exp1", 5, "t1").ok());
  ASSERT_TRUE(CreateAs(kAdminToken, "exp2", 5, "t2").ok());
  ASSERT_TRUE(CreateAs(kAdminToken, "bare", 5, "").ok());
  oracle::v1::QueryLabelsResponse query;
  grpc::Status status = QueryLabels("exp1", {1, 2}, "t1", &query);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_TRUE(QueryLabels("exp2", {3}, "t2", &query).ok());
  ASSERT_TRUE(QueryLabels("exp2", {4}, kAdminToken, &query).ok());
  std::vector<int32_t> zeros(kTestCount, 0);
  oracle::v1::EvaluateResponse evaluation;
  ASSERT_TRUE(Evaluate("exp1", zeros, "t1", &evaluation).ok());

  oracle::v1::BudgetStatus budget;
  oracle::v1::ListQueriesResponse rows;
  EXPECT_EQ(QueryLabels("exp2", {5}, "t1", &query).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(GetBudget("exp2", "t1", &budget).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(ListQueries("exp2", "t1", &rows).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  // An experiment without a token is the operator's alone.
  EXPECT_EQ(QueryLabels("bare", {1}, "", &query).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(GetBudget("bare", "t1", &budget).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(GetBudget("bare", kAdminToken, &budget).ok());

  // Listing everything: the client sees its own rows, the operator all.
  ASSERT_TRUE(ListQueries("", "t1", &rows).ok());
  std::vector<std::string> experiments;
  for (const auto& row : rows.rows()) experiments.push_back(row.experiment());
  EXPECT_THAT(experiments, ElementsAre("exp1", "exp1"));
  EXPECT_EQ(rows.rows(0).role(), "client");
  ASSERT_TRUE(ListQueries("", "", &rows).ok());
  EXPECT_EQ(rows.rows_size(), 0);
  ASSERT_TRUE(ListQueries("", kAdminToken, &rows).ok());
  ASSERT_EQ(rows.rows_size(), 6);  // 3 granted, 1 evaluation, 2 denied.
  EXPECT_EQ(rows.rows(2).role(), "admin");
  EXPECT_EQ(rows.rows(2).experiment(), "exp2");
  EXPECT_EQ(rows.rows(4).role(), "client");
  EXPECT_EQ(rows.rows(4).outcome(), oracle::v1::DENIED_INVALID);
  ASSERT_TRUE(ListQueries("exp2", kAdminToken, &rows).ok());
  EXPECT_EQ(rows.rows_size(), 3);
}

TEST_F(AdminLabelOracleServiceTest, AuditRowsRecordThePeerOverTcp) {
  ASSERT_TRUE(CreateAs(kAdminToken, "tcp", 5, "t").ok());
  auto stub = oracle::v1::LabelOracle::NewStub(TcpChannel());
  grpc::ClientContext context;
  context.AddMetadata(kTokenMetadataKey, "t");
  oracle::v1::QueryLabelsRequest request;
  request.set_experiment("tcp");
  request.add_ids(1);
  oracle::v1::QueryLabelsResponse response;
  ASSERT_TRUE(stub->QueryLabels(&context, request, &response).ok());
  oracle::v1::ListQueriesResponse rows;
  ASSERT_TRUE(ListQueries("tcp", "t", &rows).ok());
  ASSERT_EQ(rows.rows_size(), 1);
  EXPECT_EQ(rows.rows(0).peer(), "ipv4:127.0.0.1");
  EXPECT_EQ(rows.rows(0).role(), "client");
}

TEST_F(LabelOracleServiceTest, ServesOverTcpWithLargeMessages) {
  auto stub = oracle::v1::LabelOracle::NewStub(TcpChannel());
  {
    grpc::ClientContext context;
    oracle::v1::CreateExperimentRequest request;
    request.set_name("tcp");
    request.set_label_budget(10);
    oracle::v1::Experiment experiment;
    grpc::Status status =
        stub->CreateExperiment(&context, request, &experiment);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_TRUE(experiment.created());
  }
  {
    grpc::ClientContext context;
    oracle::v1::QueryLabelsRequest request;
    request.set_experiment("tcp");
    request.add_ids(42);
    oracle::v1::QueryLabelsResponse response;
    grpc::Status status = stub->QueryLabels(&context, request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_THAT(response.labels(), ElementsAre(TrainLabel(42)));
    EXPECT_EQ(response.remaining(), 9);
  }
  {
    // About 5 MiB, over gRPC's default 4 MiB limit: the oracle itself
    // answers, not the transport.
    grpc::ClientContext context;
    oracle::v1::EvaluateRequest request;
    request.set_experiment("tcp");
    request.mutable_predictions()->Resize(5 << 20, 1);
    ASSERT_GT(request.ByteSizeLong(), 4u << 20);
    oracle::v1::EvaluateResponse response;
    grpc::Status status = stub->Evaluate(&context, request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(),
                HasSubstr(absl::StrCat("got ", 5 << 20)));
  }
}

TEST_F(LabelOracleServiceTest, HealthCheckIsServing) {
  auto health = grpc::health::v1::Health::NewStub(TcpChannel());
  grpc::ClientContext context;
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status status = health->Check(&context, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);
}

// Many client threads, each on its own TCP connection, ask for single ids of
// one experiment with a budget of 100: exactly 100 calls are granted, each
// with the right label, and every call has its audit row.
void ExpectConcurrentQueriesStayWithinTheBudget(LabelOracleServiceTest& test) {
  constexpr int kClients = 16;
  constexpr int kCallsPerClient = 10;
  constexpr int64_t kBudget = 100;
  ASSERT_TRUE(test.CreateExperiment("race", kBudget).ok());
  absl::Mutex mu;
  std::set<int64_t> granted;
  int64_t exhausted = 0;
  std::vector<std::string> unexpected;
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      auto stub = oracle::v1::LabelOracle::NewStub(test.TcpChannel());
      for (int k = 0; k < kCallsPerClient; ++k) {
        const int64_t id = c * kCallsPerClient + k;
        grpc::ClientContext context;
        oracle::v1::QueryLabelsRequest request;
        request.set_experiment("race");
        request.add_ids(id);
        oracle::v1::QueryLabelsResponse response;
        const grpc::Status status =
            stub->QueryLabels(&context, request, &response);
        absl::MutexLock lock(&mu);
        if (status.ok() && response.labels_size() == 1 &&
            response.labels(0) == TrainLabel(id) &&
            response.newly_revealed() == 1) {
          granted.insert(id);
        } else if (status.error_code() ==
                   grpc::StatusCode::RESOURCE_EXHAUSTED) {
          ++exhausted;
        } else {
          unexpected.push_back(absl::StrCat(id, ": ", status.error_code(), " ",
                                            status.error_message()));
        }
      }
    });
  }
  for (std::thread& client : clients) client.join();
  EXPECT_THAT(unexpected, ::testing::IsEmpty());
  EXPECT_EQ(granted.size(), kBudget);
  EXPECT_EQ(exhausted, kClients * kCallsPerClient - kBudget);

  oracle::v1::BudgetStatus budget;
  ASSERT_TRUE(test.GetBudget("race", "", &budget).ok());
  EXPECT_EQ(budget.spent(), kBudget);
  EXPECT_EQ(budget.remaining(), 0);
  EXPECT_EQ(budget.requests_granted(), kBudget);
  EXPECT_EQ(budget.requests_denied(), kClients * kCallsPerClient - kBudget);
  oracle::v1::ListQueriesResponse rows;
  ASSERT_TRUE(test.ListQueries("race", "", &rows).ok());
  EXPECT_EQ(rows.rows_size(), kClients * kCallsPerClient);
}

// A request the oracle refuses still writes its DENIED_INVALID row before
// the client gets the error.
void ExpectInvalidQueryIsAudited(LabelOracleServiceTest& test) {
  ASSERT_TRUE(test.CreateExperiment("bad", 5).ok());
  oracle::v1::QueryLabelsResponse response;
  grpc::Status status = test.QueryLabels("bad", {3, 3}, "", &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "id 3 appears twice (at index 0 and 1)");
  oracle::v1::ListQueriesResponse rows;
  ASSERT_TRUE(test.ListQueries("bad", "", &rows).ok());
  ASSERT_EQ(rows.rows_size(), 1);
  EXPECT_EQ(rows.rows(0).outcome(), oracle::v1::DENIED_INVALID);
  EXPECT_EQ(rows.rows(0).detail(),
            "INVALID_ARGUMENT: id 3 appears twice (at index 0 and 1)");
  EXPECT_THAT(rows.rows(0).ids_asked(), ElementsAre(3, 3));
  EXPECT_EQ(rows.rows(0).client(), "service-test");
}

// Concurrent evaluations stop at the experiment's cap (`cap`), each granted
// one with a different evaluations_left.
void ExpectConcurrentEvaluationsStopAtTheCap(LabelOracleServiceTest& test,
                                             int cap) {
  constexpr int kClients = 8;
  ASSERT_TRUE(test.CreateExperiment("eval", 5).ok());
  const std::vector<int32_t> predictions(kTestCount, 0);
  absl::Mutex mu;
  std::multiset<int64_t> left;
  int exhausted = 0;
  std::vector<std::string> unexpected;
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&] {
      auto stub = oracle::v1::LabelOracle::NewStub(test.TcpChannel());
      grpc::ClientContext context;
      oracle::v1::EvaluateRequest request;
      request.set_experiment("eval");
      request.mutable_predictions()->Add(predictions.begin(),
                                         predictions.end());
      oracle::v1::EvaluateResponse response;
      const grpc::Status status = stub->Evaluate(&context, request, &response);
      absl::MutexLock lock(&mu);
      if (status.ok()) {
        left.insert(response.evaluations_left());
      } else if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED &&
                 status.error_message() ==
                     absl::StrCat("experiment \"eval\" has used all ", cap,
                                  " evaluations")) {
        ++exhausted;
      } else {
        unexpected.push_back(
            absl::StrCat(status.error_code(), " ", status.error_message()));
      }
    });
  }
  for (std::thread& client : clients) client.join();
  EXPECT_THAT(unexpected, ::testing::IsEmpty());
  std::multiset<int64_t> expected_left;
  for (int i = 0; i < cap; ++i) expected_left.insert(i);
  EXPECT_EQ(left, expected_left);
  EXPECT_EQ(exhausted, kClients - cap);
}

TEST_F(LabelOracleServiceTest, ConcurrentQueriesStayWithinTheBudget) {
  ExpectConcurrentQueriesStayWithinTheBudget(*this);
}

TEST_F(LabelOracleServiceTest, InvalidQueryIsAudited) {
  ExpectInvalidQueryIsAudited(*this);
}

TEST_F(LabelOracleServiceTest, ConcurrentEvaluationsStopAtTheCap) {
  ExpectConcurrentEvaluationsStopAtTheCap(*this, /*cap=*/1);
}

// The same server with an evaluation cap of 3 (the store completes every
// write on its committer thread, so calls are answered from there).
class CapThreeLabelOracleServiceTest : public LabelOracleServiceTest {
 protected:
  OracleOptions Options() override {
    OracleOptions options = LabelOracleServiceTest::Options();
    options.eval_cap = 3;
    return options;
  }
};

TEST_F(CapThreeLabelOracleServiceTest, ConcurrentEvaluationsStopAtTheCap) {
  ExpectConcurrentEvaluationsStopAtTheCap(*this, /*cap=*/3);
}

TEST_F(CapThreeLabelOracleServiceTest, EveryRpcSucceedsOverTcp) {
  auto stub = oracle::v1::LabelOracle::NewStub(TcpChannel());
  ASSERT_TRUE(CreateExperiment("e", 3).ok());
  grpc::ClientContext context;
  oracle::v1::QueryLabelsRequest request;
  request.set_experiment("e");
  request.add_ids(7);
  oracle::v1::QueryLabelsResponse response;
  grpc::Status status = stub->QueryLabels(&context, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_THAT(response.labels(), ElementsAre(TrainLabel(7)));
  EXPECT_EQ(response.remaining(), 2);
  EXPECT_EQ(response.audit_sequence(), 1);
  std::vector<int32_t> predictions;
  for (int64_t i = 0; i < kTestCount; ++i) {
    predictions.push_back(testdata::TestLabel(i));
  }
  oracle::v1::EvaluateResponse evaluation;
  status = Evaluate("e", predictions, "", &evaluation);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_DOUBLE_EQ(evaluation.accuracy(), 1.0);
  EXPECT_EQ(evaluation.evaluations_left(), 2);
}

// Forwards to the wrapped store, except that RevealAsync holds each request
// and its `done` until Release(), which runs them on the releasing thread: a
// store whose writes finish after the gRPC handler has returned, on a thread
// of its own.
class HeldRevealStore final : public ForwardingLabelStore {
 public:
  explicit HeldRevealStore(std::unique_ptr<LabelStore> store)
      : ForwardingLabelStore(std::move(store)) {}

  // True once `n` reveals are held (false if that takes over 10 s).
  bool AwaitHeld(int n) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return static_cast<int>(held_.size()) >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(10));
  }

  // Decides every held reveal in arrival order and calls its `done`.
  void Release() {
    std::vector<std::pair<RevealRequest, RevealDone>> held;
    {
      absl::MutexLock lock(&mu_);
      held.swap(held_);
    }
    for (auto& [request, done] : held) {
      std::move(done)(wrapped().Reveal(request));
    }
  }

  // Releases what is held and holds nothing from now on.
  void StopHolding() {
    {
      absl::MutexLock lock(&mu_);
      holding_ = false;
    }
    Release();
  }

  void RevealAsync(const RevealRequest& request, RevealDone done) override {
    {
      absl::MutexLock lock(&mu_);
      if (holding_) {
        held_.emplace_back(request, std::move(done));
        return;
      }
    }
    std::move(done)(wrapped().Reveal(request));
  }

 private:
  absl::Mutex mu_;
  std::vector<std::pair<RevealRequest, RevealDone>> held_ ABSL_GUARDED_BY(mu_);
  bool holding_ ABSL_GUARDED_BY(mu_) = true;
};

class HeldRevealServiceTest : public LabelOracleServiceTest {
 protected:
  std::unique_ptr<LabelStore> WrapStore(
      std::unique_ptr<LabelStore> store) override {
    auto held = std::make_unique<HeldRevealStore>(std::move(store));
    held_ = held.get();
    return held;
  }

  HeldRevealStore* held_ = nullptr;  // owned by the oracle
};

// More QueryLabels calls wait for their store writes than gRPC has callback
// threads (two on two cores), and the server still answers other calls; each
// waiting call is answered when its write finishes on another thread.
TEST_F(HeldRevealServiceTest, PendingWritesParkNoGrpcThread) {
  constexpr int kPending = 6;
  ASSERT_TRUE(CreateExperiment("held", 10).ok());
  std::vector<grpc::Status> statuses(kPending);
  std::vector<oracle::v1::QueryLabelsResponse> responses(kPending);
  std::vector<std::thread> clients;
  for (int i = 0; i < kPending; ++i) {
    clients.emplace_back([&, i] {
      auto stub = oracle::v1::LabelOracle::NewStub(TcpChannel());
      grpc::ClientContext context;
      context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
      oracle::v1::QueryLabelsRequest request;
      request.set_experiment("held");
      request.add_ids(100 + i);
      statuses[i] = stub->QueryLabels(&context, request, &responses[i]);
    });
  }
  // The deadlines and StopHolding only matter if handlers do block: the test
  // then fails instead of hanging.
  const bool all_held = held_->AwaitHeld(kPending);
  oracle::v1::BudgetStatus budget;
  grpc::Status while_held;
  {
    auto stub = oracle::v1::LabelOracle::NewStub(TcpChannel());
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    oracle::v1::GetBudgetRequest request;
    request.set_experiment("held");
    while_held = stub->GetBudget(&context, request, &budget);
  }
  held_->Release();
  for (std::thread& client : clients) client.join();
  held_->StopHolding();
  EXPECT_TRUE(all_held);
  ASSERT_TRUE(while_held.ok()) << while_held.error_message();
  EXPECT_EQ(budget.spent(), 0);
  for (int i = 0; i < kPending; ++i) {
    ASSERT_TRUE(statuses[i].ok()) << i << ": " << statuses[i].error_message();
    EXPECT_THAT(responses[i].labels(), ElementsAre(TrainLabel(100 + i)));
    EXPECT_EQ(responses[i].newly_revealed(), 1);
  }
  ASSERT_TRUE(GetBudget("held", "", &budget).ok());
  EXPECT_EQ(budget.spent(), kPending);
}

TEST(StartOracleServerTest, PortInUseIsUnavailable) {
  TestDir dir;
  auto store = SqliteLabelStore::Open(
      testdata::SyntheticStoreOptions(dir.path(), kTrainCount, kTestCount));
  ASSERT_THAT(store, IsOk());
  auto oracle = LabelOracle::Create(OracleOptions(), *std::move(store));
  ASSERT_THAT(oracle, IsOk());
  ServerOptions options;
  options.host = "127.0.0.1";
  options.port = 0;
  auto first = StartOracleServer(options, oracle->get());
  ASSERT_THAT(first, IsOk());
  options.port = first->port;
  EXPECT_THAT(
      StartOracleServer(options, oracle->get()),
      common::StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr(absl::StrCat("127.0.0.1:", first->port))));
  first->server->Shutdown();
}

}  // namespace
}  // namespace oracle_server
