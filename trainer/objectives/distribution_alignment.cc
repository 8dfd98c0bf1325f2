#include "trainer/objectives/distribution_alignment.h"

#include <c10/util/Exception.h>

namespace trainer {

DistributionAlignment::DistributionAlignment(
    const DistributionAlignmentOptions& options, torch::Device device)
    : options_(options) {
  TORCH_CHECK(options.num_classes >= 2, "num_classes must be >= 2, got ",
              options.num_classes);
  TORCH_CHECK(options.momentum >= 0.0 && options.momentum < 1.0,
              "momentum must be in [0, 1), got ", options.momentum);
  p_model_ = torch::full({options.num_classes},
                         1.0 / static_cast<double>(options.num_classes),
                         torch::TensorOptions().dtype(torch::kFloat).device(device));
}

torch::Tensor DistributionAlignment::Align(const torch::Tensor& probs_weak) {
  if (!options_.enabled) return probs_weak;
  TORCH_CHECK(probs_weak.dim() == 2 &&
                  probs_weak.size(1) == options_.num_classes &&
                  probs_weak.size(0) >= 1,
              "probs_weak must be [U, ", options_.num_classes,
              "] with U >= 1, got ", probs_weak.sizes());
  torch::NoGradGuard no_grad;
  const torch::Tensor probs = probs_weak.to(torch::kFloat);
  p_model_.mul_(options_.momentum)
      .add_(probs.mean(0), 1.0 - options_.momentum);
  // The uniform target 1/C cancels in the renormalisation.
  const torch::Tensor aligned = probs / p_model_.clamp_min(1e-6);
  return aligned / aligned.sum(1, /*keepdim=*/true).clamp_min(1e-30);
}

void DistributionAlignment::Save(torch::serialize::OutputArchive& archive,
                                 const std::string& key) const {
  if (!options_.enabled) return;
  archive.write(key, p_model_, /*is_buffer=*/true);
}

void DistributionAlignment::Load(torch::serialize::InputArchive& archive,
                                 const std::string& key) {
  if (!options_.enabled) return;
  torch::Tensor saved;
  if (!archive.try_read(key, saved, /*is_buffer=*/true)) return;
  TORCH_CHECK(saved.sizes() == p_model_.sizes(), "distribution alignment '",
              key, "' has shape ", saved.sizes(), ", expected ",
              p_model_.sizes());
  torch::NoGradGuard no_grad;
  p_model_.copy_(saved);
}

}  // namespace trainer
