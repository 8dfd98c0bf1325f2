// NT-Xent, the contrastive loss of SimCLR (Chen et al. 2020): normalised
// temperature-scaled cross-entropy over the 2N projections of two views of N
// images, where each projection's positive is the other view of its image and
// the other 2N - 2 projections are its negatives; and its multi-view form for
// SwAV's multi-crop (Caron et al. 2020), as VISSL's multi-crop SimCLR loss
// has it: every other view of the same image is a positive.
#ifndef TRAINER_OBJECTIVES_NT_XENT_H_
#define TRAINER_OBJECTIVES_NT_XENT_H_

#include <torch/types.h>

#include <vector>

namespace trainer {

// What ComputeNtXentLoss returns; both 0-d float32 on the inputs' device.
struct NtXentLoss {
  // Mean over the 2N rows of the cross-entropy; differentiable.
  torch::Tensor loss;
  // Fraction of the 2N rows whose positive is their most similar other
  // projection (a tie with a negative may count either way); detached.
  torch::Tensor positive_accuracy;
};

// NT-Xent of z1 and z2 ([N, D] each, row i of both the projections of two
// views of image i; any floating dtype): rows are L2-normalised, the
// [2N, 2N] cosine similarities are divided by `temperature`, each row's
// similarity to itself is excluded, and row i's target is i + N (mod 2N).
// Computed in float32 with autocast disabled, so it is safe to call under
// bf16 autocast; pure tensor code without host synchronisation. Throws
// c10::Error unless z1 and z2 are 2-d with equal shapes and N >= 2, D >= 1,
// and temperature > 0.
NtXentLoss ComputeNtXentLoss(const torch::Tensor& z1, const torch::Tensor& z2,
                             double temperature);

// Multi-view NT-Xent of V >= 2 views ([N, D] each, row i of every view a
// projection of image i): rows are L2-normalised, the [VN, VN] cosine
// similarities s are divided by `temperature` and each row's similarity to
// itself is excluded; a row's positives are the V - 1 other views of its
// image, and its loss is -log(sum over positives of exp(s / t) / sum over
// all other rows of exp(s / t)). For V = 2 this is ComputeNtXentLoss.
// positive_accuracy counts the rows whose most similar other row is a
// positive. Same precision, autocast and error rules as ComputeNtXentLoss
// (all views of equal shape).
NtXentLoss ComputeMultiViewNtXentLoss(const std::vector<torch::Tensor>& views,
                                      double temperature);

}  // namespace trainer

#endif  // TRAINER_OBJECTIVES_NT_XENT_H_
