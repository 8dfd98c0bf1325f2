// FixMatch semi-supervised training (Sohn et al. 2020) on device-resident
// tensors: the loss, a parameter EMA, and a trainer that owns the model, its
// EMA copy, the optimizer and the random state.
#ifndef TRAINER_LEARN_FIXMATCH_H_
#define TRAINER_LEARN_FIXMATCH_H_

#include <ATen/core/Generator.h>
#include <torch/nn/module.h>
#include <torch/optim/sgd.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "trainer/learn/augment.h"
#include "trainer/learn/model.h"

namespace trainer {

struct FixMatchOptions {
  // Confidence threshold tau: an unlabelled image counts when the weak
  // view's highest class probability is >= threshold.
  double threshold = 0.95;
  // Unlabelled images per step = mu * batch_size.
  int mu = 7;
  // Labelled images per step (sampled with replacement).
  int batch_size = 64;
  // Weight of the unsupervised loss.
  double lambda_u = 1.0;
  // Peak learning rate; step k uses lr * cos(7 pi k / (16 total_steps)).
  double lr = 0.03;
  // SGD momentum.
  double momentum = 0.9;
  // Nesterov momentum.
  bool nesterov = true;
  // L2 weight decay on conv and linear weights (none on BN and biases).
  double weight_decay = 5e-4;
  // After each step ema = ema_decay * ema + (1 - ema_decay) * param; BN
  // buffers are copied.
  double ema_decay = 0.999;
  // Pseudo-label with the EMA model (eval mode) instead of the model itself.
  bool use_ema_for_pseudo_labels = false;
  // Length K of the cosine schedule; steps past it keep the final rate.
  int64_t total_steps = 16384;
  // bf16 autocast for forward passes on CUDA; ignored on CPU.
  bool mixed_precision = true;
  // channels_last weights and inputs on CUDA; ignored on CPU.
  bool channels_last = true;
  // On CUDA, capture the whole step (sampling, augmentation, forward,
  // backward, SGD, EMA) as a CUDA graph and replay it, removing nearly all
  // host overhead. The first 3 steps for new input shapes run eagerly
  // (warm-up), the 4th captures. The graph reads private copies of the
  // inputs (extra device memory of their size), refreshed when Step gets
  // other tensors or ones modified in place. Needs a CUDA build of LibTorch
  // >= 2.4 and no other CUDA work in the process while a capture runs;
  // ignored on CPU.
  bool cuda_graph = false;
  // Seed of the trainer's generator (batch sampling and augmentation).
  uint64_t seed = 0;
  // Images per forward pass in Predict.
  int64_t predict_batch_size = 1024;
  // Augmentation of labelled images and the weak unlabelled view.
  WeakAugmentOptions weak;
  // Augmentation of the strong unlabelled view.
  StrongAugmentOptions strong;
};

// The FixMatch loss terms; 0-d float32 tensors on the logits' device.
struct FixMatchLoss {
  torch::Tensor total;         // supervised + lambda_u * unsupervised
  torch::Tensor supervised;    // mean cross-entropy on labelled images
  torch::Tensor unsupervised;  // mean over ALL unlabelled of CE * mask
  torch::Tensor mask_rate;     // fraction of unlabelled images above tau
};

// Computes the FixMatch loss. logits_x [B, C] with targets_x [B] (int64);
// logits_u_weak and logits_u_strong [U, C] for two views of the same
// unlabelled images. Pseudo-labels are argmax of softmax(logits_u_weak),
// detached; an image is masked in when its max probability >= threshold.
// Logits may be any floating type; the loss is computed in float32. Throws
// c10::Error on mismatched shapes or out-of-range targets.
FixMatchLoss ComputeFixMatchLoss(const torch::Tensor& logits_x,
                                 const torch::Tensor& targets_x,
                                 const torch::Tensor& logits_u_weak,
                                 const torch::Tensor& logits_u_strong,
                                 double threshold, double lambda_u);

// lr * cos(7 pi k / (16 K)) with k clamped to [0, K]; `total_steps` K > 0.
double CosineLearningRate(double lr, int64_t step, int64_t total_steps);

// ema_param = decay * ema_param + (1 - decay) * param for every parameter,
// and copies every buffer, without recording gradients. `ema` and `model`
// must have the same structure (e.g. built from the same ModelOptions) and
// live on the same device; throws c10::Error otherwise.
void UpdateEma(torch::nn::Module& ema, const torch::nn::Module& model,
               double decay);

// What one FixMatch step reports. The loss tensors stay on the device (read
// them every few steps to avoid a host sync per step).
struct FixMatchStepStats {
  FixMatchLoss loss;  // detached
  double lr = 0.0;    // learning rate the step used
  int64_t step = 0;   // steps completed, this one included
};

// Class probabilities and embeddings of a set of images.
struct Predictions {
  torch::Tensor probs;       // [N, num_classes] float32
  torch::Tensor embeddings;  // [N, embedding_dim] float32
};

// Owns a classifier, its EMA copy, an SGD optimizer, the step counter and a
// generator, all on one device. Not thread-safe: call from one thread.
// The optimizer holds the parameter groups and momentum buffers (and is what
// Save writes); steps apply its update rule with foreach kernels.
class FixMatchTrainer {
 public:
  // Builds the model and EMA copy (identical at start) on `device`. Returns
  // INVALID_ARGUMENT for bad options (see MakeModel; batch_size, mu,
  // total_steps, predict_batch_size must be positive, threshold in [0, 1],
  // ema_decay in [0, 1]; nesterov needs momentum > 0) and UNAVAILABLE /
  // UNIMPLEMENTED if `device` (or cuda_graph on it) cannot be used.
  static absl::StatusOr<std::unique_ptr<FixMatchTrainer>> Create(
      const ModelOptions& model_options, const FixMatchOptions& options,
      torch::Device device);

  FixMatchTrainer(const FixMatchTrainer&) = delete;
  FixMatchTrainer& operator=(const FixMatchTrainer&) = delete;
  ~FixMatchTrainer();

  // One FixMatch step: samples batch_size labelled and mu * batch_size
  // unlabelled images with the trainer's generator, augments them (weak for
  // labelled, weak + strong for unlabelled), runs one forward pass over the
  // concatenation, backpropagates, takes an SGD step at the scheduled rate
  // and updates the EMA. labelled_images [L, C, H, W] and
  // unlabelled_images [U, C, H, W] are float32 in [0, 1] and
  // labelled_targets [L] int64 in [0, num_classes), all on device(); L, U > 0.
  // Does not synchronise with the device (except around warm-up and capture
  // with cuda_graph). Returns INVALID_ARGUMENT for
  // inputs of the wrong shape, type or device, RESOURCE_EXHAUSTED when
  // memory runs out and INTERNAL for other LibTorch errors.
  absl::StatusOr<FixMatchStepStats> Step(
      const torch::Tensor& labelled_images,
      const torch::Tensor& labelled_targets,
      const torch::Tensor& unlabelled_images);

  // Softmax probabilities and embeddings of `images` ([N, C, H, W] float32
  // in [0, 1] on device()) from the model or, with use_ema, its EMA copy,
  // in eval mode without gradients, predict_batch_size at a time. Results
  // are on device(). Errors as for Step.
  absl::StatusOr<Predictions> Predict(const torch::Tensor& images,
                                      bool use_ema);

  // Writes model, EMA, optimizer state, step counter and generator state to
  // `path` (one torch archive). Returns NOT_FOUND if the directory does not
  // exist and INTERNAL if writing fails.
  absl::Status Save(const std::string& path) const;

  // Restores what Save wrote, onto device(). Returns NOT_FOUND if `path`
  // does not exist, FAILED_PRECONDITION if it was written for other
  // ModelOptions, DATA_LOSS if it cannot be read; the trainer is unchanged
  // on error.
  absl::Status Load(const std::string& path);

  // Steps completed.
  int64_t step() const { return step_; }
  // Learning rate the next step will use.
  double next_lr() const;
  torch::Device device() const { return device_; }
  const ModelOptions& model_options() const { return model_options_; }
  const FixMatchOptions& options() const { return options_; }
  // The trained model and its EMA copy (owned by the trainer).
  Classifier& model();
  Classifier& ema_model();

 private:
  struct Networks;

  // Builds model and EMA (equal weights) on `device` and an SGD optimizer
  // with weight decay on parameters of dimension > 1 only.
  static absl::StatusOr<std::unique_ptr<Networks>> BuildNetworks(
      const ModelOptions& model_options, const FixMatchOptions& options,
      const torch::Device& device, bool channels_last);

  // One eager step (inputs already validated) at learning rate `lr`, or at
  // -neg_lr read on the device when neg_lr is defined. Throws c10::Error.
  FixMatchLoss RunStep(const torch::Tensor& labelled_images,
                       const torch::Tensor& labelled_targets,
                       const torch::Tensor& unlabelled_images, double lr,
                       const torch::Tensor& neg_lr);

  // A captured step and what it reads; defined in CUDA builds only.
  struct CudaGraphStep;
  // Step with cuda_graph: warm-up, capture, then replay. Throws c10::Error.
  absl::StatusOr<FixMatchStepStats> GraphStep(
      const torch::Tensor& labelled_images,
      const torch::Tensor& labelled_targets,
      const torch::Tensor& unlabelled_images);

  FixMatchTrainer(const ModelOptions& model_options,
                  const FixMatchOptions& options, torch::Device device,
                  std::unique_ptr<Networks> networks, at::Generator generator);

  ModelOptions model_options_;
  FixMatchOptions options_;
  torch::Device device_;
  // Channels-last and autocast apply (CUDA only).
  bool channels_last_;
  bool mixed_precision_;
  bool use_cuda_graph_;
  std::unique_ptr<Networks> networks_;
  at::Generator generator_;
  int64_t step_ = 0;
  // cuda_graph: warm-up state and the captured step for the current input
  // shapes.
  std::unique_ptr<CudaGraphStep> graph_;
};

}  // namespace trainer

#endif  // TRAINER_LEARN_FIXMATCH_H_
