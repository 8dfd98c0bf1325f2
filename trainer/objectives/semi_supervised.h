// What the pseudo-labelling objectives (fixmatch, flexmatch, freematch)
// share: the step's batch shape and augmentation, its forward pass over the
// labelled batch and two views of the unlabelled images, and the way from
// the weak views' logits to pseudo-label distributions (distribution
// alignment, CoMatch's memory smoothing) with CoMatch's graph-contrastive
// term. Each objective adds only its own thresholding.
#ifndef TRAINER_OBJECTIVES_SEMI_SUPERVISED_H_
#define TRAINER_OBJECTIVES_SEMI_SUPERVISED_H_

#include <torch/nn/module.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
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

// Batch shape, augmentation and pseudo-labelling shared by fixmatch,
// flexmatch and freematch.
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
  // CoMatch's graph-contrastive term on the weak and strong views and its
  // pseudo-label memory (graph_contrast.h); off while its weight is 0.
  GraphContrastOptions contrast;
  // When a step's data carries a teacher's probabilities (a distillation
  // stage), the pseudo-label distribution is (1 - teacher_weight) * the
  // model's own + teacher_weight * the teacher's, before the contrast's
  // memory smoothing; 1 trains on the teacher's alone. In [0, 1].
  double teacher_weight = 1.0;
};

// INVALID_ARGUMENT unless batch_size and mu are positive, lambda_u is
// non-negative, alignment_momentum and teacher_weight are in [0, 1) and
// [0, 1], the strong augmentation's
// ranges are valid (num_ops, posterize bits, cutout fraction in [0, 1]), the contrast's options are (ValidateGraphContrastOptions)
// and its memory, when on, holds one step's (mu + 1) * batch_size images.
absl::Status ValidateSemiSupervisedOptions(const SemiSupervisedOptions& o);

// Logits of one semi-supervised step: the labelled batch, and the weak and
// strong views of the same unlabelled images.
struct SemiSupervisedLogits {
  torch::Tensor logits_x;          // [B, C]
  torch::Tensor targets_x;         // [B] int64
  torch::Tensor logits_u_weak;     // [U, C], detached
  torch::Tensor logits_u_strong;   // [U, C]
  torch::Tensor unlabelled_index;  // [U] int64: rows of the unlabelled pool
  // The teacher's probabilities of those rows [U, C] when the step's data
  // has them; undefined otherwise.
  torch::Tensor teacher_probs;
  // The model's embeddings of the labelled images [B, E], of the weak views
  // (detached unless the weak forward is joint) and of the strong views
  // [U, E].
  torch::Tensor embedding_x;
  torch::Tensor embedding_u_weak;
  torch::Tensor embedding_u_strong;
};

// Samples batch_size labelled and mu * batch_size unlabelled images with the
// context's generator, augments them (weak for labelled, weak + strong for
// unlabelled) and runs the model over them: one forward over the
// concatenation, or with weak_forward kSeparate / kEma one over the labelled
// and strong images and a no-grad one of the model / EMA model over the weak
// views. Throws c10::Error.
SemiSupervisedLogits SemiSupervisedForward(
    const StepContext& context, const StepData& data,
    const SemiSupervisedOptions& options);

// One step's pseudo-labels (PseudoLabelling::Label).
struct PseudoLabels {
  // [U, C] float32, detached: the distributions the objective thresholds
  // and trains the strong views towards.
  torch::Tensor probs;
  // The contrast head's projections; empty while the contrast is off.
  ContrastProjections projections;
};

// From the weak views' logits to pseudo-label distributions, and the
// contrastive term, with their state (alignment's class prior, the
// contrast's head and memory). Owned by one objective; not thread-safe.
class PseudoLabelling {
 public:
  // For a model with `num_classes` outputs and `embedding_dim` embedding
  // features (needed only with the contrast on); state on `device`; the
  // contrast head's initial weights follow `seed`. INVALID_ARGUMENT for bad
  // options (ValidateSemiSupervisedOptions) or sizes.
  static absl::StatusOr<std::unique_ptr<PseudoLabelling>> Create(
      const SemiSupervisedOptions& options, int64_t num_classes,
      torch::Device device, int64_t embedding_dim, uint64_t seed);

  // softmax of the weak views' logits (float32, detached), aligned when
  // distribution alignment is on, blended with the teacher's probabilities
  // when the logits carry them (SemiSupervisedOptions::teacher_weight), then
  // smoothed over the contrast's memory when it has one (which this call
  // also updates). Call once per step.
  PseudoLabels Label(const SemiSupervisedLogits& logits);

  // With the contrast on: adds weight * its loss against the graph of
  // `labels.probs` to loss.total, and its two scalars (loss_c,
  // contrast_neighbours) after the others.
  void AddTerms(const PseudoLabels& labels, ObjectiveLoss& loss);

  // `names` followed by the contrast's metric names when it is on.
  std::vector<std::string> MetricNames(std::vector<std::string> names) const;

  // Modules trained besides the model (the contrast's head).
  std::vector<torch::nn::Module*> TrainedModules();

  // The state under "alignment" (when on), "contrast_head" and
  // "contrast_memory" (when on). Load throws c10::Error when the archive
  // lacks the contrast's state.
  void Save(torch::serialize::OutputArchive& archive) const;
  void Load(torch::serialize::InputArchive& archive);

  const DistributionAlignment& alignment() const { return alignment_; }
  // Null while the contrast is off.
  const GraphContrast* contrast() const { return contrast_.get(); }

 private:
  PseudoLabelling(DistributionAlignment alignment,
                  std::unique_ptr<GraphContrast> contrast,
                  double teacher_weight)
      : alignment_(std::move(alignment)),
        contrast_(std::move(contrast)),
        teacher_weight_(teacher_weight) {}
  DistributionAlignment alignment_;
  std::unique_ptr<GraphContrast> contrast_;  // null when off
  double teacher_weight_;
};

}  // namespace trainer

#endif  // TRAINER_OBJECTIVES_SEMI_SUPERVISED_H_
