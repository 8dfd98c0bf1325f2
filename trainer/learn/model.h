// Image classifiers for 28x28 single-channel images: a compact CNN and a
// WideResNet-28-2. Both return logits and the pooled embedding.
#ifndef TRAINER_LEARN_MODEL_H_
#define TRAINER_LEARN_MODEL_H_

#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "trainer/learn/dataset.h"

namespace trainer {

// What a classifier's forward returns.
struct ModelOutput {
  torch::Tensor logits;     // [N, num_classes], pre-softmax
  torch::Tensor embedding;  // [N, embedding_dim], globally pooled features
};

struct ModelOptions {
  // "cnn" (six conv-bn-lrelu layers, widths w, w, 2w, 2w, 4w, 4w) or
  // "wrn28_2" (pre-activation WideResNet-28-2, widths 32, 64, 128).
  std::string arch = "cnn";
  // Base channel count w of "cnn"; ignored by "wrn28_2".
  int width = 64;
  // Number of output classes.
  int num_classes = 10;
  // Input channels.
  int in_channels = 1;
  // BatchNorm running-statistics momentum (PyTorch convention).
  double bn_momentum = 0.01;
  // Leaky-ReLU negative slope.
  double leaky_slope = 0.1;
  // The model computes (x - input_mean) / input_std on its [0, 1] input.
  float input_mean = kFashionMnistMean;
  float input_std = kFashionMnistStd;
  // Weight initialisation: "kaiming" (Kaiming-normal convolutions,
  // Xavier-normal classifier, zero biases) or "default" (PyTorch's layer
  // defaults, uniform in +-1/sqrt(fan_in)).
  std::string init = "kaiming";
  // Seed of the weight initialisation: equal options give equal weights.
  uint64_t init_seed = 0;
};

// A classifier over [N, in_channels, H, W] images with pixels in [0, 1].
// Construct through MakeModel, which validates the options. Works with
// contiguous and channels_last inputs and under CUDA autocast.
class ClassifierImpl : public torch::nn::Module {
 public:
  // Requires options accepted by MakeModel (throws c10::Error otherwise).
  explicit ClassifierImpl(const ModelOptions& options);

  ModelOutput forward(const torch::Tensor& images);

  const ModelOptions& options() const { return options_; }
  // Size of ModelOutput::embedding's second dimension.
  int64_t embedding_dim() const { return embedding_dim_; }
  // The last layer: logits = classifier()(embedding).
  torch::nn::Linear& classifier() { return classifier_; }

 private:
  ModelOptions options_;
  int64_t embedding_dim_ = 0;
  torch::nn::Sequential features_{nullptr};
  torch::nn::Linear classifier_{nullptr};
};
TORCH_MODULE(Classifier);

// Builds a freshly initialised classifier on the CPU (see ModelOptions::init;
// drawn from a generator seeded with init_seed). Returns INVALID_ARGUMENT for
// an unknown arch or init, a non-positive width, class count or channel
// count, or a non-positive input_std.
absl::StatusOr<Classifier> MakeModel(const ModelOptions& options);

// PyTorch's default initialisation of a convolution's or linear layer's
// `weight` (and `bias`, if defined), drawn from `gen` instead of the global
// generator: uniform in +-1/sqrt(fan_in) (kaiming_uniform with a = sqrt(5)).
void DefaultInitialize(const at::Tensor& weight, const at::Tensor& bias,
                       at::Generator& gen);

// Converts every 4-d parameter and buffer of `module` to channels_last in
// place (for cuDNN's NHWC kernels). Tensors keep their identity, so
// optimizers holding them stay valid.
void ToChannelsLast(torch::nn::Module& module);

}  // namespace trainer

#endif  // TRAINER_LEARN_MODEL_H_
