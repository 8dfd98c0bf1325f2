#include "trainer/objectives/freematch.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include <utility>

#include "common/status_macros.h"

namespace trainer {
namespace {

FreeMatchThresholdOptions ThresholdOptions(const FreeMatchOptions& options) {
  FreeMatchThresholdOptions o;
  o.num_classes = options.num_classes;
  o.momentum = options.ema_momentum;
  return o;
}

}  // namespace

using torch::Tensor;

absl::StatusOr<std::unique_ptr<FreeMatchObjective>> FreeMatchObjective::Create(
    const FreeMatchOptions& options, torch::Device device,
    int64_t embedding_dim, uint64_t seed) {
  RETURN_IF_ERROR(ValidateSemiSupervisedOptions(options.batch));
  if (!(options.ema_momentum >= 0.0 && options.ema_momentum < 1.0)) {
    return absl::InvalidArgumentError("ema_momentum must be in [0, 1)");
  }
  if (!(options.lambda_f >= 0.0)) {
    return absl::InvalidArgumentError("lambda_f must be non-negative");
  }
  if (options.num_classes < 2) {
    return absl::InvalidArgumentError("num_classes must be at least 2");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<PseudoLabelling> pseudo_labelling,
                   PseudoLabelling::Create(options.batch, options.num_classes,
                                           device, embedding_dim, seed));
  return std::unique_ptr<FreeMatchObjective>(
      new FreeMatchObjective(options, device, std::move(pseudo_labelling)));
}

FreeMatchObjective::FreeMatchObjective(
    const FreeMatchOptions& options, torch::Device device,
    std::unique_ptr<PseudoLabelling> pseudo_labelling)
    : options_(options),
      thresholds_(ThresholdOptions(options), device),
      pseudo_labelling_(std::move(pseudo_labelling)) {}

ObjectiveLoss FreeMatchObjective::Loss(const StepContext& context,
                                       const StepData& data) {
  SemiSupervisedLogits logits =
      SemiSupervisedForward(context, data, options_.batch);
  Tensor supervised = SupervisedLoss(logits);
  PseudoLabels labels = pseudo_labelling_->Label(logits);
  const Tensor& probs = labels.probs;
  Tensor mask = thresholds_.Step(probs);
  Tensor strong = pseudo_labelling_->StrongLogits(logits).to(at::kFloat);
  Tensor unsupervised =
      PseudoLabelLoss(logits, strong, probs, mask, options_.batch.soft_targets);
  Tensor fairness = thresholds_.FairnessLoss(strong, mask);
  Tensor total = supervised + options_.batch.lambda_u * unsupervised +
                 options_.lambda_f * fairness;
  ObjectiveLoss out{total,
                    {supervised, unsupervised, mask.mean(), fairness,
                     thresholds_.tau().clone()}};
  pseudo_labelling_->AddTerms(labels, out);
  return out;
}

void FreeMatchObjective::Save(torch::serialize::OutputArchive& archive) const {
  thresholds_.Save(archive, "thresholds");
  pseudo_labelling_->Save(archive);
}

void FreeMatchObjective::Load(torch::serialize::InputArchive& archive) {
  thresholds_.Load(archive, "thresholds");
  pseudo_labelling_->Load(archive);
}

}  // namespace trainer
