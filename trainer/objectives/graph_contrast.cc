#include "trainer/objectives/graph_contrast.h"

#include <ATen/ATen.h>
#include <c10/core/DispatchKeySet.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <c10/util/Exception.h>
#include <torch/torch.h>

#include <utility>

#include "absl/strings/str_cat.h"

namespace trainer {

using torch::Tensor;

absl::Status ValidateGraphContrastOptions(const GraphContrastOptions& o) {
  if (!(o.weight >= 0.0)) {
    return absl::InvalidArgumentError("contrast weight must be non-negative");
  }
  if (!(o.temperature > 0.0)) {
    return absl::InvalidArgumentError("contrast temperature must be positive");
  }
  if (!(o.graph_threshold >= 0.0 && o.graph_threshold <= 1.0)) {
    return absl::InvalidArgumentError(
        "contrast graph threshold must be in [0, 1]");
  }
  if (o.projection_dim <= 0) {
    return absl::InvalidArgumentError(
        "contrast projection size must be positive");
  }
  return absl::OkStatus();
}

GraphContrastLoss ComputeGraphContrastLoss(const Tensor& anchors,
                                           const Tensor& others,
                                           const Tensor& probs,
                                           double temperature,
                                           double graph_threshold) {
  TORCH_CHECK(anchors.dim() == 2 && anchors.sizes() == others.sizes(),
              "graph contrast needs two [U, D] projections of equal shape, "
              "got ",
              anchors.sizes(), " and ", others.sizes());
  TORCH_CHECK(anchors.size(0) >= 2, "graph contrast needs U >= 2 images");
  TORCH_CHECK(probs.dim() == 2 && probs.size(0) == anchors.size(0),
              "graph contrast needs [U, C] probabilities for U = ",
              anchors.size(0), ", got ", probs.sizes());
  TORCH_CHECK(temperature > 0, "graph contrast temperature must be > 0");
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);

  auto normalise = [](const Tensor& z) {
    Tensor f = z.to(at::kFloat);
    return f / f.norm(2, /*dim=*/{1}, /*keepdim=*/true).clamp_min(1e-12);
  };
  Tensor log_similarity = at::log_softmax(
      at::mm(normalise(anchors), normalise(others).t()).div(temperature), 1);

  Tensor p = probs.detach().to(at::kFloat);
  const int64_t u = p.size(0);
  Tensor eye = at::eye(u, p.options().dtype(at::kBool));
  Tensor graph = at::mm(p, p.t()).masked_fill(eye, 1.0);
  Tensor edges = (graph >= graph_threshold).to(at::kFloat);
  graph = graph * edges;
  graph = graph / graph.sum(1, /*keepdim=*/true);
  Tensor loss = -(graph * log_similarity).sum(1).mean();
  return {loss, edges.sum(1).mean()};
}

absl::StatusOr<std::unique_ptr<GraphContrast>> GraphContrast::Create(
    const GraphContrastOptions& options, int64_t embedding_dim,
    torch::Device device, uint64_t seed) {
  if (absl::Status valid = ValidateGraphContrastOptions(options); !valid.ok()) {
    return valid;
  }
  if (embedding_dim <= 0) {
    return absl::InvalidArgumentError(
        "graph contrast needs the model's embedding size");
  }
  ProjectionHeadOptions head_options;
  head_options.input_dim = embedding_dim;
  head_options.output_dim = options.projection_dim;
  head_options.init_seed = seed;
  try {
    ProjectionHead head(head_options);
    head->to(device);
    head->train();
    return std::unique_ptr<GraphContrast>(
        new GraphContrast(options, std::move(head)));
  } catch (const c10::Error& e) {
    return absl::UnavailableError(absl::StrCat(
        "cannot build the contrast head: ", e.what_without_backtrace()));
  }
}

GraphContrastLoss GraphContrast::Loss(const Tensor& embedding_weak,
                                      const Tensor& embedding_strong,
                                      const Tensor& probs) {
  TORCH_CHECK(embedding_weak.sizes() == embedding_strong.sizes(),
              "weak and strong embeddings differ in shape: ",
              embedding_weak.sizes(), " vs ", embedding_strong.sizes());
  const int64_t u = embedding_weak.size(0);
  // One pass through the head, so batch norm sees both views together.
  Tensor projections =
      head_->forward(at::cat({embedding_weak, embedding_strong}));
  return ComputeGraphContrastLoss(projections.narrow(0, u, u),
                                  projections.narrow(0, 0, u), probs,
                                  options_.temperature,
                                  options_.graph_threshold);
}

void GraphContrast::Save(torch::serialize::OutputArchive& archive,
                         const std::string& key) const {
  WriteProjectionHead(head_, archive, key);
}

void GraphContrast::Load(torch::serialize::InputArchive& archive,
                         const std::string& key) {
  ReadProjectionHead(head_, archive, key);
}

}  // namespace trainer
