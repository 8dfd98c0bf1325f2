// CoMatch's contrastive graph regularisation (Li et al. 2021), as an extra
// term of the pseudo-labelling objectives: the embeddings of two views of
// each unlabelled image go through a projection head, and the similarity
// distribution of one view's projection over the other views' projections
// is pulled towards the pseudo-label graph, where two images are neighbours
// when their pseudo-label distributions agree (p_i . p_j >= a threshold) and
// every image is its own neighbour. Unlike SimCLR's instance contrast it
// pulls images with the same pseudo-label together, and unlike the
// thresholded cross-entropy it learns from every unlabelled image.
//
// With a memory (memory_size > 0) it also smooths the step's pseudo-labels
// over a ring buffer of recent projections with their distributions
// (pseudo_label_memory.h), CoMatch's memory-smoothed pseudo-labelling: the
// objective then thresholds and trains on the smoothed distributions, and
// the graph is built from them.
//
// By default the two views are the weak and the strong view the step
// already computes, so the term costs no extra forward pass; with a no-grad
// weak forward (weak_forward separate or ema) only the strong views'
// projections then receive gradients. With two_strong_views the step draws
// a second strong view of each unlabelled image (a second RandAugment draw,
// as USB's CoMatch; CoMatch's own CIFAR code makes it SimCLR-style: crop and
// colour jitter) and the term contrasts the two strong views; the weak views
// still give the pseudo-labels and fill the memory. They still go through
// the head with the others, so in a joint forward its batch norm passes
// some of the term's gradient to them (the reference's head has no batch
// norm and detaches them).
#ifndef TRAINER_OBJECTIVES_GRAPH_CONTRAST_H_
#define TRAINER_OBJECTIVES_GRAPH_CONTRAST_H_

#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "trainer/learn/heads.h"
#include "trainer/objectives/pseudo_label_memory.h"

namespace trainer {

struct GraphContrastOptions {
  // Weight of the term in the objective's total (CoMatch's lambda_c);
  // 0 turns it off (no head, no metric).
  double weight = 0.0;
  // Softmax temperature of the projections' cosine similarities.
  double temperature = 0.2;
  // An edge of the pseudo-label graph needs p_i . p_j >= this.
  double graph_threshold = 0.8;
  // Size of the projections (CoMatch: 64).
  int64_t projection_dim = 64;
  // Entries of the pseudo-label memory; 0 turns memory smoothing off
  // (CoMatch: 2,560 with B 64, mu 7). Must hold one step's labelled and
  // unlabelled images (checked by the objectives).
  int64_t memory_size = 0;
  // Weight of an image's own distribution in the smoothed one (CoMatch:
  // 0.9); the temperature above is the similarities' to the memory.
  double smoothing_alpha = 0.9;
  // Contrast two strong views of each image (USB's CoMatch) instead
  // of the strong view with the weak one. Costs mu * batch_size more images
  // in the step's forward and backward pass.
  bool two_strong_views = false;
};

// INVALID_ARGUMENT unless weight >= 0, temperature > 0, graph_threshold is
// in [0, 1], projection_dim > 0, memory_size >= 0 (and 0 while the weight is
// 0: the memory needs the head), smoothing_alpha is in [0, 1] and
// two_strong_views is off while the weight is 0.
absl::Status ValidateGraphContrastOptions(const GraphContrastOptions& o);

// The loss terms; 0-d float32 on the inputs' device.
struct GraphContrastLoss {
  // Mean over the rows of -sum_j Q_ij log softmax_j(a_i . b_j / T);
  // differentiable in `anchors` and `others`.
  torch::Tensor loss;
  // Mean number of neighbours per image in the graph, itself included
  // (1 means the term is SimCLR-like instance contrast); detached.
  torch::Tensor mean_neighbours;
};

// The graph-contrastive loss of `anchors` and `others` ([U, D] each, row i
// of both two views of image i; L2-normalised here) against the graph of
// `probs` ([U, C] pseudo-label distributions, detached here): Q = probs
// probs^T with the diagonal set to 1, entries below graph_threshold set to 0,
// rows normalised to sum 1. Computed in float32 with autocast disabled; pure
// tensor code (no host synchronisation). Throws c10::Error on mismatched
// shapes, U < 2 or temperature <= 0.
GraphContrastLoss ComputeGraphContrastLoss(const torch::Tensor& anchors,
                                           const torch::Tensor& others,
                                           const torch::Tensor& probs,
                                           double temperature,
                                           double graph_threshold);

// One step's pass through the projection head.
struct ContrastProjections {
  torch::Tensor weak;           // [U, P] the weak views'
  torch::Tensor strong;         // [U, P] the strong views'
  torch::Tensor strong_second;  // [U, P] defined only with two_strong_views
  torch::Tensor labelled;       // [B, P] detached; defined only with a memory
};

// The term with its projection head and, when asked for, its memory. Not
// thread-safe.
class GraphContrast {
 public:
  // `embedding_dim` is the model's embedding size and `num_classes` its
  // output's; the head's initial weights follow `seed`. INVALID_ARGUMENT
  // for bad options, embedding_dim <= 0 or num_classes < 2; UNAVAILABLE if
  // the head cannot be placed on `device`.
  static absl::StatusOr<std::unique_ptr<GraphContrast>> Create(
      const GraphContrastOptions& options, int64_t embedding_dim,
      int64_t num_classes, torch::Device device, uint64_t seed);

  // Projects the weak and strong views' embeddings ([U, E] each), with
  // two_strong_views the second strong views' (`embedding_strong_second`,
  // [U, E]; ignored otherwise) and, with a memory, the labelled images'
  // ([B, E]; ignored without one) in one pass through the head, so its
  // batch norm sees them together. Throws c10::Error, also when
  // two_strong_views is on and the second strong embeddings are missing.
  ContrastProjections Project(
      const torch::Tensor& embedding_weak,
      const torch::Tensor& embedding_strong,
      const torch::Tensor& embedding_labelled,
      const torch::Tensor& embedding_strong_second = {});

  // With a memory: the weak views' pseudo-label distributions `probs`
  // [U, C] smoothed over the memory (PseudoLabelMemory::Smooth), after which
  // the step's weak projections with `probs` and its labelled projections
  // with the one-hot `targets_labelled` [B] are pushed into it. Without
  // one: `probs` unchanged. Throws c10::Error.
  torch::Tensor SmoothPseudoLabels(const ContrastProjections& projections,
                                   const torch::Tensor& probs,
                                   const torch::Tensor& targets_labelled);

  // The loss of the step's projections against the graph of `probs` [U, C]:
  // the strong views are the anchors, the weak views (with two_strong_views
  // the second strong views) the others. Throws c10::Error.
  GraphContrastLoss Loss(const ContrastProjections& projections,
                         const torch::Tensor& probs);

  // The projection head, for the learner's optimiser.
  torch::nn::Module* head() { return head_.ptr().get(); }
  // Null without a memory.
  const PseudoLabelMemory* memory() const { return memory_.get(); }
  const GraphContrastOptions& options() const { return options_; }

  // The head's weights under `prefix` + "_head" and the memory under
  // `prefix` + "_memory"; Load throws c10::Error when they are missing.
  void Save(torch::serialize::OutputArchive& archive,
            const std::string& prefix) const;
  void Load(torch::serialize::InputArchive& archive, const std::string& prefix);

 private:
  GraphContrast(const GraphContrastOptions& options, ProjectionHead head,
                std::unique_ptr<PseudoLabelMemory> memory)
      : options_(options), head_(std::move(head)), memory_(std::move(memory)) {}
  GraphContrastOptions options_;
  ProjectionHead head_;
  std::unique_ptr<PseudoLabelMemory> memory_;  // null without one
};

}  // namespace trainer

#endif  // TRAINER_OBJECTIVES_GRAPH_CONTRAST_H_
