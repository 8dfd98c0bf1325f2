#include "trainer/rpc/selector_client.h"

#include <gmock/gmock.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <grpcpp/server_context.h>
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/status_matchers.h"
#include "proto/selector.grpc.pb.h"
#include "trainer/rpc/grpc_clients.h"

namespace trainer {
namespace {

using ::common::IsOk;
using ::common::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

namespace pb = ::selector::v1;

// Answers every Select with the ids (or the error) it was given, and keeps the
// last request.
class FakeSelector final : public pb::Selector::Service {
 public:
  void Answer(std::vector<int64_t> ids) {
    std::lock_guard<std::mutex> lock(mu_);
    ids_ = std::move(ids);
  }
  void Fail(grpc::Status status) {
    std::lock_guard<std::mutex> lock(mu_);
    status_ = std::move(status);
  }
  int calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
  }
  pb::SelectRequest last_request() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_request_;
  }

  grpc::Status Select(grpc::ServerContext*, const pb::SelectRequest* request,
                      pb::SelectResponse* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++calls_;
    last_request_ = *request;
    if (!status_.ok()) return status_;
    response->mutable_ids()->Add(ids_.begin(), ids_.end());
    return grpc::Status::OK;
  }

 private:
  std::mutex mu_;
  std::vector<int64_t> ids_;
  grpc::Status status_;
  int calls_ = 0;
  pb::SelectRequest last_request_;
};

// Pool ids 10..14, 2-d embeddings, 3 classes, 11 labelled; asks for 2.
SelectorQuery SmallQuery() {
  SelectorQuery query;
  query.count = 2;
  query.pool_ids = {10, 11, 12, 13, 14};
  query.embedding_dim = 2;
  query.embeddings = {0, 1, 1, 0, 2, 2, 3, 3, 4, 4};
  query.num_classes = 3;
  query.probabilities = std::vector<float>(15, 1.0f / 3);
  query.labelled_ids = {11, 99};
  query.labelled_labels = {3, 7};
  query.round = 4;
  query.seed = 0xfeedface12345678;
  return query;
}

// Owns the fake selector; the client reaches it in process.
class SelectorClientTest : public testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.RegisterService(&selector_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    SelectorClientOptions options;
    options.target = "fake-selector:2";
    RetryEnv env = RetryEnv::Real();
    env.sleep = [this](absl::Duration d) { sleeps_.push_back(d); };
    client_ = NewGrpcSelectorClient(
        server_->InProcessChannel(grpc::ChannelArguments()), options, env);
  }
  void TearDown() override { server_->Shutdown(); }

  FakeSelector selector_;
  std::unique_ptr<grpc::Server> server_;
  std::vector<absl::Duration> sleeps_;
  std::unique_ptr<SelectorClient> client_;
};

TEST_F(SelectorClientTest, SendsTheQueryAndReturnsTheIds) {
  selector_.Answer({14, 10});
  absl::StatusOr<std::vector<int64_t>> ids = client_->Select(SmallQuery());
  ASSERT_THAT(ids, IsOk());
  EXPECT_THAT(*ids, ElementsAre(14, 10));
  const pb::SelectRequest request = selector_.last_request();
  EXPECT_EQ(request.count(), 2);
  EXPECT_THAT(request.pool_ids(), ElementsAre(10, 11, 12, 13, 14));
  EXPECT_EQ(request.embedding_dim(), 2);
  EXPECT_THAT(request.embeddings(), ElementsAre(0, 1, 1, 0, 2, 2, 3, 3, 4, 4));
  EXPECT_EQ(request.num_classes(), 3);
  EXPECT_EQ(request.probabilities_size(), 15);
  EXPECT_THAT(request.labelled_ids(), ElementsAre(11, 99));
  EXPECT_THAT(request.labelled_labels(), ElementsAre(3, 7));
  EXPECT_EQ(request.round(), 4);
  EXPECT_EQ(request.seed(), 0xfeedface12345678u);
}

TEST_F(SelectorClientTest, RejectsTooFewIds) {
  selector_.Answer({14});
  EXPECT_THAT(client_->Select(SmallQuery()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "selector at fake-selector:2: returned 1 ids, "
                       "expected 2"));
}

TEST_F(SelectorClientTest, RejectsAnIdOutsideThePool) {
  selector_.Answer({14, 15});
  EXPECT_THAT(client_->Select(SmallQuery()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "selector at fake-selector:2: returned id 15 which is "
                       "not in the pool"));
}

TEST_F(SelectorClientTest, RejectsALabelledId) {
  selector_.Answer({11, 12});
  EXPECT_THAT(client_->Select(SmallQuery()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "selector at fake-selector:2: returned id 11 which is "
                       "already labelled"));
}

TEST_F(SelectorClientTest, RejectsARepeatedId) {
  selector_.Answer({12, 12});
  EXPECT_THAT(client_->Select(SmallQuery()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "selector at fake-selector:2: returned id 12 more than "
                       "once"));
}

TEST_F(SelectorClientTest, PassesTheSelectorsErrorThrough) {
  selector_.Fail(
      grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "needs probabilities"));
  EXPECT_THAT(
      client_->Select(SmallQuery()),
      StatusIs(absl::StatusCode::kInvalidArgument, "needs probabilities"));
  EXPECT_EQ(selector_.calls(), 1);
  EXPECT_THAT(sleeps_, IsEmpty());
}

TEST_F(SelectorClientTest, RetriesAnUnavailableSelector) {
  selector_.Fail(grpc::Status(grpc::StatusCode::UNAVAILABLE, "restarting"));
  SelectorQuery query = SmallQuery();
  // Two failures, then the fake recovers during the second wait.
  int waits = 0;
  RetryEnv env = RetryEnv::Real();
  env.sleep = [&](absl::Duration) {
    if (++waits == 2) {
      selector_.Fail(grpc::Status::OK);
      selector_.Answer({12, 13});
    }
  };
  env.log = [](const std::string&) {};
  SelectorClientOptions options;
  options.target = "fake-selector:2";
  std::unique_ptr<SelectorClient> client = NewGrpcSelectorClient(
      server_->InProcessChannel(grpc::ChannelArguments()), options, env);
  absl::StatusOr<std::vector<int64_t>> ids = client->Select(query);
  ASSERT_THAT(ids, IsOk());
  EXPECT_THAT(*ids, ElementsAre(12, 13));
  EXPECT_EQ(selector_.calls(), 3);
}

TEST_F(SelectorClientTest, DoesNotSendAnInvalidQuery) {
  SelectorQuery query = SmallQuery();
  query.embeddings.pop_back();
  EXPECT_THAT(client_->Select(query),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "embeddings hold 9 floats, expected 5 pool ids x 2 "
                       "dims = 10"));
  query = SmallQuery();
  query.count = 5;
  EXPECT_THAT(client_->Select(query),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "asked for 5 ids but only 4 unlabelled pool ids "
                       "remain"));
  EXPECT_EQ(selector_.calls(), 0);
}

TEST(ValidateSelectorQueryTest, NamesTheProblem) {
  SelectorQuery query = SmallQuery();
  EXPECT_THAT(ValidateSelectorQuery(query), IsOk());
  query.probabilities.resize(14);
  EXPECT_THAT(ValidateSelectorQuery(query),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "probabilities hold 14 floats, expected 0 or 5 pool "
                       "ids x 3 classes = 15"));
  query = SmallQuery();
  query.probabilities.clear();
  EXPECT_THAT(ValidateSelectorQuery(query), IsOk());
  query.pool_ids[4] = 10;
  EXPECT_THAT(ValidateSelectorQuery(query),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "pool id 10 appears more than once"));
  query = SmallQuery();
  query.count = -1;
  EXPECT_THAT(ValidateSelectorQuery(query),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "count must not be negative, got -1"));
  query = SmallQuery();
  query.labelled_labels = {3};
  EXPECT_THAT(ValidateSelectorQuery(query),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "labelled_labels has 1 entries for 2 labelled ids"));
  query.labelled_labels.clear();
  EXPECT_THAT(ValidateSelectorQuery(query), IsOk());
}

TEST(SelectorClientFactoryTest, RejectsEmptyTarget) {
  EXPECT_THAT(
      MakeGrpcSelectorClient(SelectorClientOptions()),
      StatusIs(absl::StatusCode::kInvalidArgument, "selector target is empty"));
}

TEST(SelectorClientFactoryTest, RejectsTargetWithoutPort) {
  SelectorClientOptions options;
  options.target = "localhost:";
  EXPECT_THAT(MakeGrpcSelectorClient(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "selector target \"localhost:\" has no port (use "
                       "host:port)"));
}

TEST(SelectorClientFactoryTest, RejectsNonPositiveLimits) {
  SelectorClientOptions options;
  options.target = "localhost:1";
  options.call_deadline = absl::ZeroDuration();
  EXPECT_THAT(MakeGrpcSelectorClient(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "selector call_deadline must be positive, got 0"));
  options.call_deadline = absl::Seconds(1);
  options.max_message_bytes = 0;
  EXPECT_THAT(MakeGrpcSelectorClient(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "selector max_message_bytes must be positive, got 0"));
  options.max_message_bytes = 1 << 20;
  EXPECT_THAT(MakeGrpcSelectorClient(options), IsOk());
}

TEST(SelectorClientFactoryTest, StopRequestedEndsTheRetriesCancelled) {
  // Nothing listens on a port that a server just gave back.
  int port = 0;
  {
    FakeSelector selector;
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(&selector);
    std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
    ASSERT_NE(port, 0);
    server->Shutdown();
  }
  std::atomic<int> polls{0};
  SelectorClientOptions options;
  options.target = "127.0.0.1:" + std::to_string(port);
  options.retry.initial_backoff = absl::Seconds(1);
  options.retry.max_total_wait = absl::Seconds(2);  // ends a hang, if any
  // A stop arrives during the first wait: polled after the failed attempt,
  // then before each slice of the wait.
  options.stop_requested = [&polls] { return ++polls >= 3; };
  absl::StatusOr<std::unique_ptr<SelectorClient>> client =
      MakeGrpcSelectorClient(options);
  ASSERT_THAT(client, IsOk());
  const absl::Time start = absl::Now();
  EXPECT_THAT((*client)->Select(SmallQuery()),
              StatusIs(absl::StatusCode::kCancelled,
                       HasSubstr("stopped while waiting for the selector at " +
                                 options.target + " after 1 attempt: ")));
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  EXPECT_EQ(polls.load(), 3);
}

}  // namespace
}  // namespace trainer
