#include "trainer/rpc/oracle_client.h"

#include <grpcpp/client_context.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/status_macros.h"
#include "proto/oracle.grpc.pb.h"
#include "trainer/rpc/grpc_clients.h"

namespace trainer {
namespace {

namespace pb = ::oracle::v1;

constexpr char kTokenMetadataKey[] = "x-oracle-token";

class GrpcOracleClient final : public OracleClient {
 public:
  GrpcOracleClient(std::shared_ptr<grpc::ChannelInterface> channel,
                   OracleClientOptions options, RetryEnv env)
      : stub_(pb::LabelOracle::NewStub(std::move(channel))),
        options_(std::move(options)),
        env_(std::move(env)) {}

  absl::StatusOr<ExperimentInfo> CreateExperiment(
      const std::string& name, int64_t label_budget,
      const std::string& token) override {
    pb::CreateExperimentRequest request;
    request.set_name(name);
    request.set_label_budget(label_budget);
    request.set_token(token);
    pb::Experiment response;
    absl::Status status = Call(
        &pb::LabelOracle::StubInterface::CreateExperiment, request, &response);
    if (!status.ok()) return status;
    ExperimentInfo info;
    info.id = response.id();
    info.name = response.name();
    info.label_budget = response.label_budget();
    info.created = response.created();
    return info;
  }

  absl::StatusOr<LabelBatch> QueryLabels(const std::string& experiment,
                                         const std::vector<int64_t>& ids,
                                         const std::string& client,
                                         const std::string& strategy,
                                         int round) override {
    pb::QueryLabelsRequest request;
    request.set_experiment(experiment);
    request.mutable_ids()->Add(ids.begin(), ids.end());
    request.set_client(client);
    request.set_strategy(strategy);
    request.set_round(round);
    pb::QueryLabelsResponse response;
    absl::Status status =
        Call(&pb::LabelOracle::StubInterface::QueryLabels, request, &response);
    if (!status.ok()) return status;
    if (static_cast<size_t>(response.labels_size()) != ids.size()) {
      return absl::InternalError(absl::StrCat(
          "oracle at ", options_.target, " returned ", response.labels_size(),
          " labels for ", ids.size(), " ids"));
    }
    LabelBatch batch;
    batch.labels.assign(response.labels().begin(), response.labels().end());
    batch.newly_revealed = response.newly_revealed();
    batch.remaining = response.remaining();
    batch.audit_sequence = response.audit_sequence();
    return batch;
  }

  absl::StatusOr<BudgetInfo> GetBudget(const std::string& experiment) override {
    pb::GetBudgetRequest request;
    request.set_experiment(experiment);
    pb::BudgetStatus response;
    absl::Status status =
        Call(&pb::LabelOracle::StubInterface::GetBudget, request, &response);
    if (!status.ok()) return status;
    BudgetInfo info;
    info.experiment = response.experiment();
    info.label_budget = response.label_budget();
    info.spent = response.spent();
    info.remaining = response.remaining();
    info.requests_granted = response.requests_granted();
    info.requests_denied = response.requests_denied();
    info.evaluations = response.evaluations();
    info.evaluation_cap = response.evaluation_cap();
    return info;
  }

  absl::StatusOr<Evaluation> Evaluate(const std::string& experiment,
                                      const std::vector<int32_t>& predictions,
                                      const std::string& client,
                                      const std::string& note) override {
    pb::EvaluateRequest request;
    request.set_experiment(experiment);
    request.mutable_predictions()->Add(predictions.begin(), predictions.end());
    request.set_client(client);
    request.set_note(note);
    pb::EvaluateResponse response;
    absl::Status status =
        Call(&pb::LabelOracle::StubInterface::Evaluate, request, &response);
    if (!status.ok()) return status;
    const int64_t c = response.num_classes();
    // Per-class results come whole, or not at all when the oracle withheld
    // them.
    const bool withheld = response.per_class_accuracy_size() == 0 &&
                          response.confusion_size() == 0;
    if (c <= 0 || (!withheld && (response.per_class_accuracy_size() != c ||
                                 response.confusion_size() != c * c))) {
      return absl::InternalError(absl::StrCat(
          "oracle at ", options_.target, " returned an evaluation with ", c,
          " classes, ", response.per_class_accuracy_size(),
          " per-class accuracies and ", response.confusion_size(),
          " confusion cells"));
    }
    Evaluation evaluation;
    evaluation.accuracy = response.accuracy();
    evaluation.per_class_accuracy.assign(response.per_class_accuracy().begin(),
                                         response.per_class_accuracy().end());
    evaluation.num_classes = static_cast<int>(c);
    evaluation.confusion.assign(response.confusion().begin(),
                                response.confusion().end());
    evaluation.evaluations_left = response.evaluations_left();
    return evaluation;
  }

 private:
  template <typename Request, typename Response>
  using Method = grpc::Status (pb::LabelOracle::StubInterface::*)(
      grpc::ClientContext*, const Request&, Response*);

  // One unary call with metadata, a fresh deadline per attempt, and retries.
  template <typename Request, typename Response>
  absl::Status Call(Method<Request, Response> method, const Request& request,
                    Response* response) {
    return CallWithRetry(options_.retry, env_, "oracle", options_.target, [&] {
      grpc::ClientContext context;
      context.set_deadline(
          absl::ToChronoTime(absl::Now() + options_.call_deadline));
      if (!options_.token.empty()) {
        context.AddMetadata(kTokenMetadataKey, options_.token);
      }
      response->Clear();
      return common::FromGrpcStatus(
          (stub_.get()->*method)(&context, request, response));
    });
  }

  const std::unique_ptr<pb::LabelOracle::StubInterface> stub_;
  const OracleClientOptions options_;
  const RetryEnv env_;
};

}  // namespace

std::unique_ptr<OracleClient> NewGrpcOracleClient(
    std::shared_ptr<grpc::ChannelInterface> channel,
    const OracleClientOptions& options, RetryEnv env) {
  return std::make_unique<GrpcOracleClient>(std::move(channel), options,
                                            std::move(env));
}

absl::StatusOr<std::unique_ptr<OracleClient>> MakeGrpcOracleClient(
    const OracleClientOptions& options) {
  ASSIGN_OR_RETURN(
      std::shared_ptr<grpc::Channel> channel,
      MakeClientChannel(
          "oracle", {options.target, options.call_deadline,
                     options.max_message_bytes, options.retry, options.tls}));
  RetryEnv env = RetryEnv::Real();
  env.stop_requested = options.stop_requested;
  return NewGrpcOracleClient(std::move(channel), options, std::move(env));
}

}  // namespace trainer
