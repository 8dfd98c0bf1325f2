// Training objectives by name: the one list the trainer's flags, errors and
// reports use. A new objective is a file in this folder plus one entry in
// registry.cc.
#ifndef TRAINER_OBJECTIVES_REGISTRY_H_
#define TRAINER_OBJECTIVES_REGISTRY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "trainer/learn/objective.h"
#include "trainer/objectives/byol.h"
#include "trainer/objectives/fixmatch.h"
#include "trainer/objectives/flexmatch.h"
#include "trainer/objectives/freematch.h"
#include "trainer/objectives/simclr.h"
#include "trainer/objectives/softmatch.h"

namespace trainer {

// Every objective's options; MakeObjective reads the part for `name`.
struct ObjectiveOptions {
  // One of ObjectiveNames().
  std::string name = "fixmatch";
  FixMatchOptions fixmatch;
  FlexMatchOptions flexmatch;
  FreeMatchOptions freematch;
  SoftMatchOptions softmatch;
  SimClrOptions simclr;
  ByolOptions byol;
};

// What an objective needs to know about where it runs.
struct ObjectiveEnvironment {
  torch::Device device{torch::kCPU};
  // Size of the model's embedding (input of heads).
  int64_t embedding_dim = 0;
  // Images in the unlabelled pool (for per-sample state).
  int64_t pool_size = 0;
  // Seeds any initialisation the objective does.
  uint64_t seed = 0;
};

// The batch and augmentation options of the pseudo-labelling objective
// `options.name` (fixmatch, flexmatch, freematch, softmatch); null for any
// other.
const SemiSupervisedOptions* SemiSupervisedBatch(
    const ObjectiveOptions& options);

// The contrastive views of the label-free objective `options.name` (simclr,
// byol); null for any other.
const ContrastiveAugmentOptions* ContrastiveViews(
    const ObjectiveOptions& options);

// How the objective `options.name` thresholds pseudo-labels, for reports:
// "0.95", "curriculum below 0.95, warm-up", "self-adaptive", "soft", or
// "none".
std::string ThresholdDescription(const ObjectiveOptions& options);

// The registered names, in the order help texts list them.
std::vector<std::string> ObjectiveNames();

// Makes the objective `options.name` on `environment.device`. Returns
// INVALID_ARGUMENT for an unknown name (listing the known ones) or bad
// options.
absl::StatusOr<std::unique_ptr<TrainingObjective>> MakeObjective(
    const ObjectiveOptions& options, const ObjectiveEnvironment& environment);

}  // namespace trainer

#endif  // TRAINER_OBJECTIVES_REGISTRY_H_
