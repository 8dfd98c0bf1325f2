// FreeMatch (Wang et al. 2023): FixMatch's pseudo-label loss with
// self-adaptive class thresholds (an EMA of the model's confidence, scaled
// per class by its expected share) and the self-adaptive fairness term that
// keeps the pseudo-labels' class distribution from collapsing.
#ifndef TRAINER_OBJECTIVES_FREEMATCH_H_
#define TRAINER_OBJECTIVES_FREEMATCH_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "trainer/learn/objective.h"
#include "trainer/objectives/adaptive_threshold.h"
#include "trainer/objectives/semi_supervised.h"

namespace trainer {

struct FreeMatchOptions {
  SemiSupervisedOptions batch;
  // EMA momentum of the thresholds' state, in [0, 1).
  double ema_momentum = 0.999;
  // Weight of the fairness term (USB's lambda_f for FreeMatch).
  double lambda_f = 0.001;
  // Number of classes.
  int64_t num_classes = 10;
};

// Metrics: loss_x, loss_u, mask_rate, loss_f (fairness), tau (the global
// threshold), then the graph contrast's (WithContrastMetrics).
class FreeMatchObjective : public TrainingObjective {
 public:
  // INVALID_ARGUMENT for bad options (see ValidateSemiSupervisedOptions;
  // ema_momentum in [0, 1), lambda_f >= 0, num_classes >= 2).
  // `embedding_dim` and `seed` make the graph contrast's head
  // (PseudoLabelling::Create), when it is on.
  static absl::StatusOr<std::unique_ptr<FreeMatchObjective>> Create(
      const FreeMatchOptions& options, torch::Device device,
      int64_t embedding_dim = 0, uint64_t seed = 0);

  std::string name() const override { return "freematch"; }
  bool uses_labels() const override { return true; }
  std::vector<std::string> metric_names() const override {
    return pseudo_labelling_->MetricNames(
        {"loss_x", "loss_u", "mask_rate", "loss_f", "tau"});
  }
  std::vector<torch::nn::Module*> trained_modules() override {
    return pseudo_labelling_->TrainedModules();
  }
  ObjectiveLoss Loss(const StepContext& context, const StepData& data) override;
  void Save(torch::serialize::OutputArchive& archive) const override;
  void Load(torch::serialize::InputArchive& archive) override;

  const FreeMatchThresholds& thresholds() const { return thresholds_; }

 private:
  FreeMatchObjective(const FreeMatchOptions& options, torch::Device device,
                     std::unique_ptr<PseudoLabelling> pseudo_labelling);
  FreeMatchOptions options_;
  FreeMatchThresholds thresholds_;
  std::unique_ptr<PseudoLabelling> pseudo_labelling_;
};

}  // namespace trainer

#endif  // TRAINER_OBJECTIVES_FREEMATCH_H_
