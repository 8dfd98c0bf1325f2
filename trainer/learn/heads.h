// Heads trained on top of a classifier's embedding for self-supervised
// objectives (SimCLR's projection head).
#ifndef TRAINER_LEARN_HEADS_H_
#define TRAINER_LEARN_HEADS_H_

#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>
#include <torch/types.h>

#include <cstdint>
#include <string>

namespace trainer {

struct ProjectionHeadOptions {
  // Size of the input features (the classifier's embedding_dim()).
  int64_t input_dim = 0;
  // Width of the hidden layer; 0 means input_dim (as in SimCLR).
  int64_t hidden_dim = 0;
  // Size of the projection the contrastive loss sees.
  int64_t output_dim = 128;
  // BatchNorm running-statistics momentum (PyTorch convention).
  double bn_momentum = 0.1;
  // Seeds the linear layers' initial weights (PyTorch's default scheme, drawn
  // from a private generator, so the global generator's state does not
  // change them; constructing LibTorch layers still advances it).
  uint64_t init_seed = 0;
};

// SimCLR v2-style two-layer MLP projection head:
// Linear(input, hidden, no bias) - BatchNorm1d(hidden) - ReLU -
// Linear(hidden, output). The first layer has no bias because the
// BatchNorm's shift makes it redundant. Maps [N, input_dim] to
// [N, output_dim]; in train mode N >= 2 (BatchNorm's batch statistics).
// Throws c10::Error unless input_dim and output_dim are positive and
// hidden_dim is >= 0.
class ProjectionHeadImpl : public torch::nn::Module {
 public:
  explicit ProjectionHeadImpl(const ProjectionHeadOptions& options);

  torch::Tensor forward(const torch::Tensor& features);

  // The options with hidden_dim resolved (never 0).
  const ProjectionHeadOptions& options() const { return options_; }

 private:
  ProjectionHeadOptions options_;
  torch::nn::Linear hidden_{nullptr};
  torch::nn::BatchNorm1d norm_{nullptr};
  torch::nn::Linear output_{nullptr};
};
TORCH_MODULE(ProjectionHead);

// Writes `head`'s parameters and buffers into `archive` under `key`.
void WriteProjectionHead(const ProjectionHead& head,
                         torch::serialize::OutputArchive& archive,
                         const std::string& key);

// Reads what WriteProjectionHead wrote under `key` into `head` (same
// shapes). Throws c10::Error when `key` is missing or the shapes differ.
void ReadProjectionHead(ProjectionHead& head,
                        torch::serialize::InputArchive& archive,
                        const std::string& key);

}  // namespace trainer

#endif  // TRAINER_LEARN_HEADS_H_
