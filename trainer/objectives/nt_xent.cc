#include "trainer/objectives/nt_xent.h"

#include <ATen/ATen.h>
#include <c10/core/DispatchKeySet.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <c10/util/Exception.h>

#include <limits>

namespace trainer {

NtXentLoss ComputeNtXentLoss(const torch::Tensor& z1, const torch::Tensor& z2,
                             double temperature) {
  return ComputeMultiViewNtXentLoss({z1, z2}, temperature);
}

NtXentLoss ComputeMultiViewNtXentLoss(const std::vector<torch::Tensor>& views,
                                      double temperature) {
  TORCH_CHECK(views.size() >= 2, "NT-Xent needs at least two views, got ",
              views.size());
  for (const torch::Tensor& z : views) {
    TORCH_CHECK(z.dim() == 2, "NT-Xent projections must be [N, D], got ",
                z.sizes());
    TORCH_CHECK(z.sizes() == views[0].sizes(),
                "NT-Xent views must have equal shapes, got ", views[0].sizes(),
                " and ", z.sizes());
    TORCH_CHECK(z.is_floating_point(),
                "NT-Xent projections must be floating point");
  }
  TORCH_CHECK(views[0].size(0) >= 2, "NT-Xent needs N >= 2 images, got ",
              views[0].size(0));
  TORCH_CHECK(views[0].size(1) >= 1, "NT-Xent needs D >= 1");
  TORCH_CHECK(temperature > 0, "NT-Xent temperature must be > 0, got ",
              temperature);
  // Everything below in float32, whatever autocast is active for the caller.
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);

  const int64_t n = views[0].size(0);
  const int64_t rows = n * static_cast<int64_t>(views.size());
  at::Tensor z = at::cat(views, 0).to(at::kFloat);
  z = z / z.norm(2, /*dim=*/{1}, /*keepdim=*/true).clamp_min(1e-12);
  const float minus_inf = -std::numeric_limits<float>::infinity();
  at::Tensor eye = at::eye(rows, z.options().dtype(at::kBool));
  at::Tensor logits =
      at::mm(z, z.t()).div(temperature).masked_fill(eye, minus_inf);
  // Row r shows image r mod N; its positives are the other rows of that image.
  at::Tensor image =
      at::remainder(at::arange(rows, z.options().dtype(at::kLong)), n);
  at::Tensor positive =
      image.unsqueeze(1).eq(image.unsqueeze(0)).logical_and(eye.logical_not());
  at::Tensor log_positive =
      at::logsumexp(logits.masked_fill(positive.logical_not(), minus_inf), 1);
  at::Tensor loss = (at::logsumexp(logits, 1) - log_positive).mean();
  at::Tensor nearest = logits.detach().argmax(1, /*keepdim=*/true);
  at::Tensor hits = positive.gather(1, nearest).squeeze(1);
  return {loss, hits.to(at::kFloat).mean()};
}

}  // namespace trainer
