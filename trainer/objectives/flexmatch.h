// FlexMatch (Zhang et al. 2021): FixMatch's pseudo-label loss with
// curriculum pseudo labelling: each class's threshold is the fixed threshold
// scaled down by how much of the pool the model already predicts confidently
// as that class, so hard classes get pseudo-labels early instead of never.
#ifndef TRAINER_OBJECTIVES_FLEXMATCH_H_
#define TRAINER_OBJECTIVES_FLEXMATCH_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "trainer/learn/objective.h"
#include "trainer/objectives/adaptive_threshold.h"
#include "trainer/objectives/semi_supervised.h"

namespace trainer {

struct FlexMatchOptions {
  SemiSupervisedOptions batch;
  // The fixed threshold tau that classes scale down, in (0, 1].
  double threshold = 0.95;
  // Threshold warm-up (see FlexMatchThresholdOptions::threshold_warmup).
  bool threshold_warmup = true;
  // Number of classes.
  int64_t num_classes = 10;
};

// Metrics: loss_x, loss_u, mask_rate, min_threshold (the lowest class
// threshold after the step), then the graph contrast's.
class FlexMatchObjective : public TrainingObjective {
 public:
  // INVALID_ARGUMENT for bad options (see ValidateSemiSupervisedOptions;
  // threshold in (0, 1], num_classes >= 2, pool_size >= 1). `pool_size` is
  // the number of unlabelled images StepData will hold: the curriculum keeps
  // one prediction per image.
  // `embedding_dim` and `seed` make the graph contrast's head
  // (PseudoLabelling::Create), when it is on.
  static absl::StatusOr<std::unique_ptr<FlexMatchObjective>> Create(
      const FlexMatchOptions& options, int64_t pool_size, torch::Device device,
      int64_t embedding_dim = 0, uint64_t seed = 0);

  std::string name() const override { return "flexmatch"; }
  bool uses_labels() const override { return true; }
  std::vector<std::string> metric_names() const override {
    return pseudo_labelling_->MetricNames(
        {"loss_x", "loss_u", "mask_rate", "min_threshold"});
  }
  std::vector<torch::nn::Module*> trained_modules() override {
    return pseudo_labelling_->TrainedModules();
  }
  // Throws c10::Error when StepData's pool is not `pool_size` images.
  ObjectiveLoss Loss(const StepContext& context, const StepData& data) override;
  void Save(torch::serialize::OutputArchive& archive) const override;
  void Load(torch::serialize::InputArchive& archive) override;

  const FlexMatchThresholds& thresholds() const { return thresholds_; }

 private:
  FlexMatchObjective(const FlexMatchOptions& options, int64_t pool_size,
                     torch::Device device,
                     std::unique_ptr<PseudoLabelling> pseudo_labelling);
  FlexMatchOptions options_;
  int64_t pool_size_;
  FlexMatchThresholds thresholds_;
  std::unique_ptr<PseudoLabelling> pseudo_labelling_;
};

}  // namespace trainer

#endif  // TRAINER_OBJECTIVES_FLEXMATCH_H_
