// Features for selecting before any label exists: PCA of the raw pixels.
#ifndef TRAINER_SELECT_LABEL_FREE_FEATURES_H_
#define TRAINER_SELECT_LABEL_FREE_FEATURES_H_

#include <torch/types.h>

#include <cstdint>

#include "absl/status/statusor.h"

namespace trainer {

// Options of LabelFreeFeatures.
struct LabelFreeFeatureOptions {
  // Principal components kept (the feature dimension).
  int dims = 64;
  // The covariance is estimated from at most this many images, taken at an
  // even stride (deterministic); every image is projected.
  int64_t max_fit_images = 10000;
};

// Returns [N, dims] float features on the images' device: the images
// (any [N, ...] floating point tensor, e.g. [N, 1, 28, 28] in [0, 1]) are
// flattened, centred, projected on the top `dims` principal components of the
// pixel covariance, and L2-normalised row by row. Each component's sign is
// fixed (largest loading positive), so the result is deterministic.
// INVALID_ARGUMENT if there are fewer than 2 images or dims is not in
// [1, pixels]; INTERNAL if torch fails.
absl::StatusOr<torch::Tensor> LabelFreeFeatures(
    const torch::Tensor& images, const LabelFreeFeatureOptions& options);

// LabelFreeFeatures with default options except `dims`.
absl::StatusOr<torch::Tensor> LabelFreeFeatures(const torch::Tensor& images,
                                                int dims);

}  // namespace trainer

#endif  // TRAINER_SELECT_LABEL_FREE_FEATURES_H_
