#include "trainer/objectives/adaptive_threshold.h"

#include <c10/util/Exception.h>
#include <torch/torch.h>

#include <tuple>
#include <utility>

namespace trainer {
namespace {

// Checks that `probs` is [U, C] with U >= 1 and returns it as float32.
torch::Tensor CheckedProbs(const torch::Tensor& probs, int64_t num_classes,
                           const char* what) {
  TORCH_CHECK(probs.defined() && probs.dim() == 2 &&
                  probs.size(1) == num_classes && probs.size(0) >= 1,
              what, " must be [U, ", num_classes, "] with U >= 1, got ",
              probs.sizes());
  return probs.to(torch::kFloat);
}

// Counts of each value of `values` (int64 in [0, length)) weighted by
// `weights` (same shape as `values`), as a [length] tensor of the weights'
// dtype: a bincount of fixed length that never reads values on the host.
torch::Tensor WeightedBincount(const torch::Tensor& values,
                               const torch::Tensor& weights, int64_t length) {
  return torch::zeros({length}, weights.options())
      .scatter_add_(0, values, weights);
}

// Reads the tensor `name` of `archive` and checks that it has `sizes`.
torch::Tensor ReadState(torch::serialize::InputArchive& archive,
                        const std::string& key, const char* name,
                        c10::IntArrayRef sizes) {
  torch::Tensor tensor;
  archive.read(name, tensor, /*is_buffer=*/true);
  TORCH_CHECK(tensor.sizes() == sizes, "adaptive threshold state '", key, ".",
              name, "' has shape ", tensor.sizes(), ", expected ", sizes);
  return tensor;
}

}  // namespace

// ---- FreeMatch

FreeMatchThresholds::FreeMatchThresholds(
    const FreeMatchThresholdOptions& options, torch::Device device)
    : options_(options) {
  TORCH_CHECK(options.num_classes >= 2, "num_classes must be >= 2, got ",
              options.num_classes);
  TORCH_CHECK(options.momentum >= 0.0 && options.momentum < 1.0,
              "momentum must be in [0, 1), got ", options.momentum);
  const double uniform = 1.0 / static_cast<double>(options.num_classes);
  const auto float_options =
      torch::TensorOptions().dtype(torch::kFloat).device(device);
  tau_ = torch::full({}, uniform, float_options);
  p_model_ = torch::full({options.num_classes}, uniform, float_options);
  label_hist_ = torch::full({options.num_classes}, uniform, float_options);
}

void FreeMatchThresholds::Update(const torch::Tensor& probs_weak) {
  torch::NoGradGuard no_grad;
  const torch::Tensor probs =
      CheckedProbs(probs_weak, options_.num_classes, "probs_weak");
  auto [max_probs, argmax] = torch::max(probs, /*dim=*/1);
  const double m = options_.momentum;
  tau_.mul_(m).add_(max_probs.mean(), 1.0 - m);
  p_model_.mul_(m).add_(probs.mean(/*dim=*/0), 1.0 - m);
  const torch::Tensor hist =
      WeightedBincount(argmax, torch::ones_like(max_probs),
                       options_.num_classes) /
      static_cast<double>(probs.size(0));
  label_hist_.mul_(m).add_(hist, 1.0 - m);
}

torch::Tensor FreeMatchThresholds::ClassThresholds() const {
  torch::NoGradGuard no_grad;
  return tau_ * (p_model_ / p_model_.max());
}

torch::Tensor FreeMatchThresholds::Mask(const torch::Tensor& probs_weak) const {
  torch::NoGradGuard no_grad;
  const torch::Tensor probs =
      CheckedProbs(probs_weak, options_.num_classes, "probs_weak");
  auto [max_probs, argmax] = torch::max(probs, /*dim=*/1);
  return max_probs.ge(ClassThresholds().index_select(0, argmax))
      .to(torch::kFloat);
}

torch::Tensor FreeMatchThresholds::Step(const torch::Tensor& probs_weak) {
  Update(probs_weak);
  return Mask(probs_weak);
}

torch::Tensor FreeMatchThresholds::FairnessLoss(
    const torch::Tensor& logits_strong, const torch::Tensor& mask) const {
  const int64_t num_classes = options_.num_classes;
  const torch::Tensor logits =
      CheckedProbs(logits_strong, num_classes, "logits_strong");
  TORCH_CHECK(
      mask.defined() && mask.dim() == 1 && mask.size(0) == logits.size(0),
      "mask must be [", logits.size(0), "], got ", mask.sizes());
  const torch::Tensor selected = mask.gt(0).to(torch::kFloat);
  const torch::Tensor probs = torch::softmax(logits, /*dim=*/1);
  const torch::Tensor count = selected.sum();
  const torch::Tensor safe_count = count.clamp_min(1.0);

  // Q: the selected samples' mean probability, scaled by 1 / their argmax
  // histogram (0 for classes that no selected sample predicts), SumNorm'd.
  const torch::Tensor hist_s =
      WeightedBincount(probs.detach().argmax(/*dim=*/1), selected,
                       num_classes) /
      safe_count;
  const torch::Tensor hist_s_scaler =
      torch::where(hist_s.gt(0), hist_s.clamp_min(1e-30).reciprocal(),
                   torch::zeros_like(hist_s));
  const torch::Tensor mean_prob_s =
      (probs * selected.unsqueeze(1)).sum(/*dim=*/0) / safe_count;
  torch::Tensor q = mean_prob_s * hist_s_scaler;
  q = q / q.sum().clamp_min(1e-30);

  // P: the model's expected probability scaled by 1 / the label histogram
  // (0 where that overflows), SumNorm'd; a constant.
  torch::Tensor p;
  {
    torch::NoGradGuard no_grad;
    const torch::Tensor hist_scaler = label_hist_.reciprocal();
    p = p_model_ * torch::where(torch::isinf(hist_scaler),
                                torch::zeros_like(hist_scaler), hist_scaler);
    p = p / p.sum().clamp_min(1e-30);
  }

  const torch::Tensor loss = (p * torch::log(q + 1e-12)).sum();
  return loss * count.gt(0).to(torch::kFloat);
}

void FreeMatchThresholds::Save(torch::serialize::OutputArchive& archive,
                               const std::string& key) const {
  torch::serialize::OutputArchive state;
  state.write("tau", tau_, /*is_buffer=*/true);
  state.write("p_model", p_model_, /*is_buffer=*/true);
  state.write("label_hist", label_hist_, /*is_buffer=*/true);
  archive.write(key, state);
}

void FreeMatchThresholds::Load(torch::serialize::InputArchive& archive,
                               const std::string& key) {
  torch::serialize::InputArchive state;
  archive.read(key, state);
  const torch::Tensor tau = ReadState(state, key, "tau", tau_.sizes());
  const torch::Tensor p_model =
      ReadState(state, key, "p_model", p_model_.sizes());
  const torch::Tensor label_hist =
      ReadState(state, key, "label_hist", label_hist_.sizes());
  torch::NoGradGuard no_grad;
  tau_.copy_(tau);
  p_model_.copy_(p_model);
  label_hist_.copy_(label_hist);
}

// ---- SoftMatch

SoftMatchWeights::SoftMatchWeights(const SoftMatchWeightOptions& options,
                                   torch::Device device)
    : options_(options) {
  TORCH_CHECK(options.num_classes >= 2, "num_classes must be >= 2, got ",
              options.num_classes);
  TORCH_CHECK(options.momentum >= 0.0 && options.momentum < 1.0,
              "momentum must be in [0, 1), got ", options.momentum);
  TORCH_CHECK(options.n_sigma > 0.0, "n_sigma must be positive, got ",
              options.n_sigma);
  const auto float_options =
      torch::TensorOptions().dtype(torch::kFloat).device(device);
  mu_ = torch::full({}, 1.0 / static_cast<double>(options.num_classes),
                    float_options);
  var_ = torch::full({}, 1.0, float_options);
}

void SoftMatchWeights::Update(const torch::Tensor& probs_weak) {
  torch::NoGradGuard no_grad;
  const torch::Tensor probs =
      CheckedProbs(probs_weak, options_.num_classes, "probs_weak");
  const torch::Tensor max_probs = std::get<0>(torch::max(probs, /*dim=*/1));
  // One sample has no spread; the unbiased estimate would be NaN.
  const torch::Tensor batch_var = max_probs.size(0) > 1
                                      ? max_probs.var(/*unbiased=*/true)
                                      : torch::zeros_like(mu_);
  const double m = options_.momentum;
  mu_.mul_(m).add_(max_probs.mean(), 1.0 - m);
  var_.mul_(m).add_(batch_var, 1.0 - m);
}

torch::Tensor SoftMatchWeights::Weights(const torch::Tensor& probs_weak) const {
  torch::NoGradGuard no_grad;
  const torch::Tensor probs =
      CheckedProbs(probs_weak, options_.num_classes, "probs_weak");
  const torch::Tensor below =
      (std::get<0>(torch::max(probs, /*dim=*/1)) - mu_).clamp_max(0.0);
  const double n2 = options_.n_sigma * options_.n_sigma;
  // var can reach 0 only if every batch so far had one confidence.
  return torch::exp(-below.square() * n2 / (2.0 * var_.clamp_min(1e-12)));
}

torch::Tensor SoftMatchWeights::Step(const torch::Tensor& probs_weak) {
  Update(probs_weak);
  return Weights(probs_weak);
}

void SoftMatchWeights::Save(torch::serialize::OutputArchive& archive,
                            const std::string& key) const {
  torch::serialize::OutputArchive state;
  state.write("mu", mu_, /*is_buffer=*/true);
  state.write("var", var_, /*is_buffer=*/true);
  archive.write(key, state);
}

void SoftMatchWeights::Load(torch::serialize::InputArchive& archive,
                            const std::string& key) {
  torch::serialize::InputArchive state;
  archive.read(key, state);
  const torch::Tensor mu = ReadState(state, key, "mu", mu_.sizes());
  const torch::Tensor var = ReadState(state, key, "var", var_.sizes());
  torch::NoGradGuard no_grad;
  mu_.copy_(mu);
  var_.copy_(var);
}

// ---- FlexMatch

FlexMatchThresholds::FlexMatchThresholds(
    const FlexMatchThresholdOptions& options, torch::Device device)
    : options_(options) {
  TORCH_CHECK(options.num_classes >= 2, "num_classes must be >= 2, got ",
              options.num_classes);
  TORCH_CHECK(options.pool_size >= 1, "pool_size must be >= 1, got ",
              options.pool_size);
  TORCH_CHECK(options.base_threshold > 0.0 && options.base_threshold <= 1.0,
              "base_threshold must be in (0, 1], got ", options.base_threshold);
  selected_label_buffer_ =
      torch::full({options.pool_size + 1}, -1,
                  torch::TensorOptions().dtype(torch::kLong).device(device));
  selected_label_ = selected_label_buffer_.narrow(0, 0, options.pool_size);
  beta_ =
      torch::zeros({options.num_classes},
                   torch::TensorOptions().dtype(torch::kFloat).device(device));
}

void FlexMatchThresholds::Update(const torch::Tensor& sample_indices,
                                 const torch::Tensor& probs_weak) {
  torch::NoGradGuard no_grad;
  const int64_t num_classes = options_.num_classes;
  const int64_t pool_size = options_.pool_size;
  const torch::Tensor probs =
      CheckedProbs(probs_weak, num_classes, "probs_weak");
  TORCH_CHECK(sample_indices.defined() && sample_indices.dim() == 1 &&
                  sample_indices.size(0) == probs.size(0),
              "sample_indices must be [", probs.size(0), "], got ",
              sample_indices.sizes());
  auto [max_probs, argmax] = torch::max(probs, /*dim=*/1);

  // Confident samples write their prediction; the others write to the
  // scratch entry N of the underlying buffer.
  const torch::Tensor confident = max_probs.ge(options_.base_threshold);
  const torch::Tensor target =
      torch::where(confident, sample_indices.to(torch::kLong),
                   torch::full_like(argmax, pool_size));
  selected_label_buffer_.index_copy_(0, target, argmax);

  // counts[0]: unused samples; counts[1 + c]: sigma_c.
  const torch::Tensor counts = WeightedBincount(
      selected_label_ + 1, torch::ones_like(selected_label_), num_classes + 1);
  const torch::Tensor sigma = counts.narrow(0, 1, num_classes);
  const torch::Tensor largest = counts.max();
  const torch::Tensor denominator =
      options_.threshold_warmup ? largest : sigma.max();
  const torch::Tensor new_beta =
      sigma.to(torch::kFloat) / denominator.clamp_min(1).to(torch::kFloat);
  beta_.copy_(torch::where(largest.lt(pool_size), new_beta, beta_));
}

torch::Tensor FlexMatchThresholds::ClassThresholds() const {
  torch::NoGradGuard no_grad;
  return options_.base_threshold * beta_ / (2.0 - beta_);
}

torch::Tensor FlexMatchThresholds::Mask(const torch::Tensor& probs_weak) const {
  torch::NoGradGuard no_grad;
  const torch::Tensor probs =
      CheckedProbs(probs_weak, options_.num_classes, "probs_weak");
  auto [max_probs, argmax] = torch::max(probs, /*dim=*/1);
  return max_probs.ge(ClassThresholds().index_select(0, argmax))
      .to(torch::kFloat);
}

torch::Tensor FlexMatchThresholds::Step(const torch::Tensor& sample_indices,
                                        const torch::Tensor& probs_weak) {
  torch::Tensor mask = Mask(probs_weak);
  Update(sample_indices, probs_weak);
  return mask;
}

void FlexMatchThresholds::Save(torch::serialize::OutputArchive& archive,
                               const std::string& key) const {
  torch::serialize::OutputArchive state;
  state.write("selected_label", selected_label_.clone(), /*is_buffer=*/true);
  state.write("beta", beta_, /*is_buffer=*/true);
  archive.write(key, state);
}

void FlexMatchThresholds::Load(torch::serialize::InputArchive& archive,
                               const std::string& key) {
  torch::serialize::InputArchive state;
  archive.read(key, state);
  const torch::Tensor selected_label =
      ReadState(state, key, "selected_label", selected_label_.sizes());
  const torch::Tensor beta = ReadState(state, key, "beta", beta_.sizes());
  torch::NoGradGuard no_grad;
  selected_label_.copy_(selected_label);
  beta_.copy_(beta);
}

}  // namespace trainer
