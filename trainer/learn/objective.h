// The interface between the training engine (Learner) and a training
// objective (FixMatch, FreeMatch, SimCLR, ...): an objective turns the
// networks and the run's data tensors into one step's loss; the learner owns
// everything else (optimizer, EMA, schedule, autocast, CUDA graph,
// checkpoints). A new objective is one file under trainer/objectives/ plus
// one line in trainer/objectives/registry.cc.
#ifndef TRAINER_LEARN_OBJECTIVE_H_
#define TRAINER_LEARN_OBJECTIVE_H_

#include <ATen/core/Generator.h>
#include <torch/nn/module.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <string>
#include <vector>

#include "trainer/learn/model.h"

namespace trainer {

// The data one step may draw from, all on the learner's device. Objectives
// sample their own batches from these with the step's generator.
struct StepData {
  // Bought images [L, C, H, W] float32 in [0, 1] and their labels [L] int64;
  // undefined for objectives that use no labels.
  torch::Tensor labelled_images;
  torch::Tensor labelled_targets;
  // The unlabelled pool [U, C, H, W] float32 in [0, 1].
  torch::Tensor unlabelled_images;
  // A fixed teacher's class probabilities of the pool's images [U, classes]
  // float32 (a distillation stage), or undefined. Pseudo-labelling
  // objectives blend them into their pseudo-labels.
  torch::Tensor teacher_probs;
};

// What an objective sees of the learner during one step. References are
// valid for the duration of the Loss call only.
struct StepContext {
  Classifier& model;         // being trained, in train mode
  Classifier& ema;           // the EMA copy, eval mode, no gradients
  at::Generator& generator;  // the learner's generator, on the device
  bool channels_last;        // inputs must be made channels_last (CUDA only)

  // Runs `net` on `images`, converting them to channels_last when needed.
  ModelOutput Forward(Classifier& net, const torch::Tensor& images) const {
    return net->forward(
        channels_last ? images.contiguous(at::MemoryFormat::ChannelsLast)
                      : images);
  }
};

// One step's loss: `total` is what is backpropagated (0-d, float32);
// `scalars` are 0-d tensors in the order of metric_names(), for metrics.
struct ObjectiveLoss {
  torch::Tensor total;
  std::vector<torch::Tensor> scalars;
};

// A training objective. Not thread-safe; owned by one Learner.
class TrainingObjective {
 public:
  virtual ~TrainingObjective() = default;

  // The registered name ("fixmatch", "freematch", "simclr").
  virtual std::string name() const = 0;

  // Whether steps need labelled images (StepData's labelled tensors).
  virtual bool uses_labels() const = 0;

  // Names of ObjectiveLoss::scalars, in order (e.g. loss_x, loss_u,
  // mask_rate); each is written to metrics.jsonl under its name.
  virtual std::vector<std::string> metric_names() const = 0;

  // Modules the objective trains besides the model (e.g. a projection head),
  // already on the learner's device; the learner optimises their parameters
  // too. Empty by default.
  virtual std::vector<torch::nn::Module*> trained_modules() { return {}; }

  // One step's loss, computed from tensors only: no host synchronisation
  // and no host-side decisions on tensor values, so the learner can capture
  // the whole step as a CUDA graph. Runs under the learner's autocast.
  // Throws c10::Error on bad inputs.
  virtual ObjectiveLoss Loss(const StepContext& context,
                             const StepData& data) = 0;

  // The objective's own state for checkpoints (heads, adaptive thresholds);
  // by default none. Load throws c10::Error when the archive lacks it.
  virtual void Save(torch::serialize::OutputArchive& archive) const {}
  virtual void Load(torch::serialize::InputArchive& archive) {}
};

}  // namespace trainer

#endif  // TRAINER_LEARN_OBJECTIVE_H_
