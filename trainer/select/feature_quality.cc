#include "trainer/select/feature_quality.h"

#include <torch/utils.h>

#include <algorithm>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "trainer/learn/torch_status.h"

namespace trainer {
namespace {

std::string Describe(const torch::Tensor& t) {
  if (!t.defined()) return "undefined";
  return absl::StrCat(c10::toString(t.scalar_type()), " [",
                      absl::StrJoin(t.sizes(), ", "), "]");
}

absl::Status CheckInputs(const torch::Tensor& reference,
                         const torch::Tensor& labels,
                         const torch::Tensor& query,
                         const KnnOptions& options) {
  if (options.k < 1 || !(options.temperature > 0) || options.num_classes < 1 ||
      options.chunk_size < 1) {
    return absl::InvalidArgumentError(
        "KnnOptions out of range: need k >= 1, temperature > 0, "
        "num_classes >= 1, chunk_size >= 1");
  }
  if (!reference.defined() || reference.dim() != 2 || reference.size(0) < 1 ||
      reference.size(1) < 1 || !reference.is_floating_point()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "reference embeddings must be a floating point [L >= 1, D >= 1] "
        "tensor, got ",
        Describe(reference)));
  }
  const int64_t l = reference.size(0), d = reference.size(1);
  if (!labels.defined() || labels.dim() != 1 || labels.size(0) != l ||
      labels.is_floating_point() || labels.scalar_type() == torch::kBool) {
    return absl::InvalidArgumentError(
        absl::StrCat("reference labels must be an integer [", l,
                     "] tensor, got ", Describe(labels)));
  }
  if (!query.defined() || query.dim() != 2 || query.size(1) != d ||
      !query.is_floating_point()) {
    return absl::InvalidArgumentError(
        absl::StrCat("query embeddings must be a floating point [N, ", d,
                     "] tensor, got ", Describe(query)));
  }
  const int64_t low = labels.min().item<int64_t>();
  const int64_t high = labels.max().item<int64_t>();
  if (low < 0 || high >= options.num_classes) {
    return absl::InvalidArgumentError(
        absl::StrCat("reference labels must lie in [0, ", options.num_classes,
                     "), got values in [", low, ", ", high, "]"));
  }
  return absl::OkStatus();
}

torch::Tensor Normalised(const torch::Tensor& x, const torch::Device& device) {
  const torch::Tensor f = x.to(device, torch::kFloat);
  return f / f.norm(2, {1}, /*keepdim=*/true).clamp_min(1e-12);
}

}  // namespace

absl::StatusOr<torch::Tensor> KnnClassify(
    const torch::Tensor& reference_embeddings,
    const torch::Tensor& reference_labels,
    const torch::Tensor& query_embeddings, const KnnOptions& options) {
  torch::NoGradGuard no_grad;
  try {
    absl::Status valid = CheckInputs(reference_embeddings, reference_labels,
                                     query_embeddings, options);
    if (!valid.ok()) return valid;
    const torch::Device device = reference_embeddings.device();
    const torch::Tensor reference_t =
        Normalised(reference_embeddings, device).t();
    const torch::Tensor labels = reference_labels.to(device, torch::kLong);
    const int64_t n = query_embeddings.size(0);
    const int64_t k =
        std::min<int64_t>(options.k, reference_embeddings.size(0));
    std::vector<torch::Tensor> predicted;
    for (int64_t start = 0; start < n; start += options.chunk_size) {
      const torch::Tensor query = Normalised(
          query_embeddings.slice(0, start, start + options.chunk_size), device);
      const auto [similarity, neighbour] =
          query.mm(reference_t).topk(k, /*dim=*/1);
      // exp((s - 1) / T): the same ratios as exp(s / T), never overflowing.
      const torch::Tensor weight =
          ((similarity - 1) / options.temperature).exp();
      const torch::Tensor votes =
          torch::zeros({query.size(0), options.num_classes}, weight.options())
              .scatter_add_(1,
                            labels.index_select(0, neighbour.flatten())
                                .view_as(neighbour),
                            weight);
      // The lowest class among those with the most votes.
      const torch::Tensor best = std::get<0>(votes.max(1, /*keepdim=*/true));
      const torch::Tensor classes = torch::arange(
          options.num_classes, votes.options().dtype(torch::kLong));
      predicted.push_back(
          torch::where(votes.eq(best), classes,
                       torch::full_like(classes, options.num_classes))
              .amin(1));
    }
    if (predicted.empty()) {
      return torch::empty({0}, torch::TensorOptions()
                                   .dtype(torch::kLong)
                                   .device(query_embeddings.device()));
    }
    return torch::cat(predicted).to(query_embeddings.device());
  } catch (const c10::Error& e) {
    return TorchErrorToStatus(e, "KnnClassify");
  }
}

}  // namespace trainer
