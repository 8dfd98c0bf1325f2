#include "trainer/rpc/oracle_client.h"

#include <gmock/gmock.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <grpcpp/server_context.h>
#include <gtest/gtest.h>

#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/status_matchers.h"
#include "proto/oracle.grpc.pb.h"
#include "trainer/rpc/grpc_clients.h"

namespace trainer {
namespace {

using ::common::IsOk;
using ::common::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

namespace pb = ::oracle::v1;

// An oracle that fails with scripted statuses first, then answers: label of
// id i is i % 10, budget 100, a 10-class evaluation. Records the token
// metadata of every call.
class FakeOracle final : public pb::LabelOracle::Service {
 public:
  void FailNext(grpc::Status status) {
    std::lock_guard<std::mutex> lock(mu_);
    failures_.push_back(std::move(status));
  }
  int calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
  }
  std::vector<std::string> tokens() {
    std::lock_guard<std::mutex> lock(mu_);
    return tokens_;
  }

  grpc::Status CreateExperiment(grpc::ServerContext* context,
                                const pb::CreateExperimentRequest* request,
                                pb::Experiment* response) override {
    if (grpc::Status s = Begin(context); !s.ok()) return s;
    response->set_id(7);
    response->set_name(request->name());
    response->set_label_budget(
        request->label_budget() == 0 ? 250 : request->label_budget());
    response->set_created(request->token() == "s3cret");
    return grpc::Status::OK;
  }

  grpc::Status QueryLabels(grpc::ServerContext* context,
                           const pb::QueryLabelsRequest* request,
                           pb::QueryLabelsResponse* response) override {
    if (grpc::Status s = Begin(context); !s.ok()) return s;
    for (int64_t id : request->ids()) response->add_labels(id % 10);
    response->set_newly_revealed(request->ids_size());
    response->set_remaining(100 - request->ids_size());
    response->set_audit_sequence(
        request->round() * 1000 +
        static_cast<int64_t>(request->strategy().size()));
    return grpc::Status::OK;
  }

  grpc::Status GetBudget(grpc::ServerContext* context,
                         const pb::GetBudgetRequest* request,
                         pb::BudgetStatus* response) override {
    if (grpc::Status s = Begin(context); !s.ok()) return s;
    response->set_experiment(request->experiment());
    response->set_label_budget(100);
    response->set_spent(40);
    response->set_remaining(60);
    response->set_requests_granted(3);
    response->set_requests_denied(1);
    response->set_evaluations(2);
    response->set_evaluation_cap(20);
    return grpc::Status::OK;
  }

  // Confusion cell (t, p) holds 100 * t + p; accuracy is the fraction of
  // predictions equal to 3; evaluations_left is 19.
  grpc::Status Evaluate(grpc::ServerContext* context,
                        const pb::EvaluateRequest* request,
                        pb::EvaluateResponse* response) override {
    if (grpc::Status s = Begin(context); !s.ok()) return s;
    int threes = 0;
    for (int32_t p : request->predictions()) threes += p == 3;
    response->set_accuracy(static_cast<double>(threes) /
                           request->predictions_size());
    {
      std::lock_guard<std::mutex> lock(mu_);
      response->set_num_classes(claimed_classes_);
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (!withhold_per_class_) {
      for (int t = 0; t < 10; ++t) response->add_per_class_accuracy(t / 10.0);
    }
    if (!withhold_confusion_) {
      for (int t = 0; t < 10; ++t) {
        for (int p = 0; p < 10; ++p) response->add_confusion(100 * t + p);
      }
    }
    response->set_evaluations_left(19);
    return grpc::Status::OK;
  }

  // Evaluate then leaves out per-class accuracy, the confusion matrix or
  // both (as the oracle does when it withholds them).
  void set_withheld(bool per_class, bool confusion) {
    std::lock_guard<std::mutex> lock(mu_);
    withhold_per_class_ = per_class;
    withhold_confusion_ = confusion;
  }

  // Evaluate then claims this many classes but still sends 10 x 10 counts.
  void set_claimed_classes(int classes) {
    std::lock_guard<std::mutex> lock(mu_);
    claimed_classes_ = classes;
  }

 private:
  grpc::Status Begin(grpc::ServerContext* context) {
    std::lock_guard<std::mutex> lock(mu_);
    ++calls_;
    const auto& metadata = context->client_metadata();
    auto it = metadata.find("x-oracle-token");
    tokens_.push_back(it == metadata.end()
                          ? "<none>"
                          : std::string(it->second.data(), it->second.size()));
    if (failures_.empty()) return grpc::Status::OK;
    grpc::Status status = failures_.front();
    failures_.pop_front();
    return status;
  }

  std::mutex mu_;
  std::deque<grpc::Status> failures_;
  int calls_ = 0;
  std::vector<std::string> tokens_;
  int claimed_classes_ = 10;
  bool withhold_per_class_ = false;
  bool withhold_confusion_ = false;
};

// Owns the fake server; clients talk to it in process with a fake clock.
class OracleClientTest : public testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.RegisterService(&oracle_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }
  void TearDown() override { server_->Shutdown(); }

  std::unique_ptr<OracleClient> Client(const std::string& token = "") {
    OracleClientOptions options;
    options.target = "fake-oracle:1";
    options.token = token;
    RetryEnv env;
    env.now = [this] { return now_; };
    env.sleep = [this](absl::Duration d) {
      sleeps_.push_back(d);
      now_ += d;
    };
    env.log = [this](const std::string& line) { log_.push_back(line); };
    return NewGrpcOracleClient(
        server_->InProcessChannel(grpc::ChannelArguments()), options, env);
  }

  FakeOracle oracle_;
  std::unique_ptr<grpc::Server> server_;
  absl::Time now_ = absl::UnixEpoch();
  std::vector<absl::Duration> sleeps_;
  std::vector<std::string> log_;
};

TEST_F(OracleClientTest, QueryLabelsRetriesUnavailableThenSucceeds) {
  oracle_.FailNext(grpc::Status(grpc::StatusCode::UNAVAILABLE, "restarting"));
  oracle_.FailNext(grpc::Status(grpc::StatusCode::UNAVAILABLE, "restarting"));
  absl::StatusOr<LabelBatch> batch =
      Client()->QueryLabels("exp", {12, 7, 59999}, "test", "kcenter", 2);
  ASSERT_THAT(batch, IsOk());
  EXPECT_THAT(batch->labels, ElementsAre(2, 7, 9));
  EXPECT_EQ(batch->newly_revealed, 3);
  EXPECT_EQ(batch->remaining, 97);
  EXPECT_EQ(batch->audit_sequence, 2007);
  EXPECT_EQ(oracle_.calls(), 3);
  EXPECT_THAT(sleeps_, ElementsAre(absl::Seconds(1), absl::Seconds(2)));
  EXPECT_THAT(log_, ElementsAre("oracle unreachable at fake-oracle:1, retrying "
                                "in 1s (attempt 1): restarting",
                                "oracle unreachable at fake-oracle:1, retrying "
                                "in 2s (attempt 2): restarting"));
}

TEST_F(OracleClientTest, RetriesDeadlineExceeded) {
  oracle_.FailNext(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "slow"));
  absl::StatusOr<BudgetInfo> budget = Client()->GetBudget("exp");
  ASSERT_THAT(budget, IsOk());
  EXPECT_EQ(budget->spent, 40);
  EXPECT_EQ(oracle_.calls(), 2);
}

TEST_F(OracleClientTest, DoesNotRetryResourceExhausted) {
  oracle_.FailNext(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                "3 ids not yet revealed, 2 labels left"));
  EXPECT_THAT(Client()->QueryLabels("exp", {1, 2, 3}, "test", "random", 1),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       "3 ids not yet revealed, 2 labels left"));
  EXPECT_EQ(oracle_.calls(), 1);
  EXPECT_THAT(sleeps_, IsEmpty());
  EXPECT_THAT(log_, IsEmpty());
}

TEST_F(OracleClientTest, DoesNotRetryInvalidArgumentOrUnauthenticated) {
  oracle_.FailNext(
      grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "dup id 4"));
  oracle_.FailNext(grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "no token"));
  std::unique_ptr<OracleClient> client = Client();
  EXPECT_THAT(client->QueryLabels("exp", {4, 4}, "test", "random", 1),
              StatusIs(absl::StatusCode::kInvalidArgument, "dup id 4"));
  EXPECT_THAT(client->GetBudget("exp"),
              StatusIs(absl::StatusCode::kUnauthenticated, "no token"));
  EXPECT_EQ(oracle_.calls(), 2);
  EXPECT_THAT(sleeps_, IsEmpty());
}

TEST_F(OracleClientTest, GivesUpAfterMaxTotalWait) {
  for (int i = 0; i < 100; ++i) {
    oracle_.FailNext(grpc::Status(grpc::StatusCode::UNAVAILABLE, "down"));
  }
  absl::StatusOr<BudgetInfo> budget = Client()->GetBudget("exp");
  // 1+2+4+8+16+30+30+30+30+30+30+30+30+29 seconds = 5 minutes.
  EXPECT_THAT(budget, StatusIs(absl::StatusCode::kUnavailable,
                               "oracle at fake-oracle:1 unreachable after 15 "
                               "attempts over 5m: down"));
  EXPECT_EQ(oracle_.calls(), 15);
  ASSERT_EQ(sleeps_.size(), 14u);
  EXPECT_EQ(sleeps_[5], absl::Seconds(30));
  EXPECT_EQ(sleeps_[13], absl::Seconds(29));
}

TEST_F(OracleClientTest, SendsTokenInMetadataOnEveryAttempt) {
  oracle_.FailNext(grpc::Status(grpc::StatusCode::UNAVAILABLE, "restarting"));
  std::unique_ptr<OracleClient> client = Client("s3cret");
  ASSERT_THAT(client->CreateExperiment("exp", 0, "s3cret"), IsOk());
  ASSERT_THAT(client->Evaluate("exp", {3, 1}, "test", "final"), IsOk());
  EXPECT_THAT(oracle_.tokens(), ElementsAre("s3cret", "s3cret", "s3cret"));
}

TEST_F(OracleClientTest, SendsNoTokenWhenNoneIsSet) {
  ASSERT_THAT(Client()->GetBudget("exp"), IsOk());
  EXPECT_THAT(oracle_.tokens(), ElementsAre("<none>"));
}

TEST_F(OracleClientTest, CreateExperimentCopiesTheReply) {
  absl::StatusOr<ExperimentInfo> info =
      Client("s3cret")->CreateExperiment("fashion-40", 0, "s3cret");
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(info->id, 7);
  EXPECT_EQ(info->name, "fashion-40");
  EXPECT_EQ(info->label_budget, 250);
  EXPECT_TRUE(info->created);
}

TEST_F(OracleClientTest, GetBudgetCopiesEveryField) {
  absl::StatusOr<BudgetInfo> budget = Client()->GetBudget("exp");
  ASSERT_THAT(budget, IsOk());
  EXPECT_EQ(budget->experiment, "exp");
  EXPECT_EQ(budget->label_budget, 100);
  EXPECT_EQ(budget->spent, 40);
  EXPECT_EQ(budget->remaining, 60);
  EXPECT_EQ(budget->requests_granted, 3);
  EXPECT_EQ(budget->requests_denied, 1);
  EXPECT_EQ(budget->evaluations, 2);
  EXPECT_EQ(budget->evaluation_cap, 20);
}

TEST_F(OracleClientTest, EvaluateReturnsRowMajorConfusion) {
  absl::StatusOr<Evaluation> evaluation =
      Client()->Evaluate("exp", {3, 3, 1, 3}, "test", "round 2");
  ASSERT_THAT(evaluation, IsOk());
  EXPECT_DOUBLE_EQ(evaluation->accuracy, 0.75);
  EXPECT_EQ(evaluation->num_classes, 10);
  ASSERT_EQ(evaluation->per_class_accuracy.size(), 10u);
  EXPECT_DOUBLE_EQ(evaluation->per_class_accuracy[4], 0.4);
  ASSERT_EQ(evaluation->confusion.size(), 100u);
  EXPECT_EQ(evaluation->confusion[3 * 10 + 5], 305);  // true 3, predicted 5
  EXPECT_EQ(evaluation->confusion[9 * 10 + 0], 900);
  EXPECT_EQ(evaluation->evaluations_left, 19);
}

TEST_F(OracleClientTest, EvaluateRejectsAMalformedReply) {
  oracle_.set_claimed_classes(9);
  EXPECT_THAT(Client()->Evaluate("exp", {3}, "test", ""),
              StatusIs(absl::StatusCode::kInternal,
                       "oracle at fake-oracle:1 returned an evaluation with 9 "
                       "classes, 10 per-class accuracies and 100 confusion "
                       "cells"));
}

TEST_F(OracleClientTest, EvaluateAcceptsPerClassResultsWithheldTogether) {
  oracle_.set_withheld(true, true);
  absl::StatusOr<Evaluation> evaluation =
      Client()->Evaluate("exp", {3, 3, 1, 3}, "test", "");
  ASSERT_THAT(evaluation, IsOk());
  EXPECT_DOUBLE_EQ(evaluation->accuracy, 0.75);
  EXPECT_EQ(evaluation->num_classes, 10);
  EXPECT_TRUE(evaluation->per_class_accuracy.empty());
  EXPECT_TRUE(evaluation->confusion.empty());

  oracle_.set_withheld(false, true);
  EXPECT_THAT(Client()->Evaluate("exp", {3}, "test", ""),
              StatusIs(absl::StatusCode::kInternal,
                       HasSubstr("10 per-class accuracies and 0 confusion")));
  oracle_.set_withheld(true, false);
  EXPECT_THAT(Client()->Evaluate("exp", {3}, "test", ""),
              StatusIs(absl::StatusCode::kInternal,
                       HasSubstr("0 per-class accuracies and 100 confusion")));
}

TEST(OracleClientFactoryTest, RejectsEmptyTarget) {
  EXPECT_THAT(
      MakeGrpcOracleClient(OracleClientOptions()),
      StatusIs(absl::StatusCode::kInvalidArgument, "oracle target is empty"));
}

TEST(OracleClientFactoryTest, RejectsTargetWithoutPort) {
  OracleClientOptions options;
  options.target = "127.0.0.1:";
  EXPECT_THAT(MakeGrpcOracleClient(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "oracle target \"127.0.0.1:\" has no port (use host:port)"));
}

TEST(OracleClientFactoryTest, RejectsMissingTlsCaFile) {
  OracleClientOptions options;
  options.target = "127.0.0.1:50051";
  options.tls.ca_file = "/nonexistent/ca.pem";
  EXPECT_THAT(MakeGrpcOracleClient(options),
              StatusIs(absl::StatusCode::kNotFound,
                       "tls_ca \"/nonexistent/ca.pem\": no such file"));
}

TEST(OracleClientFactoryTest, TalksToAServerOverTcpWithToken) {
  FakeOracle oracle;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  builder.RegisterService(&oracle);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(port, 0);
  OracleClientOptions options;
  options.target = "127.0.0.1:" + std::to_string(port);
  options.token = "tcp-token";
  absl::StatusOr<std::unique_ptr<OracleClient>> client =
      MakeGrpcOracleClient(options);
  ASSERT_THAT(client, IsOk());
  absl::StatusOr<LabelBatch> batch =
      (*client)->QueryLabels("exp", {5, 15}, "test", "random", 0);
  ASSERT_THAT(batch, IsOk());
  EXPECT_THAT(batch->labels, ElementsAre(5, 5));
  EXPECT_THAT(oracle.tokens(), ElementsAre("tcp-token"));
  server->Shutdown();
}

// A port on 127.0.0.1 that a server just gave back, so nothing listens on it;
// 0 if no server could start.
int PortNothingListensOn() {
  int port = 0;
  FakeOracle oracle;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  builder.RegisterService(&oracle);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server != nullptr) server->Shutdown();
  return port;
}

TEST(OracleClientFactoryTest, UnreachableOracleEndsUnavailable) {
  const int port = PortNothingListensOn();
  ASSERT_NE(port, 0);
  OracleClientOptions options;
  options.target = "127.0.0.1:" + std::to_string(port);
  options.retry.initial_backoff = absl::Milliseconds(10);
  options.retry.max_total_wait = absl::Milliseconds(50);
  absl::StatusOr<std::unique_ptr<OracleClient>> client =
      MakeGrpcOracleClient(options);
  ASSERT_THAT(client, IsOk());
  EXPECT_THAT((*client)->GetBudget("exp"),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("oracle at " + options.target +
                                 " unreachable after ")));
}

TEST(OracleClientFactoryTest, StopRequestedEndsTheRetriesCancelled) {
  const int port = PortNothingListensOn();
  ASSERT_NE(port, 0);
  std::atomic<int> polls{0};
  OracleClientOptions options;
  options.target = "127.0.0.1:" + std::to_string(port);
  options.retry.initial_backoff = absl::Seconds(1);
  options.retry.max_total_wait = absl::Seconds(2);  // ends a hang, if any
  // A stop arrives during the first wait: polled after the failed attempt,
  // then before each slice of the wait.
  options.stop_requested = [&polls] { return ++polls >= 3; };
  absl::StatusOr<std::unique_ptr<OracleClient>> client =
      MakeGrpcOracleClient(options);
  ASSERT_THAT(client, IsOk());
  const absl::Time start = absl::Now();
  EXPECT_THAT((*client)->GetBudget("exp"),
              StatusIs(absl::StatusCode::kCancelled,
                       HasSubstr("stopped while waiting for the oracle at " +
                                 options.target + " after 1 attempt: ")));
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  EXPECT_EQ(polls.load(), 3);
}

}  // namespace
}  // namespace trainer
