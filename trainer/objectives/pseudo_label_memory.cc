#include "trainer/objectives/pseudo_label_memory.h"

#include <ATen/ATen.h>
#include <c10/core/DispatchKeySet.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <c10/util/Exception.h>
#include <torch/torch.h>

namespace trainer {

using torch::Tensor;

Tensor SmoothPseudoLabels(const Tensor& probs, const Tensor& queries,
                          const Tensor& keys, const Tensor& key_probs,
                          const Tensor& key_valid, double temperature,
                          double alpha) {
  TORCH_CHECK(probs.dim() == 2 && queries.dim() == 2 &&
                  probs.size(0) == queries.size(0),
              "smoothing needs [U, C] probabilities and [U, D] queries, got ",
              probs.sizes(), " and ", queries.sizes());
  TORCH_CHECK(keys.dim() == 2 && keys.size(1) == queries.size(1) &&
                  key_probs.dim() == 2 && key_probs.size(0) == keys.size(0) &&
                  key_probs.size(1) == probs.size(1) && key_valid.dim() == 1 &&
                  key_valid.size(0) == keys.size(0),
              "memory of keys ", keys.sizes(), ", distributions ",
              key_probs.sizes(), " and valid ", key_valid.sizes(),
              " does not fit queries ", queries.sizes(), " and probabilities ",
              probs.sizes());
  TORCH_CHECK(temperature > 0, "smoothing temperature must be > 0");
  torch::NoGradGuard no_grad;
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  Tensor p = probs.detach().to(at::kFloat);
  Tensor similarity =
      at::mm(queries.detach().to(at::kFloat), keys.t()).div(temperature);
  // A finite fill: entries not yet written get weight exactly 0 while any
  // entry is valid, and no NaN appears while none is.
  Tensor weights =
      at::softmax(similarity.masked_fill(key_valid.logical_not(), -1e9), 1);
  Tensor smoothed = alpha * p + (1.0 - alpha) * at::mm(weights, key_probs);
  return at::where(key_valid.any(), smoothed, p);
}

PseudoLabelMemory::PseudoLabelMemory(const PseudoLabelMemoryOptions& options,
                                     torch::Device device)
    : options_(options) {
  TORCH_CHECK(options.size > 0 && options.dim > 0 && options.num_classes > 0,
              "pseudo-label memory needs positive size, dim and classes");
  TORCH_CHECK(options.temperature > 0, "memory temperature must be > 0");
  TORCH_CHECK(options.alpha >= 0 && options.alpha <= 1,
              "smoothing alpha must be in [0, 1]");
  auto f = torch::TensorOptions().dtype(at::kFloat).device(device);
  keys_ = at::zeros({options.size, options.dim}, f);
  key_probs_ = at::zeros({options.size, options.num_classes}, f);
  valid_ = at::zeros({options.size}, f.dtype(at::kBool));
  next_ = at::zeros({}, f.dtype(at::kLong));
}

Tensor PseudoLabelMemory::Smooth(const Tensor& probs,
                                 const Tensor& queries) const {
  return SmoothPseudoLabels(probs, queries, keys_, key_probs_, valid_,
                            options_.temperature, options_.alpha);
}

void PseudoLabelMemory::Push(const Tensor& keys, const Tensor& key_probs) {
  TORCH_CHECK(keys.dim() == 2 && keys.size(1) == options_.dim &&
                  key_probs.dim() == 2 &&
                  key_probs.size(1) == options_.num_classes &&
                  key_probs.size(0) == keys.size(0),
              "memory push needs [N, ", options_.dim, "] keys and [N, ",
              options_.num_classes, "] distributions, got ", keys.sizes(),
              " and ", key_probs.sizes());
  const int64_t n = keys.size(0);
  TORCH_CHECK(n <= options_.size, "memory push of ", n,
              " entries exceeds its size ", options_.size);
  torch::NoGradGuard no_grad;
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  Tensor rows =
      (at::arange(n, next_.options()) + next_).remainder(options_.size);
  keys_.index_copy_(0, rows, keys.detach().to(at::kFloat));
  key_probs_.index_copy_(0, rows, key_probs.detach().to(at::kFloat));
  valid_.index_fill_(0, rows, true);
  next_.add_(n).remainder_(options_.size);
}

void PseudoLabelMemory::Save(torch::serialize::OutputArchive& archive,
                             const std::string& key) const {
  torch::serialize::OutputArchive state;
  state.write("keys", keys_, /*is_buffer=*/true);
  state.write("key_probs", key_probs_, /*is_buffer=*/true);
  state.write("valid", valid_, /*is_buffer=*/true);
  state.write("next", next_, /*is_buffer=*/true);
  archive.write(key, state);
}

void PseudoLabelMemory::Load(torch::serialize::InputArchive& archive,
                             const std::string& key) {
  torch::serialize::InputArchive state;
  archive.read(key, state);
  auto read = [&](const char* name, const Tensor& like) {
    Tensor value;
    state.read(name, value, /*is_buffer=*/true);
    TORCH_CHECK(value.sizes() == like.sizes() &&
                    value.scalar_type() == like.scalar_type(),
                "pseudo-label memory state '", key, ".", name, "' has shape ",
                value.sizes(), ", expected ", like.sizes());
    return value;
  };
  // Read everything before changing anything: a bad archive leaves the
  // memory as it was.
  Tensor keys = read("keys", keys_);
  Tensor key_probs = read("key_probs", key_probs_);
  Tensor valid = read("valid", valid_);
  Tensor next = read("next", next_);
  torch::NoGradGuard no_grad;
  keys_.copy_(keys);
  key_probs_.copy_(key_probs);
  valid_.copy_(valid);
  next_.copy_(next);
}

}  // namespace trainer
