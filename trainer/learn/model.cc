#include "trainer/learn/model.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/pooling.h>

#include <cmath>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace trainer {
namespace {

namespace nn = torch::nn;

constexpr char kArchCnn[] = "cnn";
constexpr char kArchWrn28x2[] = "wrn28_2";
constexpr char kInitKaiming[] = "kaiming";
constexpr char kInitDefault[] = "default";

nn::Conv2d Conv3x3(int64_t in, int64_t out, int64_t stride) {
  return nn::Conv2d(
      nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false));
}

nn::BatchNorm2d Bn(int64_t channels, double momentum) {
  return nn::BatchNorm2d(nn::BatchNorm2dOptions(channels).momentum(momentum));
}

torch::Tensor LeakyRelu(const torch::Tensor& x, double slope) {
  return at::leaky_relu(x, slope);
}

// conv3x3 (no bias) -> BatchNorm -> leaky ReLU.
class ConvBlockImpl : public nn::Module {
 public:
  ConvBlockImpl(int64_t in, int64_t out, const ModelOptions& options)
      : slope_(options.leaky_slope),
        conv_(register_module("conv", Conv3x3(in, out, 1))),
        bn_(register_module("bn", Bn(out, options.bn_momentum))) {}

  torch::Tensor forward(const torch::Tensor& x) {
    return LeakyRelu(bn_->forward(conv_->forward(x)), slope_);
  }

 private:
  double slope_;
  nn::Conv2d conv_;
  nn::BatchNorm2d bn_;
};
TORCH_MODULE(ConvBlock);

// Pre-activation wide residual block: bn-lrelu-conv3x3(stride)-bn-lrelu-
// conv3x3, plus the input (or a 1x1 strided projection of the activated
// input when the shape changes).
class WideBlockImpl : public nn::Module {
 public:
  WideBlockImpl(int64_t in, int64_t out, int64_t stride,
                const ModelOptions& options)
      : slope_(options.leaky_slope),
        bn1_(register_module("bn1", Bn(in, options.bn_momentum))),
        conv1_(register_module("conv1", Conv3x3(in, out, stride))),
        bn2_(register_module("bn2", Bn(out, options.bn_momentum))),
        conv2_(register_module("conv2", Conv3x3(out, out, 1))) {
    if (in != out || stride != 1) {
      shortcut_ = register_module(
          "shortcut",
          nn::Conv2d(nn::Conv2dOptions(in, out, 1).stride(stride).bias(false)));
    }
  }

  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor activated = LeakyRelu(bn1_->forward(x), slope_);
    torch::Tensor residual = shortcut_ ? shortcut_->forward(activated) : x;
    torch::Tensor out = conv1_->forward(activated);
    out = conv2_->forward(LeakyRelu(bn2_->forward(out), slope_));
    return out + residual;
  }

 private:
  double slope_;
  nn::BatchNorm2d bn1_;
  nn::Conv2d conv1_;
  nn::BatchNorm2d bn2_;
  nn::Conv2d conv2_;
  nn::Conv2d shortcut_{nullptr};
};
TORCH_MODULE(WideBlock);

// Final bn-lrelu of the pre-activation network.
class BnLreluImpl : public nn::Module {
 public:
  BnLreluImpl(int64_t channels, const ModelOptions& options)
      : slope_(options.leaky_slope),
        bn_(register_module("bn", Bn(channels, options.bn_momentum))) {}

  torch::Tensor forward(const torch::Tensor& x) {
    return LeakyRelu(bn_->forward(x), slope_);
  }

 private:
  double slope_;
  nn::BatchNorm2d bn_;
};
TORCH_MODULE(BnLrelu);

// Feature extractor of "cnn"; returns the channel count of its output.
int64_t BuildCnn(const ModelOptions& options, nn::Sequential& features) {
  const int64_t w = options.width;
  features->push_back(ConvBlock(options.in_channels, w, options));
  features->push_back(ConvBlock(w, w, options));
  features->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(2)));
  features->push_back(ConvBlock(w, 2 * w, options));
  features->push_back(ConvBlock(2 * w, 2 * w, options));
  features->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(2)));
  features->push_back(ConvBlock(2 * w, 4 * w, options));
  features->push_back(ConvBlock(4 * w, 4 * w, options));
  return 4 * w;
}

// Feature extractor of "wrn28_2": depth 28 = 6 * 4 + 4, widen factor 2.
int64_t BuildWrn28x2(const ModelOptions& options, nn::Sequential& features) {
  constexpr int64_t kBlocksPerGroup = 4;
  constexpr int64_t kWiden = 2;
  const int64_t widths[] = {16 * kWiden, 32 * kWiden, 64 * kWiden};
  const int64_t strides[] = {1, 2, 2};
  features->push_back(nn::Conv2d(
      nn::Conv2dOptions(options.in_channels, 16, 3).padding(1).bias(false)));
  int64_t in = 16;
  for (int group = 0; group < 3; ++group) {
    for (int64_t i = 0; i < kBlocksPerGroup; ++i) {
      features->push_back(
          WideBlock(in, widths[group], i == 0 ? strides[group] : 1, options));
      in = widths[group];
    }
  }
  features->push_back(BnLrelu(in, options));
  return in;
}


// "kaiming": Kaiming-normal (fan-out, leaky ReLU) convolutions, Xavier-normal
// linear weights, zero biases; "default": PyTorch's layer defaults. Unit BN
// scales either way; drawn from a generator seeded with `seed` so that
// initialisation does not depend on the global RNG.
void InitWeights(nn::Module& module, const std::string& init, double slope,
                 uint64_t seed) {
  torch::NoGradGuard no_grad;
  at::Generator gen = at::detail::createCPUGenerator(seed);
  for (auto& child : module.modules(/*include_self=*/false)) {
    if (init == kInitDefault) {
      if (auto* conv = child->as<nn::Conv2d>()) {
        DefaultInitialize(conv->weight, conv->bias, gen);
      } else if (auto* linear = child->as<nn::Linear>()) {
        DefaultInitialize(linear->weight, linear->bias, gen);
      } else if (auto* bn = child->as<nn::BatchNorm2d>()) {
        bn->weight.fill_(1.0);
        bn->bias.zero_();
      }
      continue;
    }
    if (auto* conv = child->as<nn::Conv2d>()) {
      const at::Tensor& w = conv->weight;
      const double fan_out = static_cast<double>(w.numel()) / w.size(1);
      const double gain = std::sqrt(2.0 / (1.0 + slope * slope));
      w.normal_(0.0, gain / std::sqrt(fan_out), gen);
    } else if (auto* bn = child->as<nn::BatchNorm2d>()) {
      bn->weight.fill_(1.0);
      bn->bias.zero_();
    } else if (auto* linear = child->as<nn::Linear>()) {
      const at::Tensor& w = linear->weight;
      w.normal_(0.0, std::sqrt(2.0 / (w.size(0) + w.size(1))), gen);
      linear->bias.zero_();
    }
  }
}

}  // namespace

void DefaultInitialize(const at::Tensor& weight, const at::Tensor& bias,
                       at::Generator& gen) {
  torch::NoGradGuard no_grad;
  const double fan_in = static_cast<double>(weight.numel()) / weight.size(0);
  const double bound = 1.0 / std::sqrt(fan_in);
  weight.uniform_(-bound, bound, gen);
  if (bias.defined()) bias.uniform_(-bound, bound, gen);
}

ClassifierImpl::ClassifierImpl(const ModelOptions& options)
    : options_(options) {
  features_ = register_module("features", nn::Sequential());
  if (options.arch == kArchCnn) {
    embedding_dim_ = BuildCnn(options, features_);
  } else if (options.arch == kArchWrn28x2) {
    embedding_dim_ = BuildWrn28x2(options, features_);
  } else {
    TORCH_CHECK(false, "unknown arch '", options.arch, "'");
  }
  classifier_ = register_module(
      "classifier", nn::Linear(embedding_dim_, options.num_classes));
  InitWeights(*this, options.init, options.leaky_slope, options.init_seed);
}

ModelOutput ClassifierImpl::forward(const torch::Tensor& images) {
  torch::Tensor x =
      (images - options_.input_mean) * (1.0f / options_.input_std);
  torch::Tensor embedding = features_->forward(x).mean({2, 3});
  torch::Tensor logits = classifier_->forward(embedding);
  return {std::move(logits), std::move(embedding)};
}

absl::StatusOr<Classifier> MakeModel(const ModelOptions& options) {
  if (options.arch != kArchCnn && options.arch != kArchWrn28x2) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown arch '", options.arch, "' (expected '", kArchCnn,
                     "' or '", kArchWrn28x2, "')"));
  }
  if (options.width <= 0 || options.num_classes <= 0 ||
      options.in_channels <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "width (", options.width, "), num_classes (", options.num_classes,
        ") and in_channels (", options.in_channels, ") must be positive"));
  }
  if (!(options.input_std > 0.0f)) {
    return absl::InvalidArgumentError("input_std must be positive");
  }
  if (options.init != kInitKaiming && options.init != kInitDefault) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown init '", options.init, "' (expected '",
                     kInitKaiming, "' or '", kInitDefault, "')"));
  }
  return Classifier(options);
}

namespace {

// A channels_last copy of `t` with true NHWC strides. (contiguous() leaves
// tensors whose layout is ambiguous, such as a one-input-channel conv
// weight, with NCHW strides, and cuDNN then runs that conv and the
// BatchNorm after it in slow NCHW kernels.)
at::Tensor NhwcCopy(const at::Tensor& t) {
  at::Tensor nhwc = at::empty(
      t.sizes(), t.options().memory_format(at::MemoryFormat::ChannelsLast));
  nhwc.copy_(t);
  return nhwc;
}

}  // namespace

void ToChannelsLast(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& parameter : module.parameters()) {
    if (parameter.dim() == 4) parameter.set_data(NhwcCopy(parameter.data()));
  }
  for (auto& buffer : module.buffers()) {
    if (buffer.dim() == 4) buffer.set_data(NhwcCopy(buffer.data()));
  }
}

}  // namespace trainer
