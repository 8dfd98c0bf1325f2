// SoftMatch (Chen et al. 2023): FixMatch's pseudo-label loss with a soft
// threshold. Instead of dropping every unlabelled image below a confidence
// threshold, each image's loss is weighted by a truncated Gaussian over its
// confidence (SoftMatchWeights): 1 at or above the running mean confidence,
// falling off below it. The confidence is read after uniform alignment
// (distribution alignment towards a uniform class prior), which lifts the
// weights of classes the model under-predicts; the pseudo-labels themselves
// are the unaligned ones, as in USB's softmatch.
#ifndef TRAINER_OBJECTIVES_SOFTMATCH_H_
#define TRAINER_OBJECTIVES_SOFTMATCH_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "trainer/learn/objective.h"
#include "trainer/objectives/adaptive_threshold.h"
#include "trainer/objectives/distribution_alignment.h"
#include "trainer/objectives/semi_supervised.h"

namespace trainer {

struct SoftMatchOptions {
  SemiSupervisedOptions batch;
  // EMA momentum of the Gaussian's state and of the uniform alignment's
  // running class distribution (USB's ema_p), in [0, 1).
  double ema_momentum = 0.999;
  // USB's n_sigma (> 0): the weight is exp(-1/2) at sigma / n_sigma below
  // the mean confidence.
  double n_sigma = 2.0;
  // Read the weights' confidence after aligning to a uniform class prior
  // (USB's dist_align with dist_uniform); off: the pseudo-labels' own.
  bool uniform_alignment = true;
  int64_t num_classes = 10;
};

// Metrics: loss_x, loss_u, mask_rate (the mean weight), weight_mu (the
// Gaussian's mean confidence), then the graph contrast's.
class SoftMatchObjective : public TrainingObjective {
 public:
  // INVALID_ARGUMENT for bad options (see ValidateSemiSupervisedOptions;
  // ema_momentum in [0, 1), n_sigma > 0, num_classes >= 2). `embedding_dim`
  // and `seed` make the graph contrast's head (PseudoLabelling::Create).
  static absl::StatusOr<std::unique_ptr<SoftMatchObjective>> Create(
      const SoftMatchOptions& options, torch::Device device,
      int64_t embedding_dim = 0, uint64_t seed = 0);

  std::string name() const override { return "softmatch"; }
  bool uses_labels() const override { return true; }
  std::vector<std::string> metric_names() const override {
    return pseudo_labelling_->MetricNames(
        {"loss_x", "loss_u", "mask_rate", "weight_mu"});
  }
  std::vector<torch::nn::Module*> trained_modules() override {
    return pseudo_labelling_->TrainedModules();
  }
  ObjectiveLoss Loss(const StepContext& context, const StepData& data) override;
  void Save(torch::serialize::OutputArchive& archive) const override;
  void Load(torch::serialize::InputArchive& archive) override;

  const SoftMatchWeights& weights() const { return weights_; }
  const DistributionAlignment& uniform_alignment() const {
    return uniform_alignment_;
  }

 private:
  SoftMatchObjective(const SoftMatchOptions& options, torch::Device device,
                     std::unique_ptr<PseudoLabelling> pseudo_labelling);
  SoftMatchOptions options_;
  SoftMatchWeights weights_;
  DistributionAlignment uniform_alignment_;
  std::unique_ptr<PseudoLabelling> pseudo_labelling_;
};

}  // namespace trainer

#endif  // TRAINER_OBJECTIVES_SOFTMATCH_H_
