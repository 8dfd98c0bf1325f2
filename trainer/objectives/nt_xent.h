// NT-Xent, the contrastive loss of SimCLR (Chen et al. 2020): normalised
// temperature-scaled cross-entropy over the 2N projections of two views of N
// images, where each projection's positive is the other view of its image and
// the other 2N - 2 projections are its negatives.
#ifndef TRAINER_OBJECTIVES_NT_XENT_H_
#define TRAINER_OBJECTIVES_NT_XENT_H_

#include <torch/types.h>

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

}  // namespace trainer

#endif  // TRAINER_OBJECTIVES_NT_XENT_H_
