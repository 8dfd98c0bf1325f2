// The self-supervised pretraining stage: trains the classifier's backbone on
// the unlabelled pool with a label-free objective (SimCLR or BYOL) and keeps
// the result in a cache, keyed by everything that determines it, so a sweep of
// budgets and strategies pretrains once per seed. Reads no label.
#ifndef TRAINER_PRETRAIN_PRETRAIN_STAGE_H_
#define TRAINER_PRETRAIN_PRETRAIN_STAGE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "trainer/learn/learner.h"
#include "trainer/learn/model.h"
#include "trainer/objectives/registry.h"

namespace trainer {

struct PretrainOptions {
  // "none" or a label-free objective's name (see PretrainMethodNames()).
  std::string method = "none";
  // Optimisation steps of the stage.
  int64_t steps = 1000;
  // The objective's options (its name is set from `method`); the SimCLR
  // or BYOL part holds batch size, views and the method's own settings.
  // BYOL's target_decay also sets the learner's ema_decay (the target
  // network is the learner's EMA copy).
  ObjectiveOptions objective;
  // Learning rate schedule and optimizer; total_steps is set from `steps`,
  // seed from the run's seed and, for BYOL, ema_decay as above.
  LearnerOptions learner;
  // Folder of the checkpoint cache (created if missing).
  std::string cache_dir = "runs/pretrain-cache";
  // Log the loss every N steps (progress callback and loss curve).
  int64_t log_every = 50;
};

// The label-free objectives the stage can run.
std::vector<std::string> PretrainMethodNames();

// What the stage produced.
struct PretrainResult {
  // Checkpoint with the pretrained model (a Learner checkpoint).
  std::string checkpoint;
  // The cache key (hex), part of the checkpoint's file name.
  std::string key;
  // True when the checkpoint was already in the cache.
  bool reused = false;
  int64_t steps = 0;
  double wall_time_s = 0;
  double steps_per_s = 0;
  // (step, loss) every log_every steps; empty when reused.
  std::vector<std::pair<int64_t, double>> loss_curve;
};

// The revision of the stage's code. Raise it in the change that makes the
// same options train something else (the augmentations' or the loss's
// code, the optimiser's, the projection head's fixed settings): cached
// checkpoints of earlier revisions are then no longer reused. 1 adds
// nothing to the key, so the keys made before it existed stay valid.
inline constexpr int kPretrainRevision = 1;

// The cache key: SHA-256 over the pool's pixels (as bytes), the model's
// options, the stage's options (all of them: crop, flip, colour
// distortion, every pixel-op setting, view side, objective, optimiser),
// the seed and kPretrainRevision. Equal inputs give equal keys; a changed
// pixel, option or seed gives another. `pool` is [N, C, H, W] float32 in
// [0, 1] on any device.
absl::StatusOr<std::string> PretrainCacheKey(const torch::Tensor& pool,
                                             const ModelOptions& model,
                                             const PretrainOptions& options,
                                             uint64_t seed);

// What the stage reports every log_every steps (and after its last step).
struct PretrainStepReport {
  int64_t step = 0;          // steps completed
  double loss = 0;           // the objective's loss at that step
  double steps_per_s = 0;    // over the steps since the previous report
  double lr = 0;             // learning rate that step used
};
using PretrainProgress = std::function<void(const PretrainStepReport&)>;

// Returns the cached checkpoint for (pool, model, options, seed) or trains
// one: `options.steps` steps of `options.method` from the model's seeded
// initialisation on `pool` (on `device`), saved to a temporary file and
// renamed into the cache, so an interrupted stage leaves no entry. `stop`
// (may be null) is polled between steps: once true the stage returns
// CANCELLED without a cache entry. INVALID_ARGUMENT for method "none", an
// unknown or label-using method or non-positive steps; the learner's and
// file system's errors otherwise.
absl::StatusOr<PretrainResult> RunPretraining(const PretrainOptions& options,
                                              const ModelOptions& model,
                                              const torch::Tensor& pool,
                                              torch::Device device,
                                              uint64_t seed,
                                              const PretrainProgress& progress,
                                              const std::atomic<bool>* stop);

}  // namespace trainer

#endif  // TRAINER_PRETRAIN_PRETRAIN_STAGE_H_
