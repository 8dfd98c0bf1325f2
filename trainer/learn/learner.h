// The training engine: a classifier, its EMA copy, an SGD optimizer with a
// cosine schedule, a generator, autocast and an optional CUDA graph, with
// checkpoints and prediction. What a step optimises comes from a
// TrainingObjective (trainer/learn/objective.h).
#ifndef TRAINER_LEARN_LEARNER_H_
#define TRAINER_LEARN_LEARNER_H_

#include <ATen/core/Generator.h>
#include <torch/nn/module.h>
#include <torch/optim/sgd.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "trainer/learn/model.h"
#include "trainer/learn/objective.h"

namespace trainer {

struct LearnerOptions {
  // Peak learning rate; step k uses
  // lr * cos(cosine_span * pi * k / total_steps).
  double lr = 0.03;
  // 7/16 as in FixMatch (ends at 0.2 lr); 1/2 decays to zero.
  double cosine_span = 7.0 / 16.0;
  // SGD momentum.
  double momentum = 0.9;
  // Nesterov momentum.
  bool nesterov = true;
  // L2 weight decay on conv and linear weights (none on BN and biases).
  double weight_decay = 5e-4;
  // After each step ema = ema_decay * ema + (1 - ema_decay) * param; BN
  // buffers are copied.
  double ema_decay = 0.999;
  // Length K of the cosine schedule; steps past it keep the final rate.
  int64_t total_steps = 16384;
  // bf16 autocast for the step's forward passes on CUDA; ignored on CPU.
  bool mixed_precision = true;
  // channels_last weights and inputs on CUDA; ignored on CPU.
  bool channels_last = true;
  // On CUDA, capture the whole step (the objective's sampling, augmentation
  // and forward, then backward, SGD, EMA) as a CUDA graph and replay it. The
  // first 3 steps for new input shapes run eagerly (warm-up), the 4th
  // captures. The graph reads private copies of StepData's tensors (extra
  // device memory of their size), refreshed when Step gets other tensors or
  // ones modified in place. Needs a CUDA build of LibTorch >= 2.4 and no
  // other CUDA work in the process while a capture runs; ignored on CPU.
  bool cuda_graph = false;
  // Seed of the learner's generator (batch sampling and augmentation).
  uint64_t seed = 0;
  // Images per forward pass in Predict and RecalibrateBatchNorm.
  int64_t predict_batch_size = 1024;
};

// lr * cos(span * pi * k / K) with k clamped to [0, K]; K > 0.
double CosineLearningRate(double lr, int64_t step, int64_t total_steps,
                          double span = 7.0 / 16.0);

// ema_param = decay * ema_param + (1 - decay) * param for every parameter,
// and copies every buffer, without recording gradients. `ema` and `model`
// must have the same structure and live on the same device; throws
// c10::Error otherwise.
void UpdateEma(torch::nn::Module& ema, const torch::nn::Module& model,
               double decay);

// What one step reports. Tensors stay on the device (read them every few
// steps to avoid a host sync per step).
struct LearnerStepStats {
  torch::Tensor loss;                  // the objective's total, detached
  std::vector<torch::Tensor> scalars;  // objective's metric_names() order
  double lr = 0.0;                     // learning rate the step used
  int64_t step = 0;                    // steps completed, this one included
};

// Class probabilities and embeddings of a set of images.
struct Predictions {
  torch::Tensor probs;       // [N, num_classes] float32
  torch::Tensor embeddings;  // [N, embedding_dim] float32
};

// Owns a classifier, its EMA copy, the objective, an SGD optimizer over the
// model's and the objective's trained parameters, the step counter and a
// generator, all on one device. Not thread-safe: call from one thread.
class Learner {
 public:
  // Builds the model and EMA copy (identical at start) on `device`, with
  // `objective` (not null; its trained modules already on `device`).
  // Returns INVALID_ARGUMENT for bad options (see MakeModel; total_steps and
  // predict_batch_size must be positive, ema_decay in [0, 1], nesterov needs
  // momentum > 0, lr, momentum and weight_decay non-negative) and
  // UNAVAILABLE / UNIMPLEMENTED if `device` (or cuda_graph on it) cannot be
  // used.
  static absl::StatusOr<std::unique_ptr<Learner>> Create(
      const ModelOptions& model_options, const LearnerOptions& options,
      std::unique_ptr<TrainingObjective> objective, torch::Device device);

  Learner(const Learner&) = delete;
  Learner& operator=(const Learner&) = delete;
  ~Learner();

  // One step: the objective's loss on `data`, backpropagated, an SGD step at
  // the scheduled rate and an EMA update. Tensors must be on device(), images
  // [N, C, H, W] float32 in [0, 1] with equal [C, H, W]; the labelled ones
  // are required (non-empty, targets int64 [L]) when the objective uses
  // labels; teacher_probs, when defined, is float32 [U, classes]. Does not
  // synchronise with the device (except around warm-up and
  // capture with cuda_graph). Returns INVALID_ARGUMENT for inputs of the
  // wrong shape, type or device, RESOURCE_EXHAUSTED when memory runs out and
  // INTERNAL for other LibTorch errors.
  absl::StatusOr<LearnerStepStats> Step(const StepData& data);

  // Softmax probabilities and embeddings of `images` ([N, C, H, W] float32
  // in [0, 1] on device()) from the model or, with use_ema, its EMA copy,
  // in eval mode without gradients, predict_batch_size at a time. Results
  // are on device(). Errors as for Step.
  absl::StatusOr<Predictions> Predict(const torch::Tensor& images,
                                      bool use_ema);

  // Re-estimates the BatchNorm running statistics of the EMA model (or the
  // model) from `images` (clean pool images, as for Predict): statistics are
  // reset and averaged over the images without gradients, then the modules'
  // momentum is restored. The next Step overwrites the EMA's statistics with
  // the model's again (UpdateEma copies buffers). Errors as for Predict.
  absl::Status RecalibrateBatchNorm(const torch::Tensor& images, bool use_ema);

  // Writes model, EMA, optimizer state, step counter, learning-rate
  // schedule, generator state and the objective's state to `path` (one
  // torch archive).
  // Returns NOT_FOUND if the directory does not exist and INTERNAL if
  // writing fails.
  absl::Status Save(const std::string& path) const;

  // Restores what Save wrote, onto device(). Returns NOT_FOUND if `path`
  // does not exist; FAILED_PRECONDITION if it was written for other
  // ModelOptions, another objective, or by an older trainer version;
  // DATA_LOSS if it cannot be read. The learner is unchanged on error. The
  // schedule (SetSchedule, FitScheduleEnd) is restored too; a checkpoint
  // written before Save kept it leaves the learner's schedule as it was.
  absl::Status Load(const std::string& path);

  // Initial weights from an earlier stage: copies the trained model's
  // weights and BN statistics from a checkpoint Save wrote (any objective,
  // same ModelOptions) into both the model and the EMA copy, leaving the
  // optimizer, step and objective untouched (a pretraining checkpoint's
  // classifier layer is its untrained initialisation). Errors as for Load.
  absl::Status InitializeFrom(const std::string& path);

  // Overwrites the classifier layer (the logits' linear map of the
  // embedding) of both the model and its EMA copy with `weight`
  // [num_classes, embedding_dim] and `bias` [num_classes], copied onto
  // device(); nothing else changes. INVALID_ARGUMENT for other shapes (the
  // learner is then unchanged).
  absl::Status SetClassifierLayer(const torch::Tensor& weight,
                                  const torch::Tensor& bias);

  // From now on step k uses the cosine at (k - start_step) over
  // `total_steps` steps (a restarted stage's fresh schedule); the default
  // is (0, options().total_steps). total_steps > 0.
  void SetSchedule(int64_t start_step, int64_t total_steps);

  // Moves the end of the current schedule to `end_step` (at least step() +
  // 1) without a jump in the learning rate: the next step keeps the rate
  // it would have had, and the rest of the cosine is stretched or squeezed
  // onto the steps up to end_step. For a run fitted to a time limit.
  void FitScheduleEnd(int64_t end_step);

  // Step at which the current schedule ends.
  int64_t schedule_end() const { return schedule_end_; }

  // Sets the step counter (a restarted stage continues the run's count).
  void set_step(int64_t step) { step_ = step; }

  // Steps completed.
  int64_t step() const { return step_; }
  // Learning rate the next step will use.
  double next_lr() const;
  torch::Device device() const { return device_; }
  const ModelOptions& model_options() const { return model_options_; }
  const LearnerOptions& options() const { return options_; }
  TrainingObjective& objective() { return *objective_; }
  const TrainingObjective& objective() const { return *objective_; }
  // The trained model and its EMA copy (owned by the learner).
  Classifier& model();
  Classifier& ema_model();

 private:
  struct Networks;

  // Builds model and EMA (equal weights) on `device` and an SGD optimizer
  // over the model's and the objective's trained parameters, with weight
  // decay on parameters of dimension > 1 only.
  static absl::StatusOr<std::unique_ptr<Networks>> BuildNetworks(
      const ModelOptions& model_options, const LearnerOptions& options,
      TrainingObjective& objective, const torch::Device& device,
      bool channels_last);

  // Runs `net` on `images` predict_batch_size at a time (channels_last and
  // autocast as for steps) and hands each chunk's output to `consume`, in
  // order. Throws c10::Error.
  void ForwardInChunks(Classifier& net, const torch::Tensor& images,
                       const std::function<void(const ModelOutput&)>& consume);

  // One eager step (inputs already validated) at learning rate `lr`, or at
  // -neg_lr read on the device when neg_lr is defined. Throws c10::Error.
  ObjectiveLoss RunStep(const StepData& data, double lr,
                        const torch::Tensor& neg_lr);

  // A captured step and what it reads; defined in CUDA builds only.
  struct CudaGraphStep;
  // Step with cuda_graph: warm-up, capture, then replay. Throws c10::Error.
  absl::StatusOr<LearnerStepStats> GraphStep(const StepData& data);

  Learner(const ModelOptions& model_options, const LearnerOptions& options,
          std::unique_ptr<TrainingObjective> objective, torch::Device device,
          std::unique_ptr<Networks> networks, at::Generator generator);

  ModelOptions model_options_;
  LearnerOptions options_;
  std::unique_ptr<TrainingObjective> objective_;
  torch::Device device_;
  // Channels-last and autocast apply (CUDA only).
  bool channels_last_;
  bool mixed_precision_;
  bool use_cuda_graph_;
  std::unique_ptr<Networks> networks_;
  at::Generator generator_;
  int64_t step_ = 0;
  // The cosine schedule: from step schedule_anchor_ (where the cosine is
  // at fraction schedule_anchor_progress_ of its span) to schedule_end_,
  // linearly in steps.
  int64_t schedule_anchor_ = 0;
  double schedule_anchor_progress_ = 0;
  int64_t schedule_end_;
  // cuda_graph: warm-up state and the captured step for the current input
  // shapes.
  std::unique_ptr<CudaGraphStep> graph_;
};

}  // namespace trainer

#endif  // TRAINER_LEARN_LEARNER_H_
