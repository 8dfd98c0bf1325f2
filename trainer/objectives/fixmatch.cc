#include "trainer/objectives/fixmatch.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include <tuple>
#include <utility>

#include "common/status_macros.h"

namespace trainer {

using torch::Tensor;

FixMatchLoss ComputeFixMatchLoss(const Tensor& logits_x,
                                 const Tensor& targets_x,
                                 const Tensor& logits_u_weak,
                                 const Tensor& logits_u_strong,
                                 double threshold, double lambda_u) {
  return ComputeFixMatchLossFromProbs(
      logits_x, targets_x,
      at::softmax(logits_u_weak.detach().to(at::kFloat), 1), logits_u_strong,
      threshold, lambda_u);
}

FixMatchLoss ComputeFixMatchLossFromProbs(const Tensor& logits_x,
                                          const Tensor& targets_x,
                                          const Tensor& probs_u_weak,
                                          const Tensor& logits_u_strong,
                                          double threshold, double lambda_u,
                                          bool soft_targets) {
  TORCH_CHECK(probs_u_weak.sizes() == logits_u_strong.sizes(),
              "weak and strong views differ in shape: ", probs_u_weak.sizes(),
              " vs ", logits_u_strong.sizes());
  Tensor supervised =
      at::cross_entropy_loss(logits_x.to(at::kFloat), targets_x);
  Tensor max_probs = std::get<0>(probs_u_weak.detach().max(1));
  Tensor mask = (max_probs >= threshold).to(at::kFloat);
  Tensor per_image =
      PseudoLabelCrossEntropy(logits_u_strong, probs_u_weak, soft_targets);
  Tensor unsupervised = (per_image * mask).mean();
  Tensor total = supervised + lambda_u * unsupervised;
  return {std::move(total), std::move(supervised), std::move(unsupervised),
          mask.mean()};
}

absl::StatusOr<std::unique_ptr<FixMatchObjective>> FixMatchObjective::Create(
    const FixMatchOptions& options, torch::Device device, int64_t embedding_dim,
    uint64_t seed) {
  RETURN_IF_ERROR(ValidateSemiSupervisedOptions(options.batch));
  if (!(options.threshold >= 0.0 && options.threshold <= 1.0)) {
    return absl::InvalidArgumentError("threshold must be in [0, 1]");
  }
  if (options.num_classes < 2) {
    return absl::InvalidArgumentError("num_classes must be >= 2");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<PseudoLabelling> pseudo_labelling,
                   PseudoLabelling::Create(options.batch, options.num_classes,
                                           device, embedding_dim, seed));
  return std::unique_ptr<FixMatchObjective>(
      new FixMatchObjective(options, std::move(pseudo_labelling)));
}

ObjectiveLoss FixMatchObjective::Loss(const StepContext& context,
                                      const StepData& data) {
  SemiSupervisedLogits logits =
      SemiSupervisedForward(context, data, options_.batch);
  PseudoLabels labels = pseudo_labelling_->Label(logits);
  SupervisedRows labelled = LabelledRows(logits);
  FixMatchLoss loss = ComputeFixMatchLossFromProbs(
      labelled.logits, labelled.targets, labels.probs,
      pseudo_labelling_->StrongLogits(logits), options_.threshold,
      options_.batch.lambda_u, options_.batch.soft_targets);
  if (logits.logits_x_mixed.defined()) {
    // With mixed labelled images the supervised term is SupervisedLoss's
    // (the labelled rows and the mixed ones), not the labelled rows' alone;
    // with mixed unlabelled images the pseudo-label term is PseudoLabelLoss's
    // under the same mask.
    loss.supervised = SupervisedLoss(logits);
    if (logits.logits_u_mixed.defined()) {
      Tensor mask =
          (std::get<0>(labels.probs.max(1)) >= options_.threshold)
              .to(at::kFloat);
      loss.unsupervised = PseudoLabelLoss(
          logits, pseudo_labelling_->StrongLogits(logits), labels.probs, mask,
          options_.batch.soft_targets);
    }
    loss.total = loss.supervised + options_.batch.lambda_u * loss.unsupervised;
  }
  ObjectiveLoss out{loss.total,
                    {loss.supervised, loss.unsupervised, loss.mask_rate}};
  pseudo_labelling_->AddTerms(labels, out);
  return out;
}

void FixMatchObjective::Save(torch::serialize::OutputArchive& archive) const {
  pseudo_labelling_->Save(archive);
}

void FixMatchObjective::Load(torch::serialize::InputArchive& archive) {
  pseudo_labelling_->Load(archive);
}

}  // namespace trainer
