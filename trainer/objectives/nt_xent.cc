#include "trainer/objectives/nt_xent.h"

#include <ATen/ATen.h>
#include <c10/core/DispatchKeySet.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <c10/util/Exception.h>

#include <limits>

namespace trainer {

NtXentLoss ComputeNtXentLoss(const torch::Tensor& z1, const torch::Tensor& z2,
                             double temperature) {
  TORCH_CHECK(z1.dim() == 2 && z2.dim() == 2,
              "NT-Xent projections must be [N, D], got ", z1.sizes(), " and ",
              z2.sizes());
  TORCH_CHECK(z1.sizes() == z2.sizes(),
              "NT-Xent views must have equal shapes, got ", z1.sizes(), " and ",
              z2.sizes());
  TORCH_CHECK(z1.size(0) >= 2, "NT-Xent needs N >= 2 images, got ", z1.size(0));
  TORCH_CHECK(z1.size(1) >= 1, "NT-Xent needs D >= 1");
  TORCH_CHECK(z1.is_floating_point() && z2.is_floating_point(),
              "NT-Xent projections must be floating point");
  TORCH_CHECK(temperature > 0, "NT-Xent temperature must be > 0, got ",
              temperature);
  // Everything below in float32, whatever autocast is active for the caller.
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);

  const int64_t n = z1.size(0);
  at::Tensor z = at::cat({z1, z2}, 0).to(at::kFloat);
  z = z / z.norm(2, /*dim=*/{1}, /*keepdim=*/true).clamp_min(1e-12);
  at::Tensor eye = at::eye(2 * n, z.options().dtype(at::kBool));
  at::Tensor logits =
      at::mm(z, z.t())
          .div(temperature)
          .masked_fill(eye, -std::numeric_limits<float>::infinity());
  // Row i's positive is its other view: i + N for the first N rows, i - N
  // for the others.
  at::Tensor rows = at::arange(2 * n, z.options().dtype(at::kLong));
  at::Tensor targets = at::remainder(rows + n, 2 * n);
  at::Tensor log_probs = at::log_softmax(logits, 1);
  at::Tensor loss =
      -log_probs.gather(1, targets.unsqueeze(1)).squeeze(1).mean();
  at::Tensor hits = logits.detach().argmax(1) == targets;
  return {loss, hits.to(at::kFloat).mean()};
}

}  // namespace trainer
