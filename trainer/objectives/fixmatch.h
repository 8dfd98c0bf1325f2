// FixMatch (Sohn et al. 2020): cross-entropy on weakly augmented labelled
// images plus cross-entropy of strongly augmented unlabelled views against
// the hard pseudo-labels of their weak views, counted where the weak view's
// confidence reaches a fixed threshold.
#ifndef TRAINER_OBJECTIVES_FIXMATCH_H_
#define TRAINER_OBJECTIVES_FIXMATCH_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "trainer/learn/objective.h"
#include "trainer/objectives/semi_supervised.h"

namespace trainer {

// The FixMatch loss terms; 0-d float32 tensors on the logits' device.
struct FixMatchLoss {
  torch::Tensor total;         // supervised + lambda_u * unsupervised
  torch::Tensor supervised;    // mean cross-entropy on labelled images
  torch::Tensor unsupervised;  // mean over ALL unlabelled of CE * mask
  torch::Tensor mask_rate;     // fraction of unlabelled images above tau
};

// Computes the FixMatch loss. logits_x [B, C] with targets_x [B] (int64);
// logits_u_weak and logits_u_strong [U, C] for two views of the same
// unlabelled images. Pseudo-labels are argmax of softmax(logits_u_weak),
// detached; an image is masked in when its max probability >= threshold.
// Logits may be any floating type; the loss is computed in float32. Throws
// c10::Error on mismatched shapes or out-of-range targets.
FixMatchLoss ComputeFixMatchLoss(const torch::Tensor& logits_x,
                                 const torch::Tensor& targets_x,
                                 const torch::Tensor& logits_u_weak,
                                 const torch::Tensor& logits_u_strong,
                                 double threshold, double lambda_u);

// The same from the weak views' probabilities [U, C] (e.g. after
// distribution alignment) instead of their logits; with `soft_targets` the
// strong views train towards those distributions, not their argmax
// (PseudoLabelCrossEntropy).
FixMatchLoss ComputeFixMatchLossFromProbs(const torch::Tensor& logits_x,
                                          const torch::Tensor& targets_x,
                                          const torch::Tensor& probs_u_weak,
                                          const torch::Tensor& logits_u_strong,
                                          double threshold, double lambda_u,
                                          bool soft_targets = false);

struct FixMatchOptions {
  SemiSupervisedOptions batch;
  // Confidence threshold tau: an unlabelled image counts when the weak
  // view's highest class probability is >= threshold.
  double threshold = 0.95;
  // Classes of the model's output (for distribution alignment).
  int64_t num_classes = 10;
};

class FixMatchObjective : public TrainingObjective {
 public:
  // INVALID_ARGUMENT for bad options (threshold outside [0, 1],
  // num_classes < 2, or see ValidateSemiSupervisedOptions). `device` holds
  // the pseudo-labelling's state; `embedding_dim` and `seed` make the graph
  // contrast's head (PseudoLabelling::Create), when it is on.
  static absl::StatusOr<std::unique_ptr<FixMatchObjective>> Create(
      const FixMatchOptions& options, torch::Device device = torch::kCPU,
      int64_t embedding_dim = 0, uint64_t seed = 0);

  std::string name() const override { return "fixmatch"; }
  bool uses_labels() const override { return true; }
  // Metrics: loss_x, loss_u, mask_rate, then the contrast's.
  std::vector<std::string> metric_names() const override {
    return pseudo_labelling_->MetricNames({"loss_x", "loss_u", "mask_rate"});
  }
  std::vector<torch::nn::Module*> trained_modules() override {
    return pseudo_labelling_->TrainedModules();
  }
  ObjectiveLoss Loss(const StepContext& context, const StepData& data) override;

  void Save(torch::serialize::OutputArchive& archive) const override;
  void Load(torch::serialize::InputArchive& archive) override;

  const FixMatchOptions& options() const { return options_; }
  const PseudoLabelling& pseudo_labelling() const { return *pseudo_labelling_; }

 private:
  FixMatchObjective(const FixMatchOptions& options,
                    std::unique_ptr<PseudoLabelling> pseudo_labelling)
      : options_(options), pseudo_labelling_(std::move(pseudo_labelling)) {}
  FixMatchOptions options_;
  std::unique_ptr<PseudoLabelling> pseudo_labelling_;
};

}  // namespace trainer

#endif  // TRAINER_OBJECTIVES_FIXMATCH_H_
