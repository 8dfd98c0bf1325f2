// Loading (Fashion-)MNIST IDX image files into device-resident tensors.
// Labels are not read here: the trainer buys them from the oracle, and no
// trainer library offers a way to read a label file.
#ifndef TRAINER_LEARN_DATASET_H_
#define TRAINER_LEARN_DATASET_H_

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace trainer {

// Fashion-MNIST training-set pixel statistics of images scaled to [0, 1].
// The model normalises its input with them (ModelOptions::input_mean/std),
// so every tensor outside the model holds raw [0, 1] pixels.
inline constexpr float kFashionMnistMean = 0.2860f;
inline constexpr float kFashionMnistStd = 0.3530f;

// Reads the IDX image file at `path` (gzip or plain) into a float32 tensor of
// shape [N, 1, H, W] with values in [0, 1] (byte / 255), resident on `device`.
// If `expected_count` > 0 the file must hold exactly that many images.
// Returns NOT_FOUND if the file cannot be opened, FAILED_PRECONDITION on a
// count mismatch, DATA_LOSS / INVALID_ARGUMENT for a malformed file (see
// common::ReadIdxImages) and UNAVAILABLE if `device` cannot be used.
absl::StatusOr<at::Tensor> LoadImages(const std::string& path,
                                      int64_t expected_count,
                                      c10::Device device);

}  // namespace trainer

#endif  // TRAINER_LEARN_DATASET_H_
