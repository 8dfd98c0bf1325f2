#include "trainer/select/label_free_features.h"

#include <ATen/ATen.h>
#include <torch/utils.h>

#include <tuple>

#include "absl/strings/str_cat.h"

namespace trainer {

absl::StatusOr<torch::Tensor> LabelFreeFeatures(
    const torch::Tensor& images, const LabelFreeFeatureOptions& options) {
  if (!images.defined() || images.dim() < 2 || images.size(0) < 2 ||
      !images.is_floating_point()) {
    return absl::InvalidArgumentError(
        "images must be a floating point [N >= 2, ...] tensor");
  }
  const int64_t n = images.size(0);
  const int64_t pixels = images.numel() / n;
  if (options.dims < 1 || options.dims > pixels) {
    return absl::InvalidArgumentError(
        absl::StrCat("dims must be in [1, ", pixels, "], got ", options.dims));
  }
  if (options.max_fit_images < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_fit_images must be at least 2, got ", options.max_fit_images));
  }
  torch::NoGradGuard no_grad;
  try {
    const torch::Tensor x = images.reshape({n, pixels}).to(torch::kFloat);
    const torch::Tensor mean = x.mean(0, /*keepdim=*/true);
    const int64_t stride =
        (n + options.max_fit_images - 1) / options.max_fit_images;
    const torch::Tensor fit = x.slice(0, 0, n, stride) - mean;
    const torch::Tensor covariance = fit.t().mm(fit) / (fit.size(0) - 1);
    // eigh: ascending eigenvalues; the last `dims` columns are the top ones.
    const torch::Tensor vectors = std::get<1>(at::linalg_eigh(covariance, "L"));
    torch::Tensor components =
        vectors.slice(1, pixels - options.dims, pixels).flip({1});
    const torch::Tensor largest = components.abs().argmax(0, /*keepdim=*/true);
    components =
        components *
        (1 - 2 * (components.gather(0, largest) < 0).to(torch::kFloat));
    const torch::Tensor features = (x - mean).mm(components);
    return features / features.norm(2, {1}, /*keepdim=*/true).clamp_min(1e-12);
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("LabelFreeFeatures: ", e.what_without_backtrace()));
  }
}

absl::StatusOr<torch::Tensor> LabelFreeFeatures(const torch::Tensor& images,
                                                int dims) {
  LabelFreeFeatureOptions options;
  options.dims = dims;
  return LabelFreeFeatures(images, options);
}

}  // namespace trainer
