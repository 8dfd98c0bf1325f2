// How well embeddings separate classes, measured with few labels: a
// weighted k-nearest-neighbour classifier on top of them.
#ifndef TRAINER_SELECT_FEATURE_QUALITY_H_
#define TRAINER_SELECT_FEATURE_QUALITY_H_

#include <torch/types.h>

#include <cstdint>

#include "absl/status/statusor.h"

namespace trainer {

// Options of KnnClassify.
struct KnnOptions {
  // Neighbours that vote; clamped to the number of reference points.
  int k = 20;
  // A neighbour of cosine similarity s votes with weight exp(s / temperature)
  // (0.07: the kNN monitor common in self-supervised learning).
  double temperature = 0.07;
  // Labels must lie in [0, num_classes).
  int64_t num_classes = 10;
  // Queries scored at once (a [chunk, L] similarity block exists at a time).
  int64_t chunk_size = 1024;
};

// Returns [N] int64 predicted classes, on query_embeddings' device, for
// query_embeddings [N, D]: the class with the largest summed weight among
// each query's k most cosine-similar rows of reference_embeddings [L, D]
// (rows L2-normalised; ties go to the lower class). reference_labels: [L]
// integers. Computed on reference_embeddings' device; the result does not
// depend on chunk_size. INVALID_ARGUMENT for mismatched or non-floating
// tensors, an empty reference, labels out of range or bad options;
// RESOURCE_EXHAUSTED if the device runs out of memory; INTERNAL for other
// torch errors.
absl::StatusOr<torch::Tensor> KnnClassify(
    const torch::Tensor& reference_embeddings,
    const torch::Tensor& reference_labels,
    const torch::Tensor& query_embeddings, const KnnOptions& options);

}  // namespace trainer

#endif  // TRAINER_SELECT_FEATURE_QUALITY_H_
