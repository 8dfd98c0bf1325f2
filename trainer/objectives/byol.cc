#include "trainer/objectives/byol.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "trainer/learn/learner.h"

namespace trainer {

using torch::Tensor;

absl::StatusOr<std::unique_ptr<ByolObjective>> ByolObjective::Create(
    const ByolOptions& options, int64_t embedding_dim, torch::Device device,
    uint64_t seed) {
  if (options.batch_size < 2) {
    return absl::InvalidArgumentError("byol batch size must be at least 2");
  }
  if (!(options.target_decay >= 0.0 && options.target_decay < 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "byol target decay must be in [0, 1), got ", options.target_decay));
  }
  RETURN_IF_ERROR(ValidateContrastiveAugment(options.augment, "byol"));
  if (embedding_dim <= 0 || options.hidden_dim <= 0 ||
      options.projection_dim <= 0) {
    return absl::InvalidArgumentError(
        "byol needs positive embedding, hidden and projection sizes");
  }
  ProjectionHeadOptions projector_options;
  projector_options.input_dim = embedding_dim;
  projector_options.hidden_dim = options.hidden_dim;
  projector_options.output_dim = options.projection_dim;
  projector_options.init_seed = seed;
  ProjectionHeadOptions predictor_options = projector_options;
  predictor_options.input_dim = options.projection_dim;
  // Another stream than the projector's, still fixed by the run's seed.
  predictor_options.init_seed = seed ^ 0x9e3779b97f4a7c15ULL;
  try {
    ProjectionHead projector(projector_options);
    ProjectionHead predictor(predictor_options);
    ProjectionHead target(projector_options);
    projector->to(device);
    predictor->to(device);
    target->to(device);
    projector->train();
    predictor->train();
    target->train();
    for (auto& p : target->parameters()) p.set_requires_grad(false);
    UpdateEma(*target, *projector, /*decay=*/0.0);  // starts as a copy
    return std::unique_ptr<ByolObjective>(
        new ByolObjective(options, std::move(projector), std::move(predictor),
                          std::move(target)));
  } catch (const c10::Error& e) {
    return absl::UnavailableError(absl::StrCat(
        "cannot build the byol heads: ", e.what_without_backtrace()));
  }
}

ObjectiveLoss ByolObjective::Loss(const StepContext& context,
                                  const StepData& data) {
  const Tensor& pool = data.unlabelled_images;
  const int64_t n = options_.batch_size;
  Tensor index = at::randint(
      pool.size(0), {n}, context.generator,
      torch::TensorOptions().dtype(at::kLong).device(pool.device()));
  Tensor images = pool.index_select(0, index);
  const ContrastiveAugmentOptions& augment = options_.augment;
  Tensor views =
      at::cat({ContrastiveAugment(images, context.generator, augment),
               ContrastiveAugment(images, context.generator, augment)});
  Tensor prediction = predictor_->forward(
      projector_->forward(context.Forward(context.model, views).embedding));
  Tensor target;
  {
    torch::NoGradGuard no_grad;
    UpdateEma(*target_projector_, *projector_, options_.target_decay);
    context.ema->train();
    Tensor embedding = context.Forward(context.ema, views).embedding;
    context.ema->eval();
    target = target_projector_->forward(embedding);
    // View 1's prediction aims at view 2's target and the other way round.
    target = at::cat({target.narrow(0, n, n), target.narrow(0, 0, n)});
  }
  Tensor cosine = at::cosine_similarity(prediction.to(at::kFloat),
                                        target.to(at::kFloat), /*dim=*/1);
  Tensor mean_cosine = cosine.mean();
  // Both directions' mean 2 - 2 cos, summed.
  return {4.0 - 4.0 * mean_cosine, {mean_cosine.detach()}};
}

void ByolObjective::Save(torch::serialize::OutputArchive& archive) const {
  WriteProjectionHead(projector_, archive, "byol_projector");
  WriteProjectionHead(predictor_, archive, "byol_predictor");
  WriteProjectionHead(target_projector_, archive, "byol_target_projector");
}

void ByolObjective::Load(torch::serialize::InputArchive& archive) {
  ReadProjectionHead(projector_, archive, "byol_projector");
  ReadProjectionHead(predictor_, archive, "byol_predictor");
  ReadProjectionHead(target_projector_, archive, "byol_target_projector");
}

}  // namespace trainer
