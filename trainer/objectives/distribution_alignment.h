// Distribution alignment (ReMixMatch, Berthelot et al. 2020; USB's
// DistAlignEMAHook): before pseudo-labelling, each weak-view probability
// vector is multiplied by p_target / p_model and renormalised, where p_model
// is an EMA of the model's mean prediction on unlabelled images and
// p_target the class prior (uniform here). When the model starts to predict
// one class for images of several (say coats as pullovers), p_model grows
// for that class and alignment pushes its pseudo-labels back, countering
// the confirmation bias that hard pseudo-labels feed.
#ifndef TRAINER_OBJECTIVES_DISTRIBUTION_ALIGNMENT_H_
#define TRAINER_OBJECTIVES_DISTRIBUTION_ALIGNMENT_H_

#include <torch/torch.h>

#include <string>

namespace trainer {

struct DistributionAlignmentOptions {
  // Off: Align returns its input.
  bool enabled = false;
  // EMA momentum of p_model (USB: 0.999).
  double momentum = 0.999;
  int64_t num_classes = 10;
};

class DistributionAlignment {
 public:
  // Throws c10::Error for num_classes < 2 or momentum outside [0, 1).
  DistributionAlignment(const DistributionAlignmentOptions& options,
                        torch::Device device);

  // probs_weak [U, C] (U >= 1, rows summing to 1): when enabled, first
  // p_model <- momentum * p_model + (1 - momentum) * mean_u probs_weak (in
  // place, no host reads, so it can be captured in a CUDA graph), then
  // returns probs_weak * (1/C) / p_model, each row renormalised to sum 1
  // (float32, no gradient). When disabled returns probs_weak unchanged.
  torch::Tensor Align(const torch::Tensor& probs_weak);

  bool enabled() const { return options_.enabled; }
  // float32 [C]: the current EMA of the mean prediction (uniform at start).
  const torch::Tensor& p_model() const { return p_model_; }

  // Writes p_model under `key` (only when enabled).
  void Save(torch::serialize::OutputArchive& archive,
            const std::string& key) const;
  // Reads p_model from `key` when enabled; a checkpoint written without
  // alignment leaves the uniform start. Throws c10::Error on a wrong shape.
  void Load(torch::serialize::InputArchive& archive, const std::string& key);

 private:
  DistributionAlignmentOptions options_;
  torch::Tensor p_model_;
};

}  // namespace trainer

#endif  // TRAINER_OBJECTIVES_DISTRIBUTION_ALIGNMENT_H_
