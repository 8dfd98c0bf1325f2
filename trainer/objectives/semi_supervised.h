// What the pseudo-labelling objectives (fixmatch, flexmatch, freematch,
// softmatch) share: the step's batch shape and augmentation, its forward
// pass over the labelled batch and two views of the unlabelled images, and
// the way from the weak views' logits to pseudo-label distributions
// (distribution alignment, CoMatch's memory smoothing) with CoMatch's
// graph-contrastive term, and which logits the pseudo-labels train (the
// model's own, or DST's decoupled pseudo head). Each objective adds only its
// own thresholding.
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
#include "trainer/learn/heads.h"
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
  // Debiased Self-Training's decoupled pseudo head (Chen et al. 2022): the
  // pseudo-labels, still made by the model's classifier on the weak views,
  // train a separate head on the strong views' embeddings instead of the
  // classifier itself, so the classifier learns from the labels only and
  // the backbone from both. The head is an MLP (Linear(E, 2E) - BatchNorm -
  // ReLU - Linear(2E, classes)) that evaluation never uses.
  bool pseudo_head = false;
  // Train the strong views towards the whole pseudo-label distribution
  // (soft targets: -sum_c p_c log softmax_c, as CoMatch does with its
  // memory-smoothed distributions) instead of towards its argmax.
  bool soft_targets = false;
  // AdaMatch's labelled strong views (Berthelot et al. 2022): the labelled
  // batch also goes through the strong augmentation (a second view of the
  // same draws), and the supervised loss is the cross-entropy over both
  // views, each weighing half. Costs batch_size more images per forward.
  bool strong_labelled = false;
  // Weak views whose class probabilities each pseudo-label averages
  // (MixMatch's K): the step's weak view, and pseudo_label_views - 1 fresh
  // weak augmentations of the same images drawn after the step's other
  // draws, each forwarded without gradient by the model that gives the
  // pseudo-labels (the EMA model with weak_forward kEma, else the model, in
  // its current mode: in training mode batch norm sees each extra view as
  // its own batch). logits_u_weak is then the log of the mean probability.
  // 1 is one view, as before; each extra view costs mu * batch_size
  // forward-only images per step. In [1, 8].
  int pseudo_label_views = 1;
  // Mixup of the labelled batch (Zhang et al. 2018; MixMatch's variant):
  // with alpha > 0 each labelled image's weak view is also mixed with the
  // one before it in the batch (the first with the last; the batch is drawn
  // at random, so that is a random partner), lambda * own + (1 - lambda) * partner with lambda =
  // max(l, 1 - l), l ~ Beta(alpha, alpha) per image, and those batch_size
  // mixed images join the forward; the supervised loss adds their
  // lambda-weighted cross-entropy towards both targets. The labelled rows
  // themselves (and what the contrast sees of them) stay unmixed. 0 is off,
  // as before; on costs batch_size more images per forward. Finite, >= 0.
  double mixup_alpha = 0.0;
  // Mixup of the pseudo-labelled batch too (MixMatch mixes its guessed
  // labels, ICT and Arazo et al. 2020 against confirmation bias): each
  // unlabelled image's weak view is also mixed with the one before it, with
  // its own share drawn as for the labelled batch (mixup_alpha, fresh
  // draws after the labelled ones), and those mu * batch_size mixed images
  // join the forward; the pseudo-label loss (PseudoLabelLoss) adds their
  // share-weighted loss towards both images' pseudo-labels, each under its
  // image's mask or weight. Needs mixup_alpha > 0 and the pseudo head off;
  // costs mu * batch_size more images per forward. Off by default.
  bool mixup_unlabelled = false;
};

// INVALID_ARGUMENT unless batch_size and mu are positive, lambda_u is
// non-negative, alignment_momentum and teacher_weight are in [0, 1) and
// [0, 1], the strong augmentation's
// ranges are valid (known ops, each listed once; num_ops at most the number
// it chooses among; posterize bits, cutout fraction in [0, 1],
// finite enhance factors with 0 <= min <= max), the
// contrast's options are (ValidateGraphContrastOptions) and its memory, when
// on, holds one step's (mu + 1) * batch_size images, pseudo_label_views
// is in [1, 8], mixup_alpha is finite and non-negative, and
// mixup_unlabelled, when on, has mixup_alpha > 0 and no pseudo head.
absl::Status ValidateSemiSupervisedOptions(const SemiSupervisedOptions& o);

// Logits of one semi-supervised step: the labelled batch, and the weak and
// strong views of the same unlabelled images.
struct SemiSupervisedLogits {
  torch::Tensor logits_x;          // [B, C]
  torch::Tensor targets_x;         // [B] int64
  // The labelled images' strong views [B, C] (same rows as logits_x) with
  // strong_labelled on; undefined otherwise.
  torch::Tensor logits_x_strong;
  // With mixup on, the mixed labelled images' logits [B, C], each image's
  // partner's target [B] int64 (its own is targets_x) and its own share
  // lambda [B] float32 in [0.5, 1]; undefined otherwise.
  torch::Tensor logits_x_mixed;
  torch::Tensor targets_x_partner;
  torch::Tensor mix_own_share;
  torch::Tensor logits_u_weak;     // [U, C], detached
  // With mixup_unlabelled on, the mixed unlabelled images' logits [U, C]
  // (row i mixes weak view i with weak view i - 1, cyclically) and each
  // one's own share [U] float32 in [0.5, 1]; undefined otherwise.
  torch::Tensor logits_u_mixed;
  torch::Tensor mix_u_own_share;
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
  // The second strong views' embeddings [U, E] when the contrast is on with
  // two_strong_views; undefined otherwise.
  torch::Tensor embedding_u_strong_second;
};

// Samples batch_size labelled and mu * batch_size unlabelled images with the
// context's generator, augments them (weak for labelled, weak + strong for
// unlabelled; with strong_labelled also strong for labelled) and runs the
// model over them: one forward over the concatenation, or with weak_forward
// kSeparate / kEma one over the labelled and strong images and a no-grad one
// of the model / EMA model over the weak views. With pseudo_label_views > 1
// logits_u_weak is the log of the mean softmax over that many weak views
// (the first is the one above). With mixup_alpha > 0 the mixed labelled
// images (SemiSupervisedOptions::mixup_alpha) join the forward, their mixing
// drawn after every other draw of the step but the extra pseudo-label
// views; with mixup_unlabelled the mixed unlabelled images too, drawn next.
// With the contrast's two_strong_views (and its weight > 0) a second
// strong view of each unlabelled image, drawn from its own weak base, goes
// through the same forward and gives embedding_u_strong_second. With
// strong_labelled off, one pseudo-label view, one strong view and no mixup
// the draws are those of earlier versions. Throws c10::Error.
SemiSupervisedLogits SemiSupervisedForward(
    const StepContext& context, const StepData& data,
    const SemiSupervisedOptions& options);

// The rows the supervised loss trains: logits_x with targets_x, followed by
// logits_x_strong with targets_x again when it is defined.
struct SupervisedRows {
  torch::Tensor logits;   // [B or 2B, C]
  torch::Tensor targets;  // [B or 2B] int64
};
SupervisedRows LabelledRows(const SemiSupervisedLogits& logits);

// The mean cross-entropy (0-d, float32) over LabelledRows(logits): with
// strong labelled views, the mean of the weak and the strong views' losses.
// With mixed labelled images the mean runs over those rows too, each mixed
// row's loss being lambda * CE(own target) + (1 - lambda) * CE(partner's).
torch::Tensor SupervisedLoss(const SemiSupervisedLogits& logits);

// Per-image cross-entropy [U] (float32) of the strong views' logits [U, C]
// against the pseudo-labels `probs` [U, C] (detached here): against their
// argmax, or with `soft` against the distribution itself. Throws c10::Error
// on mismatched shapes.
torch::Tensor PseudoLabelCrossEntropy(const torch::Tensor& logits_strong,
                                      const torch::Tensor& probs, bool soft);

// The pseudo-label term (0-d, float32): the mean over the strong views of
// weight * PseudoLabelCrossEntropy(strong_logits, probs, soft), `weight`
// [U] being the objective's mask or per-image weight. With mixed unlabelled
// images (logits.logits_u_mixed defined) the mean runs over those rows too,
// row i's loss being share_i * weight_i * CE(probs_i) + (1 - share_i) *
// weight_{i-1} * CE(probs_{i-1}) (its partner's, cyclically), each CE of
// the mixed row's logits. Throws c10::Error on mismatched shapes.
torch::Tensor PseudoLabelLoss(const SemiSupervisedLogits& logits,
                              const torch::Tensor& strong_logits,
                              const torch::Tensor& probs,
                              const torch::Tensor& weight, bool soft);

// One step's pseudo-labels (PseudoLabelling::Label).
struct PseudoLabels {
  // [U, C] float32, detached: the distributions the objective thresholds
  // and trains the strong views towards.
  torch::Tensor probs;
  // The contrast head's projections; empty while the contrast is off.
  ContrastProjections projections;
};

// From the weak views' logits to pseudo-label distributions, the logits
// they train, and the contrastive term, with their state (alignment's class
// prior, the contrast's head and memory, the pseudo head). Owned by one
// objective; not thread-safe.
class PseudoLabelling {
 public:
  // For a model with `num_classes` outputs and `embedding_dim` embedding
  // features (needed only with the contrast or the pseudo head on); state
  // on `device`; the heads' initial weights follow `seed`. INVALID_ARGUMENT
  // for bad options (ValidateSemiSupervisedOptions) or sizes (the contrast
  // and the pseudo head need embedding_dim > 0).
  static absl::StatusOr<std::unique_ptr<PseudoLabelling>> Create(
      const SemiSupervisedOptions& options, int64_t num_classes,
      torch::Device device, int64_t embedding_dim, uint64_t seed);

  // softmax of the weak views' logits (float32, detached), aligned when
  // distribution alignment is on, blended with the teacher's probabilities
  // when the logits carry them (SemiSupervisedOptions::teacher_weight), then
  // smoothed over the contrast's memory when it has one (which this call
  // also updates). Call once per step.
  PseudoLabels Label(const SemiSupervisedLogits& logits);

  // The strong views' logits [U, C] that the pseudo-labels train (and that
  // FreeMatch's fairness term reads): the model's own, or with the pseudo
  // head on, the head's output on the strong views' embeddings (float32).
  torch::Tensor StrongLogits(const SemiSupervisedLogits& logits);

  // With the contrast on: adds weight * its loss against the graph of
  // `labels.probs` to loss.total, and its two scalars (loss_c,
  // contrast_neighbours) after the others.
  void AddTerms(const PseudoLabels& labels, ObjectiveLoss& loss);

  // `names` followed by the contrast's metric names when it is on.
  std::vector<std::string> MetricNames(std::vector<std::string> names) const;

  // Modules trained besides the model (the contrast's head, the pseudo
  // head).
  std::vector<torch::nn::Module*> TrainedModules();

  // The state under "alignment" (when on), "contrast_head" and
  // "contrast_memory" (when on), "pseudo_head" (when on). Load throws
  // c10::Error when the archive lacks the contrast's or the head's state.
  void Save(torch::serialize::OutputArchive& archive) const;
  void Load(torch::serialize::InputArchive& archive);

  const DistributionAlignment& alignment() const { return alignment_; }
  // Null while the contrast is off.
  const GraphContrast* contrast() const { return contrast_.get(); }
  // Empty (null module holder) while the pseudo head is off.
  const ProjectionHead& pseudo_head() const { return pseudo_head_; }

 private:
  PseudoLabelling(DistributionAlignment alignment,
                  std::unique_ptr<GraphContrast> contrast,
                  ProjectionHead pseudo_head, double teacher_weight)
      : alignment_(std::move(alignment)),
        contrast_(std::move(contrast)),
        pseudo_head_(std::move(pseudo_head)),
        teacher_weight_(teacher_weight) {}
  DistributionAlignment alignment_;
  std::unique_ptr<GraphContrast> contrast_;  // null when off
  ProjectionHead pseudo_head_{nullptr};      // null when off
  double teacher_weight_;
};

}  // namespace trainer

#endif  // TRAINER_OBJECTIVES_SEMI_SUPERVISED_H_
