// BYOL (Grill et al. 2020): two contrastive views of each unlabelled image;
// the online network (the model, a projector and a predictor) predicts the
// target network's projection of the other view. The target is a slow
// exponential moving average of the online model and projector, so the
// objective needs no negative pairs, which suits the small batches a CPU
// affords. Uses no labels.
//
// The target model is the learner's EMA copy (StepContext::ema): the
// pretraining stage sets the learner's ema_decay to `target_decay`
// (RunPretraining), and the objective keeps its own EMA of the projector
// at the same decay. The decay is constant; BYOL's reference raises it
// towards 1 on a cosine over training.
#ifndef TRAINER_OBJECTIVES_BYOL_H_
#define TRAINER_OBJECTIVES_BYOL_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "trainer/learn/augment.h"
#include "trainer/learn/heads.h"
#include "trainer/learn/objective.h"

namespace trainer {

struct ByolOptions {
  // Images per step (each gives two views, through both networks).
  int batch_size = 256;
  // EMA decay of the target network, in [0, 1).
  double target_decay = 0.99;
  // The views' augmentation (the same family as SimCLR's).
  ContrastiveAugmentOptions augment;
  // Projector and predictor: Linear - BatchNorm - ReLU - Linear, each with
  // this hidden width; the projection has projection_dim outputs and the
  // predictor maps it to the same size.
  int64_t hidden_dim = 256;
  int64_t projection_dim = 128;
};

// Metrics: target_cosine (mean cosine similarity between the online
// predictions and the target projections of the other view; the loss is
// 4 - 4 * target_cosine, both directions summed).
class ByolObjective : public TrainingObjective {
 public:
  // `embedding_dim` is the model's embedding size. INVALID_ARGUMENT for
  // batch_size < 2, target_decay outside [0, 1), non-positive sizes or a
  // crop outside 0 < scale_min <= scale_max <= 1, 0 < ratio_min <=
  // ratio_max; UNAVAILABLE if the heads cannot be placed on `device`.
  static absl::StatusOr<std::unique_ptr<ByolObjective>> Create(
      const ByolOptions& options, int64_t embedding_dim, torch::Device device,
      uint64_t seed);

  std::string name() const override { return "byol"; }
  bool uses_labels() const override { return false; }
  std::vector<std::string> metric_names() const override {
    return {"target_cosine"};
  }
  // The projector and the predictor; the target projector is not trained.
  std::vector<torch::nn::Module*> trained_modules() override {
    return {projector_.ptr().get(), predictor_.ptr().get()};
  }
  // Moves the target projector one EMA step towards the projector, then
  // computes the loss with the target model (context.ema, run in train mode
  // for batch statistics as BYOL's target does, then put back in eval mode)
  // under no gradient.
  ObjectiveLoss Loss(const StepContext& context,
                     const StepData& data) override;
  void Save(torch::serialize::OutputArchive& archive) const override;
  void Load(torch::serialize::InputArchive& archive) override;

  // The target projector (for tests).
  ProjectionHead& target_projector() { return target_projector_; }

 private:
  ByolObjective(const ByolOptions& options, ProjectionHead projector,
                ProjectionHead predictor, ProjectionHead target_projector)
      : options_(options),
        projector_(std::move(projector)),
        predictor_(std::move(predictor)),
        target_projector_(std::move(target_projector)) {}
  ByolOptions options_;
  ProjectionHead projector_;
  ProjectionHead predictor_;
  ProjectionHead target_projector_;
};

}  // namespace trainer

#endif  // TRAINER_OBJECTIVES_BYOL_H_
