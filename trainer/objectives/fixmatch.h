// FixMatch (Sohn et al. 2020): cross-entropy on weakly augmented labelled
// images plus cross-entropy of strongly augmented unlabelled views against
// the hard pseudo-labels of their weak views, counted where the weak view's
// confidence reaches a fixed threshold.
#ifndef TRAINER_OBJECTIVES_FIXMATCH_H_
#define TRAINER_OBJECTIVES_FIXMATCH_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "trainer/learn/augment.h"
#include "trainer/learn/objective.h"
#include "trainer/objectives/distribution_alignment.h"
#include "trainer/objectives/graph_contrast.h"

namespace trainer {

// Which forward pass gives the weak unlabelled views' logits (the
// pseudo-labels).
enum class WeakViewForward {
  // The model, inside one forward over labelled, weak and strong images
  // (FixMatch's and USB's use_cat=True): the weak rows take part in batch
  // norm's statistics and, with zero gradient, in the backward pass.
  kJoint,
  // The model in its own no-grad forward over the weak views (USB's
  // use_cat=False; batch norm still in training mode): no backward work for
  // them, about 30 % less compute per step at mu 7.
  kSeparate,
  // The EMA model in eval mode, no grad (a mean teacher).
  kEma,
};

// "joint", "separate" or "ema"; INVALID_ARGUMENT for anything else.
absl::StatusOr<WeakViewForward> ParseWeakViewForward(const std::string& name);
std::string WeakViewForwardName(WeakViewForward forward);

// Batch shape and augmentation shared by the pseudo-labelling objectives
// (fixmatch, flexmatch, freematch).
struct SemiSupervisedOptions {
  // Labelled images per step (sampled with replacement).
  int batch_size = 64;
  // Unlabelled images per step = mu * batch_size.
  int mu = 7;
  // Weight of the unsupervised loss.
  double lambda_u = 1.0;
  // Where the weak views' logits come from.
  WeakViewForward weak_forward = WeakViewForward::kJoint;
  // Align the weak views' probabilities to a uniform class prior before
  // pseudo-labelling (distribution_alignment.h), with this EMA momentum.
  bool distribution_alignment = false;
  double alignment_momentum = 0.999;
  // Augmentation of labelled images and the weak unlabelled view.
  WeakAugmentOptions weak;
  // Augmentation of the strong unlabelled view.
  StrongAugmentOptions strong;
  // CoMatch's graph-contrastive term on the weak and strong views
  // (graph_contrast.h); off while its weight is 0.
  GraphContrastOptions contrast;
};

// INVALID_ARGUMENT unless batch_size and mu are positive, lambda_u is
// non-negative, alignment_momentum is in [0, 1), the strong
// augmentation's ranges are valid and so is the contrast's
// (ValidateGraphContrastOptions).
absl::Status ValidateSemiSupervisedOptions(const SemiSupervisedOptions& o);

// The distribution alignment `o` asks for, over `num_classes` classes.
DistributionAlignmentOptions AlignmentOptions(const SemiSupervisedOptions& o,
                                              int64_t num_classes);

// Logits of one semi-supervised step: the labelled batch, and the weak and
// strong views of the same unlabelled images.
struct SemiSupervisedLogits {
  torch::Tensor logits_x;         // [B, C]
  torch::Tensor targets_x;        // [B] int64
  torch::Tensor logits_u_weak;    // [U, C], detached
  torch::Tensor logits_u_strong;  // [U, C]
  torch::Tensor unlabelled_index;  // [U] int64: rows of the unlabelled pool
  // The model's embeddings of the weak views (detached unless the weak
  // forward is joint) and of the strong views, [U, E].
  torch::Tensor embedding_u_weak;
  torch::Tensor embedding_u_strong;
};

// Samples batch_size labelled and mu * batch_size unlabelled images with the
// context's generator, augments them (weak for labelled, weak + strong for
// unlabelled) and runs the model over them: one forward over the
// concatenation, or with weak_forward kSeparate / kEma one over the labelled
// and strong images and a no-grad one of the model / EMA model over the weak
// views. Throws c10::Error.
SemiSupervisedLogits SemiSupervisedForward(const StepContext& context,
                                           const StepData& data,
                                           const SemiSupervisedOptions& options);

// The graph contrast `options.contrast` asks for, its head on `device` and
// seeded by `seed`; null while its weight is 0. INVALID_ARGUMENT when it is
// on and embedding_dim <= 0 (see GraphContrast::Create).
absl::StatusOr<std::unique_ptr<GraphContrast>> MakeGraphContrast(
    const SemiSupervisedOptions& options, int64_t embedding_dim,
    torch::Device device, uint64_t seed);

// `names` followed by the contrast's metrics (loss_c, contrast_neighbours)
// when `contrast` is not null.
std::vector<std::string> WithContrastMetrics(std::vector<std::string> names,
                                             const GraphContrast* contrast);

// The modules the contrast trains (its head); none when `contrast` is null.
std::vector<torch::nn::Module*> ContrastModules(GraphContrast* contrast);

// The contrast's head in a checkpoint, under "contrast_head"; nothing when
// `contrast` is null. Load throws c10::Error when the archive lacks it.
void SaveGraphContrast(const GraphContrast* contrast,
                       torch::serialize::OutputArchive& archive);
void LoadGraphContrast(GraphContrast* contrast,
                       torch::serialize::InputArchive& archive);

// Adds the contrast term to `loss` when `contrast` is not null: weight * term
// to the total, its two scalars after the others (WithContrastMetrics).
// `probs` are the weak views' pseudo-label distributions [U, C].
void AddGraphContrast(GraphContrast* contrast,
                      const SemiSupervisedLogits& logits,
                      const torch::Tensor& probs, ObjectiveLoss& loss);

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
// distribution alignment) instead of their logits.
FixMatchLoss ComputeFixMatchLossFromProbs(const torch::Tensor& logits_x,
                                          const torch::Tensor& targets_x,
                                          const torch::Tensor& probs_u_weak,
                                          const torch::Tensor& logits_u_strong,
                                          double threshold, double lambda_u);

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
  // the distribution alignment's state; `embedding_dim` and `seed` make the
  // graph contrast's head (MakeGraphContrast), when it is on.
  static absl::StatusOr<std::unique_ptr<FixMatchObjective>> Create(
      const FixMatchOptions& options, torch::Device device = torch::kCPU,
      int64_t embedding_dim = 0, uint64_t seed = 0);

  std::string name() const override { return "fixmatch"; }
  bool uses_labels() const override { return true; }
  // Metrics: loss_x, loss_u, mask_rate, then the contrast's.
  std::vector<std::string> metric_names() const override {
    return WithContrastMetrics({"loss_x", "loss_u", "mask_rate"},
                               contrast_.get());
  }
  std::vector<torch::nn::Module*> trained_modules() override {
    return ContrastModules(contrast_.get());
  }
  ObjectiveLoss Loss(const StepContext& context,
                     const StepData& data) override;

  void Save(torch::serialize::OutputArchive& archive) const override;
  void Load(torch::serialize::InputArchive& archive) override;

  const FixMatchOptions& options() const { return options_; }
  const DistributionAlignment& alignment() const { return alignment_; }

 private:
  FixMatchObjective(const FixMatchOptions& options, torch::Device device,
                    std::unique_ptr<GraphContrast> contrast);
  FixMatchOptions options_;
  DistributionAlignment alignment_;
  std::unique_ptr<GraphContrast> contrast_;  // null when off
};

}  // namespace trainer

#endif  // TRAINER_OBJECTIVES_FIXMATCH_H_
