// Toy images for trainer tests: two classes of 28x28 grey images, class 0
// with a bright upper half and class 1 with a bright lower half, plus noise.
// Flips and shifts keep the class, so augmentations do not change labels.
#ifndef TESTS_TRAINER_TWO_HALVES_IMAGES_H_
#define TESTS_TRAINER_TWO_HALVES_IMAGES_H_

#include <ATen/ATen.h>

#include <cstdint>
#include <utility>

namespace trainer {

// `n` images [n, 1, 28, 28] float32 in [0, 0.9) and their labels [n] int64
// in {0, 1}, drawn from `gen` (labels first, then the noise).
inline std::pair<at::Tensor, at::Tensor> MakeTwoHalvesImages(
    int64_t n, at::Generator& gen) {
  at::Tensor y = at::randint(2, {n}, gen, at::kLong);
  at::Tensor x = 0.2f * at::rand({n, 1, 28, 28}, gen);
  at::Tensor upper = (y == 0).view({n, 1, 1, 1});
  x.narrow(2, 0, 14).add_(0.7f * upper.to(at::kFloat));
  x.narrow(2, 14, 14).add_(0.7f * (~upper).to(at::kFloat));
  return {x, y};
}

}  // namespace trainer

#endif  // TESTS_TRAINER_TWO_HALVES_IMAGES_H_
