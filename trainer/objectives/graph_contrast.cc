#include "trainer/objectives/graph_contrast.h"

#include <ATen/ATen.h>
#include <c10/core/DispatchKeySet.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <c10/util/Exception.h>
#include <torch/torch.h>

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace trainer {

using torch::Tensor;

namespace {

// Rows scaled to unit L2 norm, in float32.
Tensor Normalised(const Tensor& z) {
  Tensor f = z.to(at::kFloat);
  return f / f.norm(2, /*dim=*/{1}, /*keepdim=*/true).clamp_min(1e-12);
}

}  // namespace

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
  if (o.memory_size < 0) {
    return absl::InvalidArgumentError(
        "contrast memory size must be non-negative");
  }
  if (o.memory_size > 0 && o.weight == 0.0) {
    return absl::InvalidArgumentError(
        "the pseudo-label memory needs the graph contrast on (weight > 0)");
  }
  if (!(o.smoothing_alpha >= 0.0 && o.smoothing_alpha <= 1.0)) {
    return absl::InvalidArgumentError("smoothing alpha must be in [0, 1]");
  }
  if (o.two_strong_views && o.weight == 0.0) {
    return absl::InvalidArgumentError(
        "two strong views are for the graph contrast; it is off (weight 0)");
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

  Tensor log_similarity = at::log_softmax(
      at::mm(Normalised(anchors), Normalised(others).t()).div(temperature), 1);

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
    int64_t num_classes, torch::Device device, uint64_t seed) {
  if (absl::Status valid = ValidateGraphContrastOptions(options); !valid.ok()) {
    return valid;
  }
  if (embedding_dim <= 0) {
    return absl::InvalidArgumentError(
        "graph contrast needs the model's embedding size");
  }
  if (num_classes < 2) {
    return absl::InvalidArgumentError(
        "graph contrast needs the number of classes (at least 2)");
  }
  ProjectionHeadOptions head_options;
  head_options.input_dim = embedding_dim;
  head_options.output_dim = options.projection_dim;
  head_options.init_seed = seed;
  try {
    ProjectionHead head(head_options);
    head->to(device);
    head->train();
    std::unique_ptr<PseudoLabelMemory> memory;
    if (options.memory_size > 0) {
      PseudoLabelMemoryOptions memory_options;
      memory_options.size = options.memory_size;
      memory_options.dim = options.projection_dim;
      memory_options.num_classes = num_classes;
      memory_options.temperature = options.temperature;
      memory_options.alpha = options.smoothing_alpha;
      memory = std::make_unique<PseudoLabelMemory>(memory_options, device);
    }
    return std::unique_ptr<GraphContrast>(
        new GraphContrast(options, std::move(head), std::move(memory)));
  } catch (const c10::Error& e) {
    return absl::UnavailableError(absl::StrCat(
        "cannot build the contrast head: ", e.what_without_backtrace()));
  }
}

ContrastProjections GraphContrast::Project(
    const Tensor& embedding_weak, const Tensor& embedding_strong,
    const Tensor& embedding_labelled, const Tensor& embedding_strong_second) {
  TORCH_CHECK(embedding_weak.sizes() == embedding_strong.sizes(),
              "weak and strong embeddings differ in shape: ",
              embedding_weak.sizes(), " vs ", embedding_strong.sizes());
  const int64_t u = embedding_weak.size(0);
  std::vector<Tensor> inputs = {embedding_weak, embedding_strong};
  if (options_.two_strong_views) {
    TORCH_CHECK(embedding_strong_second.defined() &&
                    embedding_strong_second.sizes() == embedding_strong.sizes(),
                "two strong views need the second strong embeddings, shaped ",
                embedding_strong.sizes());
    inputs.push_back(embedding_strong_second);
  }
  const int64_t labelled_offset = static_cast<int64_t>(inputs.size()) * u;
  if (memory_ != nullptr) {
    TORCH_CHECK(embedding_labelled.defined() && embedding_labelled.dim() == 2,
                "the pseudo-label memory needs the labelled embeddings");
    inputs.push_back(embedding_labelled.detach());
  }
  Tensor projections = head_->forward(at::cat(inputs));
  ContrastProjections out;
  out.weak = projections.narrow(0, 0, u);
  out.strong = projections.narrow(0, u, u);
  if (options_.two_strong_views) {
    out.strong_second = projections.narrow(0, 2 * u, u);
  }
  if (memory_ != nullptr) {
    out.labelled =
        projections.narrow(0, labelled_offset, embedding_labelled.size(0))
            .detach();
  }
  return out;
}

Tensor GraphContrast::SmoothPseudoLabels(const ContrastProjections& projections,
                                         const Tensor& probs,
                                         const Tensor& targets_labelled) {
  if (memory_ == nullptr) return probs;
  TORCH_CHECK(projections.labelled.defined() && targets_labelled.dim() == 1 &&
                  targets_labelled.size(0) == projections.labelled.size(0),
              "memory smoothing needs one target per labelled projection");
  Tensor queries = Normalised(projections.weak.detach());
  Tensor smoothed = memory_->Smooth(probs, queries);
  // scatter_ rather than at::one_hot, which reads the targets' range on the
  // host: the step must stay free of synchronisation (CUDA graphs).
  Tensor one_hot = at::zeros({targets_labelled.size(0), probs.size(1)},
                             probs.options().dtype(at::kFloat))
                       .scatter_(1, targets_labelled.unsqueeze(1), 1.0);
  memory_->Push(at::cat({queries, Normalised(projections.labelled)}),
                at::cat({probs.detach().to(at::kFloat), one_hot}));
  return smoothed;
}

GraphContrastLoss GraphContrast::Loss(const ContrastProjections& projections,
                                      const Tensor& probs) {
  const Tensor& others =
      options_.two_strong_views ? projections.strong_second : projections.weak;
  return ComputeGraphContrastLoss(projections.strong, others, probs,
                                  options_.temperature,
                                  options_.graph_threshold);
}

void GraphContrast::Save(torch::serialize::OutputArchive& archive,
                         const std::string& prefix) const {
  WriteProjectionHead(head_, archive, prefix + "_head");
  if (memory_ != nullptr) memory_->Save(archive, prefix + "_memory");
}

void GraphContrast::Load(torch::serialize::InputArchive& archive,
                         const std::string& prefix) {
  ReadProjectionHead(head_, archive, prefix + "_head");
  if (memory_ != nullptr) memory_->Load(archive, prefix + "_memory");
}

}  // namespace trainer
