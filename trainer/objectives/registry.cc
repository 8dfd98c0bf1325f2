#include "trainer/objectives/registry.h"

#include <functional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace trainer {
namespace {

using Factory = std::function<absl::StatusOr<std::unique_ptr<TrainingObjective>>(
    const ObjectiveOptions&, const ObjectiveEnvironment&)>;

template <typename T>
absl::StatusOr<std::unique_ptr<TrainingObjective>> Upcast(
    absl::StatusOr<std::unique_ptr<T>> made) {
  if (!made.ok()) return made.status();
  return std::unique_ptr<TrainingObjective>(std::move(*made));
}

const std::vector<std::pair<std::string, Factory>>& Registry() {
  static const auto* registry =
      new std::vector<std::pair<std::string, Factory>>{
          {"fixmatch",
           [](const ObjectiveOptions& o, const ObjectiveEnvironment& e) {
             return Upcast(FixMatchObjective::Create(o.fixmatch, e.device,
                                                     e.embedding_dim, e.seed));
           }},
          {"flexmatch",
           [](const ObjectiveOptions& o, const ObjectiveEnvironment& e) {
             return Upcast(FlexMatchObjective::Create(o.flexmatch, e.pool_size,
                                                      e.device, e.embedding_dim,
                                                      e.seed));
           }},
          {"freematch",
           [](const ObjectiveOptions& o, const ObjectiveEnvironment& e) {
             return Upcast(FreeMatchObjective::Create(o.freematch, e.device,
                                                      e.embedding_dim, e.seed));
           }},
          {"softmatch",
           [](const ObjectiveOptions& o, const ObjectiveEnvironment& e) {
             return Upcast(SoftMatchObjective::Create(o.softmatch, e.device,
                                                      e.embedding_dim, e.seed));
           }},
          {"simclr",
           [](const ObjectiveOptions& o, const ObjectiveEnvironment& e) {
             return Upcast(SimClrObjective::Create(o.simclr, e.embedding_dim,
                                                   e.device, e.seed));
           }},
          {"byol",
           [](const ObjectiveOptions& o, const ObjectiveEnvironment& e) {
             return Upcast(ByolObjective::Create(o.byol, e.embedding_dim,
                                                 e.device, e.seed));
           }},
      };
  return *registry;
}

}  // namespace

const SemiSupervisedOptions* SemiSupervisedBatch(
    const ObjectiveOptions& options) {
  if (options.name == "fixmatch") return &options.fixmatch.batch;
  if (options.name == "flexmatch") return &options.flexmatch.batch;
  if (options.name == "freematch") return &options.freematch.batch;
  if (options.name == "softmatch") return &options.softmatch.batch;
  return nullptr;
}

const ContrastiveAugmentOptions* ContrastiveViews(
    const ObjectiveOptions& options) {
  if (options.name == "simclr") return &options.simclr.augment;
  if (options.name == "byol") return &options.byol.augment;
  return nullptr;
}

std::string ThresholdDescription(const ObjectiveOptions& options) {
  if (options.name == "fixmatch") {
    return absl::StrCat(options.fixmatch.threshold);
  }
  if (options.name == "flexmatch") {
    return absl::StrCat("curriculum below ", options.flexmatch.threshold,
                        options.flexmatch.threshold_warmup ? ", warm-up" : "");
  }
  if (options.name == "freematch") {
    return absl::StrCat("self-adaptive, momentum ",
                        options.freematch.ema_momentum);
  }
  if (options.name == "softmatch") {
    return absl::StrCat(
        "soft (truncated Gaussian, ", options.softmatch.n_sigma,
        " sigma, momentum ", options.softmatch.ema_momentum,
        options.softmatch.uniform_alignment ? ", uniform alignment)" : ")");
  }
  return "none";
}

std::vector<std::string> ObjectiveNames() {
  std::vector<std::string> names;
  for (const auto& [name, factory] : Registry()) names.push_back(name);
  return names;
}

absl::StatusOr<std::unique_ptr<TrainingObjective>> MakeObjective(
    const ObjectiveOptions& options, const ObjectiveEnvironment& environment) {
  for (const auto& [name, factory] : Registry()) {
    if (name == options.name) return factory(options, environment);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown objective '", options.name, "'; use one of ",
                   absl::StrJoin(ObjectiveNames(), ", ")));
}

}  // namespace trainer
