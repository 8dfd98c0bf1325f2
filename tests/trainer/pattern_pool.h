// A label-free toy pool for the self-supervised objectives' tests: 8
// distinct 28x28 patterns (plane waves of different orientations and
// frequencies, a checkerboard, blobs, a cross), each in several noisy
// copies.
#ifndef TESTS_TRAINER_PATTERN_POOL_H_
#define TESTS_TRAINER_PATTERN_POOL_H_

#include <ATen/ATen.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "trainer/learn/augment.h"

namespace trainer {

// [8 * copies, 1, 28, 28] float32 in [0, 1]: the 8 patterns repeated
// `copies` times (pattern i at rows i, i + 8, ...) plus Gaussian noise of
// std 0.05 from a fixed seed.
inline at::Tensor PatternPool(int64_t copies) {
  const at::Tensor coords = at::arange(28, at::kFloat) / 28.0f;
  const at::Tensor y = coords.view({28, 1}).expand({28, 28});
  const at::Tensor x = coords.view({1, 28}).expand({28, 28});
  const double pi = std::acos(-1.0);
  std::vector<at::Tensor> patterns = {
      0.5f + 0.5f * at::sin(2 * pi * 2 * x),
      0.5f + 0.5f * at::sin(2 * pi * 2 * y),
      0.5f + 0.5f * at::sin(2 * pi * 5 * (x + y)),
      0.5f + 0.5f * at::sin(2 * pi * 5 * (x - y)),
      (at::sin(2 * pi * 3 * x) * at::sin(2 * pi * 3 * y) > 0).to(at::kFloat),
      at::exp(-((x - 0.5f).pow(2) + (y - 0.5f).pow(2)) / 0.02f),
      1.0f - at::exp(-((x - 0.5f).pow(2) + (y - 0.5f).pow(2)) / 0.05f),
      (at::abs(x - 0.5f) < 0.1f).to(at::kFloat) +
          (at::abs(y - 0.5f) < 0.1f).to(at::kFloat) * 0.5f,
  };
  at::Tensor base = at::stack(patterns).clamp(0.0f, 1.0f).unsqueeze(1);
  at::Generator gen = *MakeGenerator(at::kCPU, 77);
  at::Tensor pool = base.repeat({copies, 1, 1, 1});
  return (pool + 0.05f * at::randn(pool.sizes(), gen)).clamp(0.0f, 1.0f);
}

}  // namespace trainer

#endif  // TESTS_TRAINER_PATTERN_POOL_H_
