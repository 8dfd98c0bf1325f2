// Class-adaptive confidence thresholds for pseudo-labelling:
//   FreeMatchThresholds  self-adaptive thresholding (SAT) and the
//                        self-adaptive fairness term (SAF) of FreeMatch
//                        (Wang et al. 2023);
//   FlexMatchThresholds  curriculum pseudo labelling (CPL) of FlexMatch
//                        (Zhang et al. 2021);
//   SoftMatchWeights     SoftMatch's soft threshold (Chen et al. 2023): a
//                        weight per sample from a truncated Gaussian over
//                        the confidence.
// All follow the maths of microsoft/Semi-supervised-learning (USB).
//
// Every method is tensor-only: no host synchronisation and no host-side
// branch on tensor values, and the state tensors are updated in place (their
// storage never changes after construction or Load), so a training step that
// calls them can be captured as a CUDA graph. Inputs may be on the state's
// device in any floating dtype; state and outputs are float32 (int64 for
// FlexMatch's per-sample predictions). Bad shapes throw c10::Error.
// Not thread-safe.
#ifndef TRAINER_OBJECTIVES_ADAPTIVE_THRESHOLD_H_
#define TRAINER_OBJECTIVES_ADAPTIVE_THRESHOLD_H_

#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>
#include <torch/types.h>

#include <cstdint>
#include <string>

namespace trainer {

struct FreeMatchThresholdOptions {
  // Number of classes C (>= 2).
  int64_t num_classes = 10;
  // EMA momentum lambda of tau, p_model and the label histogram, in [0, 1).
  double momentum = 0.999;
};

// FreeMatch's self-adaptive thresholds. State (float32, on `device`):
//   tau        0-d  global threshold, EMA of the batch's mean max probability
//   p_model    [C]  EMA of the batch's mean probability vector
//   label_hist [C]  EMA of the batch's normalised histogram of argmax
// all initialised to 1/C as in the paper and in USB (its older versions
// used 1).
// Per step the reference updates first, then masks with the updated state:
// Step() does both in that order.
class FreeMatchThresholds {
 public:
  FreeMatchThresholds(const FreeMatchThresholdOptions& options,
                      torch::Device device);

  // EMA-updates tau, p_model and label_hist in place from the weak view's
  // probabilities `probs_weak` [U, C] (U >= 1; no gradient is recorded).
  void Update(const torch::Tensor& probs_weak);

  // float32 [U]: 1 where max_c probs_weak >= ClassThresholds()[argmax], else
  // 0. Reads the state only.
  torch::Tensor Mask(const torch::Tensor& probs_weak) const;

  // Update(probs_weak), then Mask(probs_weak): one step of the reference.
  torch::Tensor Step(const torch::Tensor& probs_weak);

  // float32 [C]: the threshold of each class, tau * p_model / max(p_model)
  // (MaxNorm), so the most expected class keeps tau and the others get less.
  torch::Tensor ClassThresholds() const;

  // The self-adaptive fairness loss (USB's freematch entropy_loss), 0-d
  // float32, differentiable w.r.t. `logits_strong` [U, C]. Over the samples
  // with mask [U] > 0, with P = SumNorm(p_model / label_hist) (from the
  // state, constant) and Q = SumNorm(mean_prob_s / hist_s), where mean_prob_s
  // is the mean softmax of the selected strong logits and hist_s the
  // normalised histogram of their argmax (classes absent from hist_s get
  // Q = 0, as the reference zeroes 1/0):
  //   loss = sum_c P_c * log(Q_c + 1e-12)
  // with the reference's sign (it is added to the total loss, scaled by
  // lambda_f; it is <= 0). Returns exactly 0 (zero gradient) when no sample
  // is selected, where the reference skips the term.
  torch::Tensor FairnessLoss(const torch::Tensor& logits_strong,
                             const torch::Tensor& mask) const;

  // Writes the state as a sub-archive under `key`.
  void Save(torch::serialize::OutputArchive& archive,
            const std::string& key) const;
  // Copies the state saved under `key` into the existing state tensors
  // (storage unchanged). Throws c10::Error when `key` or a tensor is missing
  // or has the wrong shape.
  void Load(torch::serialize::InputArchive& archive, const std::string& key);

  const torch::Tensor& tau() const { return tau_; }
  const torch::Tensor& p_model() const { return p_model_; }
  const torch::Tensor& label_hist() const { return label_hist_; }
  int64_t num_classes() const { return options_.num_classes; }

 private:
  FreeMatchThresholdOptions options_;
  torch::Tensor tau_;
  torch::Tensor p_model_;
  torch::Tensor label_hist_;
};

struct SoftMatchWeightOptions {
  // Number of classes C (>= 2).
  int64_t num_classes = 10;
  // EMA momentum of the Gaussian's mean and variance, in [0, 1).
  double momentum = 0.999;
  // USB's n_sigma, > 0: the weight falls to exp(-1/2) at sigma / n_sigma
  // below the mean confidence (sigma its standard deviation), so a larger
  // n_sigma weighs less confident images down harder.
  double n_sigma = 2.0;
};

// SoftMatch's truncated Gaussian weighting. State (float32, on `device`):
//   mu   0-d  EMA of the batch's mean max probability (starts at 1/C)
//   var  0-d  EMA of its unbiased variance over the batch (starts at 1, as
//             in USB, so early weights are close to 1)
// A sample with max probability p gets weight 1 when p >= mu, else
//   exp(-(p - mu)^2 / (2 var / n_sigma^2)),
// so no sample is dropped outright and the unsure ones count less the
// further they sit below the running mean. Per step the reference updates
// first, then weighs with the updated state: Step() does both.
class SoftMatchWeights {
 public:
  // Throws c10::Error for num_classes < 2, momentum outside [0, 1) or
  // n_sigma <= 0.
  SoftMatchWeights(const SoftMatchWeightOptions& options, torch::Device device);

  // EMA-updates mu and var in place from `probs_weak` [U, C] (U >= 1; with
  // U = 1 the batch variance is taken as 0; no gradient is recorded).
  void Update(const torch::Tensor& probs_weak);

  // float32 [U] in (0, 1]: each sample's weight under the current state.
  torch::Tensor Weights(const torch::Tensor& probs_weak) const;

  // Update(probs_weak), then Weights(probs_weak).
  torch::Tensor Step(const torch::Tensor& probs_weak);

  // As FreeMatchThresholds::Save / Load.
  void Save(torch::serialize::OutputArchive& archive,
            const std::string& key) const;
  void Load(torch::serialize::InputArchive& archive, const std::string& key);

  const torch::Tensor& mu() const { return mu_; }
  const torch::Tensor& var() const { return var_; }

 private:
  SoftMatchWeightOptions options_;
  torch::Tensor mu_;
  torch::Tensor var_;
};

struct FlexMatchThresholdOptions {
  // Number of classes C (>= 2).
  int64_t num_classes = 10;
  // Size N of the unlabelled pool that Update's sample indices address.
  int64_t pool_size = 0;
  // The fixed threshold tau of FixMatch that classes scale down (0, 1].
  double base_threshold = 0.95;
  // Threshold warm-up: normalise the class learning effects by
  // max(max_c sigma_c, number of unused samples) instead of max_c sigma_c,
  // so thresholds rise gradually while most of the pool is unpredicted.
  bool threshold_warmup = true;
};

// FlexMatch's curriculum pseudo-labelling thresholds. State, on `device`:
//   selected_label [N] int64  each pool sample's last prediction with
//                             confidence >= tau, -1 while it has none
//   beta           [C] float32 normalised learning effect of each class
//                             (zero at the start)
// Class c's threshold is tau * M(beta_c) with the convex mapping
// M(x) = x / (2 - x). The reference masks with the state before the batch
// is recorded, then records it: Step() does both in that order.
class FlexMatchThresholds {
 public:
  FlexMatchThresholds(const FlexMatchThresholdOptions& options,
                      torch::Device device);

  // Records argmax of `probs_weak` [U, C] for the pool samples
  // `sample_indices` [U] (int64 in [0, N); with duplicates one of them wins)
  // whose max probability is >= tau, then recomputes beta in place:
  // sigma_c = number of pool samples whose selected_label is c, and
  //   beta_c = sigma_c / max(max_k sigma_k, unused)   with warm-up,
  //   beta_c = sigma_c / max_k sigma_k                without;
  // as in the reference, beta is left unchanged while one bucket (unused or
  // a single class) holds the whole pool.
  void Update(const torch::Tensor& sample_indices,
              const torch::Tensor& probs_weak);

  // float32 [U]: 1 where max_c probs_weak >= ClassThresholds()[argmax].
  torch::Tensor Mask(const torch::Tensor& probs_weak) const;

  // Mask(probs_weak), then Update(sample_indices, probs_weak); returns the
  // mask: one step of the reference.
  torch::Tensor Step(const torch::Tensor& sample_indices,
                     const torch::Tensor& probs_weak);

  // float32 [C]: tau * beta_c / (2 - beta_c). All zero at the start, so
  // every sample passes until classes have been learnt.
  torch::Tensor ClassThresholds() const;

  // As FreeMatchThresholds::Save / Load; Load also checks the pool size.
  void Save(torch::serialize::OutputArchive& archive,
            const std::string& key) const;
  void Load(torch::serialize::InputArchive& archive, const std::string& key);

  const torch::Tensor& selected_label() const { return selected_label_; }
  const torch::Tensor& beta() const { return beta_; }
  int64_t num_classes() const { return options_.num_classes; }

 private:
  FlexMatchThresholdOptions options_;
  // [N + 1]: selected_label_ is its first N entries; Update sends the
  // samples below tau to entry N, so that only confident samples change the
  // pool's state without a data-dependent (host-synchronising) selection.
  torch::Tensor selected_label_buffer_;
  torch::Tensor selected_label_;
  torch::Tensor beta_;
};

}  // namespace trainer

#endif  // TRAINER_OBJECTIVES_ADAPTIVE_THRESHOLD_H_
