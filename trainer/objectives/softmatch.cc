#include "trainer/objectives/softmatch.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include <utility>

#include "common/status_macros.h"

namespace trainer {
namespace {

SoftMatchWeightOptions WeightOptions(const SoftMatchOptions& options) {
  SoftMatchWeightOptions o;
  o.num_classes = options.num_classes;
  o.momentum = options.ema_momentum;
  o.n_sigma = options.n_sigma;
  return o;
}

DistributionAlignmentOptions AlignmentOptions(const SoftMatchOptions& options) {
  DistributionAlignmentOptions o;
  o.enabled = options.uniform_alignment;
  o.momentum = options.ema_momentum;
  o.num_classes = options.num_classes;
  return o;
}

}  // namespace

using torch::Tensor;

absl::StatusOr<std::unique_ptr<SoftMatchObjective>> SoftMatchObjective::Create(
    const SoftMatchOptions& options, torch::Device device,
    int64_t embedding_dim, uint64_t seed) {
  RETURN_IF_ERROR(ValidateSemiSupervisedOptions(options.batch));
  if (!(options.ema_momentum >= 0.0 && options.ema_momentum < 1.0)) {
    return absl::InvalidArgumentError("ema_momentum must be in [0, 1)");
  }
  if (!(options.n_sigma > 0.0)) {
    return absl::InvalidArgumentError("n_sigma must be positive");
  }
  if (options.num_classes < 2) {
    return absl::InvalidArgumentError("num_classes must be at least 2");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<PseudoLabelling> pseudo_labelling,
                   PseudoLabelling::Create(options.batch, options.num_classes,
                                           device, embedding_dim, seed));
  return std::unique_ptr<SoftMatchObjective>(
      new SoftMatchObjective(options, device, std::move(pseudo_labelling)));
}

SoftMatchObjective::SoftMatchObjective(
    const SoftMatchOptions& options, torch::Device device,
    std::unique_ptr<PseudoLabelling> pseudo_labelling)
    : options_(options),
      weights_(WeightOptions(options), device),
      uniform_alignment_(AlignmentOptions(options), device),
      pseudo_labelling_(std::move(pseudo_labelling)) {}

ObjectiveLoss SoftMatchObjective::Loss(const StepContext& context,
                                       const StepData& data) {
  SemiSupervisedLogits logits =
      SemiSupervisedForward(context, data, options_.batch);
  Tensor supervised = SupervisedLoss(logits);
  PseudoLabels labels = pseudo_labelling_->Label(logits);
  // The weights read the aligned confidence; the targets stay unaligned.
  Tensor weight = weights_.Step(uniform_alignment_.Align(labels.probs));
  Tensor strong = pseudo_labelling_->StrongLogits(logits).to(at::kFloat);
  Tensor unsupervised = PseudoLabelLoss(logits, strong, labels.probs, weight,
                                        options_.batch.soft_targets);
  Tensor total = supervised + options_.batch.lambda_u * unsupervised;
  ObjectiveLoss out{
      total, {supervised, unsupervised, weight.mean(), weights_.mu().clone()}};
  pseudo_labelling_->AddTerms(labels, out);
  return out;
}

void SoftMatchObjective::Save(torch::serialize::OutputArchive& archive) const {
  weights_.Save(archive, "soft_weights");
  uniform_alignment_.Save(archive, "uniform_alignment");
  pseudo_labelling_->Save(archive);
}

void SoftMatchObjective::Load(torch::serialize::InputArchive& archive) {
  weights_.Load(archive, "soft_weights");
  uniform_alignment_.Load(archive, "uniform_alignment");
  pseudo_labelling_->Load(archive);
}

}  // namespace trainer
