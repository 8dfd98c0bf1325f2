#include "trainer/objectives/simclr.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "trainer/objectives/nt_xent.h"

namespace trainer {

using torch::Tensor;

ContrastiveAugmentOptions LocalCropAugment(const SimClrOptions& options) {
  ContrastiveAugmentOptions local = options.augment;
  local.crop.scale_min = options.local_crop_scale_min;
  local.crop.scale_max = options.local_crop_scale_max;
  local.output_size = options.local_crop_size;
  return local;
}

absl::StatusOr<std::unique_ptr<SimClrObjective>> SimClrObjective::Create(
    const SimClrOptions& options, int64_t embedding_dim, torch::Device device,
    uint64_t seed) {
  if (options.batch_size < 2) {
    return absl::InvalidArgumentError("simclr batch size must be at least 2");
  }
  if (!(options.temperature > 0.0)) {
    return absl::InvalidArgumentError("simclr temperature must be positive");
  }
  RETURN_IF_ERROR(ValidateContrastiveAugment(options.augment, "simclr"));
  if (options.local_crops < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "simclr local crops must be 0 or more, got ", options.local_crops));
  }
  if (options.local_crops > 0) {
    if (options.local_crop_size < 4) {
      return absl::InvalidArgumentError(
          absl::StrCat("simclr local crop size must be at least 4 pixels, got ",
                       options.local_crop_size));
    }
    RETURN_IF_ERROR(
        ValidateContrastiveAugment(LocalCropAugment(options), "simclr local"));
  }
  if (embedding_dim <= 0 || options.projection_dim <= 0 ||
      options.projection_hidden_dim < 0) {
    return absl::InvalidArgumentError(
        "simclr needs positive embedding and projection sizes");
  }
  ProjectionHeadOptions head_options;
  head_options.input_dim = embedding_dim;
  head_options.hidden_dim = options.projection_hidden_dim;
  head_options.output_dim = options.projection_dim;
  try {
    // The head's initial weights follow the run's seed, not global state.
    head_options.init_seed = seed;
    ProjectionHead head(head_options);
    head->to(device);
    head->train();
    return std::unique_ptr<SimClrObjective>(
        new SimClrObjective(options, std::move(head)));
  } catch (const c10::Error& e) {
    return absl::UnavailableError(absl::StrCat(
        "cannot build the projection head: ", e.what_without_backtrace()));
  }
}

ObjectiveLoss SimClrObjective::Loss(const StepContext& context,
                                    const StepData& data) {
  const Tensor& pool = data.unlabelled_images;
  Tensor index = at::randint(
      pool.size(0), {options_.batch_size}, context.generator,
      torch::TensorOptions().dtype(at::kLong).device(pool.device()));
  Tensor images = pool.index_select(0, index);
  Tensor views =
      at::cat({ContrastiveAugment(images, context.generator, options_.augment),
               ContrastiveAugment(images, context.generator, options_.augment)});
  Tensor embedding = context.Forward(context.model, views).embedding;
  const int64_t n = options_.batch_size;
  if (options_.local_crops > 0) {
    const ContrastiveAugmentOptions local = LocalCropAugment(options_);
    std::vector<Tensor> local_views;
    for (int i = 0; i < options_.local_crops; ++i) {
      local_views.push_back(
          ContrastiveAugment(images, context.generator, local));
    }
    embedding = at::cat(
        {embedding,
         context.Forward(context.model, at::cat(local_views)).embedding});
  }
  Tensor projection = head_->forward(embedding);
  std::vector<Tensor> per_view;
  for (int64_t v = 0; v < 2 + options_.local_crops; ++v) {
    per_view.push_back(projection.narrow(0, v * n, n));
  }
  NtXentLoss loss = ComputeMultiViewNtXentLoss(per_view, options_.temperature);
  return {loss.loss, {loss.positive_accuracy}};
}

void SimClrObjective::Save(torch::serialize::OutputArchive& archive) const {
  WriteProjectionHead(head_, archive, "projection_head");
}

void SimClrObjective::Load(torch::serialize::InputArchive& archive) {
  ReadProjectionHead(head_, archive, "projection_head");
}

}  // namespace trainer
