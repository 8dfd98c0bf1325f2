#include "trainer/learn/prototype_head.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace trainer {
namespace {

using torch::Tensor;

// The temperature grid: the scale times 2^(k/4) for k in [-kGridHalf,
// kGridHalf], 2^-10 to 2^10 around it.
constexpr int kGridHalf = 40;

}  // namespace

absl::StatusOr<PrototypeHead> FitPrototypeHead(const Tensor& embeddings,
                                               const Tensor& labels,
                                               int64_t num_classes) {
  if (num_classes < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a prototype head needs two or more classes, got ", num_classes));
  }
  if (!embeddings.defined() || !labels.defined() || embeddings.dim() != 2 ||
      labels.dim() != 1 || embeddings.size(0) != labels.size(0) ||
      embeddings.size(0) == 0 || embeddings.size(1) == 0 ||
      !embeddings.is_floating_point() || labels.scalar_type() != torch::kLong) {
    return absl::InvalidArgumentError(
        "a prototype head needs floating-point embeddings [L, D] and int64 "
        "labels [L], L and D positive");
  }
  torch::NoGradGuard no_grad;
  const Tensor y = labels.to(torch::kCPU).contiguous();
  const int64_t min_label = y.min().item<int64_t>();
  const int64_t max_label = y.max().item<int64_t>();
  if (min_label < 0 || max_label >= num_classes) {
    return absl::InvalidArgumentError(
        absl::StrCat("labels must lie in [0, ", num_classes, "), got ",
                     min_label, " to ", max_label));
  }
  const Tensor e = embeddings.detach().to(torch::kCPU, torch::kDouble);
  const auto f64 = torch::TensorOptions().dtype(torch::kDouble);

  const Tensor counts = torch::zeros({num_classes}, f64)
                            .index_add_(0, y, torch::ones({y.size(0)}, f64));
  const Tensor present = counts > 0;
  const Tensor absent = present.logical_not();
  const Tensor means =
      torch::zeros({num_classes, e.size(1)}, f64).index_add_(0, y, e) /
      counts.clamp_min(1).unsqueeze(1);
  // Squared distance of every sample to every class mean, [L, C].
  const Tensor distance = (e.unsqueeze(1) - means.unsqueeze(0)).pow(2).sum(2);

  // The scale of the grid: the mean squared distance from a sample to the
  // means of the other present classes (to its own class's when there is
  // no other).
  const Tensor own = torch::one_hot(y, num_classes).to(torch::kBool);
  Tensor others = present.unsqueeze(0).logical_and(own.logical_not());
  if (others.sum().item<int64_t>() == 0) others = own;
  double scale = distance.masked_select(others).mean().item<double>();
  if (!(scale > 0) || !std::isfinite(scale)) scale = 1.0;

  // Leave one out: without sample i its class mean moves so that
  // e_i - mean = n / (n - 1) * (e_i - mean with i).
  const Tensor n_own = counts.index_select(0, y);
  const Tensor scored = n_own >= 2;
  PrototypeHead head;
  head.samples_scored = scored.sum().item<int64_t>();
  double temperature = scale;
  if (head.samples_scored > 0) {
    const Tensor rows = scored.nonzero().squeeze(1);
    const Tensor n = n_own.index_select(0, rows);
    const Tensor y_scored = y.index_select(0, rows);
    Tensor loo = distance.index_select(0, rows).clone();
    const Tensor own_loo =
        loo.gather(1, y_scored.unsqueeze(1)).squeeze(1) * (n / (n - 1)).pow(2);
    loo.scatter_(1, y_scored.unsqueeze(1), own_loo.unsqueeze(1));
    // Classes without samples take no part in the softmax.
    loo.masked_fill_(absent.unsqueeze(0),
                     std::numeric_limits<double>::infinity());
    double best = std::numeric_limits<double>::infinity();
    for (int k = -kGridHalf; k <= kGridHalf; ++k) {
      const double t = scale * std::pow(2.0, k / 4.0);
      const double nll =
          (own_loo / (2 * t) + torch::logsumexp(-loo / (2 * t), 1))
              .mean()
              .item<double>();
      if (nll < best) {
        best = nll;
        temperature = t;
      }
    }
  }

  Tensor weight = means / temperature;
  Tensor bias = -means.pow(2).sum(1) / (2 * temperature);
  head.classes_present = present.sum().item<int64_t>();
  if (head.classes_present < num_classes) {
    weight.masked_fill_(absent.unsqueeze(1), 0.0);
    const Tensor logits = e.matmul(weight.t()) + bias;
    const double floor_logit =
        logits
            .masked_fill(absent.unsqueeze(0),
                         std::numeric_limits<double>::infinity())
            .amin(1)
            .mean()
            .item<double>();
    bias.masked_fill_(absent, floor_logit);
  }
  const auto out =
      torch::TensorOptions().dtype(torch::kFloat).device(embeddings.device());
  head.weight = weight.to(out);
  head.bias = bias.to(out);
  head.temperature = temperature;
  return head;
}

}  // namespace trainer
