#include "trainer/learn/heads.h"

#include <c10/util/Exception.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn/functional/activation.h>

#include "trainer/learn/model.h"

namespace trainer {

ProjectionHeadImpl::ProjectionHeadImpl(const ProjectionHeadOptions& options)
    : options_(options) {
  TORCH_CHECK(options.input_dim > 0, "ProjectionHead input_dim must be > 0");
  TORCH_CHECK(options.hidden_dim >= 0,
              "ProjectionHead hidden_dim must be >= 0");
  TORCH_CHECK(options.output_dim > 0, "ProjectionHead output_dim must be > 0");
  if (options_.hidden_dim == 0) options_.hidden_dim = options_.input_dim;
  hidden_ = register_module(
      "hidden", torch::nn::Linear(torch::nn::LinearOptions(options_.input_dim,
                                                           options_.hidden_dim)
                                      .bias(false)));
  norm_ = register_module(
      "norm",
      torch::nn::BatchNorm1d(torch::nn::BatchNormOptions(options_.hidden_dim)
                                 .momentum(options_.bn_momentum)));
  output_ = register_module(
      "output", torch::nn::Linear(options_.hidden_dim, options_.output_dim));
  at::Generator gen = at::detail::createCPUGenerator(options_.init_seed);
  DefaultInitialize(hidden_->weight, hidden_->bias, gen);
  DefaultInitialize(output_->weight, output_->bias, gen);
}

torch::Tensor ProjectionHeadImpl::forward(const torch::Tensor& features) {
  return output_(torch::relu(norm_(hidden_(features))));
}

void WriteProjectionHead(const ProjectionHead& head,
                         torch::serialize::OutputArchive& archive,
                         const std::string& key) {
  torch::serialize::OutputArchive head_archive;
  head->save(head_archive);
  archive.write(key, head_archive);
}

void ReadProjectionHead(ProjectionHead& head,
                        torch::serialize::InputArchive& archive,
                        const std::string& key) {
  torch::serialize::InputArchive head_archive;
  archive.read(key, head_archive);
  head->load(head_archive);
}

}  // namespace trainer
