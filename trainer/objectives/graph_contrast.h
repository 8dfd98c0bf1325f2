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
// Differences from CoMatch's reference: the two views are the weak and the
// strong view the step already computes (CoMatch draws a second strong
// view), so the term costs no extra forward pass; there is no memory-
// smoothed pseudo-labelling. With a no-grad weak forward (weak_forward
// separate or ema) only the strong views' projections receive gradients.
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
};

// INVALID_ARGUMENT unless weight >= 0, temperature > 0, graph_threshold is
// in [0, 1] and projection_dim > 0.
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

// The term with its projection head. Not thread-safe.
class GraphContrast {
 public:
  // `embedding_dim` is the model's embedding size; the head's initial
  // weights follow `seed`. INVALID_ARGUMENT for bad options or
  // embedding_dim <= 0; UNAVAILABLE if the head cannot be placed on
  // `device`.
  static absl::StatusOr<std::unique_ptr<GraphContrast>> Create(
      const GraphContrastOptions& options, int64_t embedding_dim,
      torch::Device device, uint64_t seed);

  // The loss for the weak and strong views' embeddings ([U, E]) and the
  // weak views' pseudo-label distributions [U, C]: the strong views are the
  // anchors, the weak views the others. Throws c10::Error.
  GraphContrastLoss Loss(const torch::Tensor& embedding_weak,
                         const torch::Tensor& embedding_strong,
                         const torch::Tensor& probs);

  // The projection head, for the learner's optimiser.
  torch::nn::Module* head() { return head_.ptr().get(); }
  const GraphContrastOptions& options() const { return options_; }

  // The head's weights under `key`; Load throws c10::Error without them.
  void Save(torch::serialize::OutputArchive& archive,
            const std::string& key) const;
  void Load(torch::serialize::InputArchive& archive, const std::string& key);

 private:
  GraphContrast(const GraphContrastOptions& options, ProjectionHead head)
      : options_(options), head_(std::move(head)) {}
  GraphContrastOptions options_;
  ProjectionHead head_;
};

}  // namespace trainer

#endif  // TRAINER_OBJECTIVES_GRAPH_CONTRAST_H_
