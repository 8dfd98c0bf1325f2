#include "trainer/objectives/flexmatch.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/torch.h>

#include <utility>

#include "common/status_macros.h"

namespace trainer {
namespace {

FlexMatchThresholdOptions ThresholdOptions(const FlexMatchOptions& options,
                                           int64_t pool_size) {
  FlexMatchThresholdOptions o;
  o.num_classes = options.num_classes;
  o.pool_size = pool_size;
  o.base_threshold = options.threshold;
  o.threshold_warmup = options.threshold_warmup;
  return o;
}

}  // namespace

using torch::Tensor;

absl::StatusOr<std::unique_ptr<FlexMatchObjective>> FlexMatchObjective::Create(
    const FlexMatchOptions& options, int64_t pool_size, torch::Device device,
    int64_t embedding_dim, uint64_t seed) {
  RETURN_IF_ERROR(ValidateSemiSupervisedOptions(options.batch));
  if (!(options.threshold > 0.0 && options.threshold <= 1.0)) {
    return absl::InvalidArgumentError("threshold must be in (0, 1]");
  }
  if (options.num_classes < 2) {
    return absl::InvalidArgumentError("num_classes must be at least 2");
  }
  if (pool_size < 1) {
    return absl::InvalidArgumentError(
        "flexmatch needs the unlabelled pool's size (at least 1 image)");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<PseudoLabelling> pseudo_labelling,
                   PseudoLabelling::Create(options.batch, options.num_classes,
                                           device, embedding_dim, seed));
  return std::unique_ptr<FlexMatchObjective>(new FlexMatchObjective(
      options, pool_size, device, std::move(pseudo_labelling)));
}

FlexMatchObjective::FlexMatchObjective(
    const FlexMatchOptions& options, int64_t pool_size, torch::Device device,
    std::unique_ptr<PseudoLabelling> pseudo_labelling)
    : options_(options),
      pool_size_(pool_size),
      thresholds_(ThresholdOptions(options, pool_size), device),
      pseudo_labelling_(std::move(pseudo_labelling)) {}

ObjectiveLoss FlexMatchObjective::Loss(const StepContext& context,
                                       const StepData& data) {
  TORCH_CHECK(data.unlabelled_images.size(0) == pool_size_,
              "flexmatch was made for a pool of ", pool_size_,
              " images but the step's pool holds ",
              data.unlabelled_images.size(0));
  SemiSupervisedLogits logits =
      SemiSupervisedForward(context, data, options_.batch);
  Tensor supervised = SupervisedLoss(logits);
  PseudoLabels labels = pseudo_labelling_->Label(logits);
  const Tensor& probs = labels.probs;
  Tensor mask = thresholds_.Step(logits.unlabelled_index, probs);
  Tensor unsupervised =
      PseudoLabelLoss(logits, pseudo_labelling_->StrongLogits(logits), probs,
                      mask, options_.batch.soft_targets);
  Tensor total = supervised + options_.batch.lambda_u * unsupervised;
  ObjectiveLoss out{total,
                    {supervised, unsupervised, mask.mean(),
                     thresholds_.ClassThresholds().min()}};
  pseudo_labelling_->AddTerms(labels, out);
  return out;
}

void FlexMatchObjective::Save(torch::serialize::OutputArchive& archive) const {
  thresholds_.Save(archive, "thresholds");
  pseudo_labelling_->Save(archive);
}

void FlexMatchObjective::Load(torch::serialize::InputArchive& archive) {
  thresholds_.Load(archive, "thresholds");
  pseudo_labelling_->Load(archive);
}

}  // namespace trainer
