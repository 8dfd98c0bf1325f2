#include "trainer/pretrain/pretrain_stage.h"

#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "trainer/learn/augment.h"
#include "trainer/learn/torch_status.h"

namespace trainer {
namespace {

// Every setting of the pixel ops beyond num_ops, as text.
std::string PixelOpSettings(const StrongAugmentOptions& s) {
  std::vector<int> ops;
  for (StrongOp op : s.ops) ops.push_back(static_cast<int>(op));
  return absl::StrCat(absl::StrJoin(ops, "."), ",", s.max_rotate_degrees, ",",
                      s.max_shear, ",", s.max_translate, ",",
                      s.min_posterize_bits, ",", s.min_enhance, ",",
                      s.max_enhance, ",", s.cutout_max_fraction, ",",
                      s.cutout_fill, ",", s.geometric_fill);
}

// The views' pixel-op settings and side for the key: empty while they are
// ContrastivePixelOptions()'s and the input's side (so keys made before they
// were hashed stay valid), their text otherwise.
std::string DescribePixelOps(const ContrastiveAugmentOptions& a) {
  const std::string settings = PixelOpSettings(a.strong);
  std::string text;
  if (settings != PixelOpSettings(ContrastivePixelOptions())) {
    absl::StrAppend(&text, ",pixel:", settings);
  }
  if (a.output_size != 0) absl::StrAppend(&text, ",side:", a.output_size);
  return text;
}

// Every option that changes the stage's result, as text. The SimCLR text is
// the one earlier versions hashed, so their cached checkpoints stay valid.
std::string Describe(const ModelOptions& m, const PretrainOptions& o,
                     uint64_t seed) {
  const LearnerOptions& l = o.learner;
  const std::string model = absl::StrCat(
      "model:", m.arch, ",", m.width, ",", m.num_classes, ",", m.in_channels,
      ",", m.bn_momentum, ",", m.leaky_slope, ",", m.input_mean, ",",
      m.input_std, ",", m.init, ";method:", o.method, ";steps:", o.steps);
  std::string method;
  const ContrastiveAugmentOptions* a = nullptr;
  if (o.method == "byol") {
    const ByolOptions& b = o.objective.byol;
    method = absl::StrCat(";byol:", b.batch_size, ",", b.target_decay, ",",
                          b.hidden_dim, ",", b.projection_dim);
    a = &b.augment;
  } else {
    const SimClrOptions& s = o.objective.simclr;
    method = absl::StrCat(";simclr:", s.batch_size, ",", s.temperature, ",",
                          s.projection_hidden_dim, ",", s.projection_dim);
    // Only with local crops, so earlier keys stay valid.
    if (s.local_crops > 0) {
      absl::StrAppend(&method, ",local:", s.local_crops, ",", s.local_crop_size,
                      ",", s.local_crop_scale_min, ",", s.local_crop_scale_max);
    }
    a = &s.augment;
  }
  return absl::StrCat(
      model, method, ";crop:", a->crop.scale_min, ",", a->crop.scale_max, ",",
      a->crop.ratio_min, ",", a->crop.ratio_max, ",flip:", a->flip_probability,
      ",ops:", a->strong.num_ops, DescribePixelOps(*a),
      // Only when not the default, so earlier keys stay valid.
      a->colour == ContrastiveColour::kPixelOps
          ? std::string()
          : absl::StrCat(",colour:", ContrastiveColourName(a->colour), ",",
                         a->jitter_probability, ",", a->jitter_strength),
      ";learner:", l.lr, ",", l.cosine_span, ",", l.momentum, ",", l.nesterov,
      ",", l.weight_decay, ",", l.mixed_precision, ";seed:", seed,
      kPretrainRevision == 1 ? std::string()
                             : absl::StrCat(";revision:", kPretrainRevision));
}

}  // namespace

std::vector<std::string> PretrainMethodNames() { return {"simclr", "byol"}; }

absl::StatusOr<std::string> PretrainCacheKey(const torch::Tensor& pool,
                                             const ModelOptions& model,
                                             const PretrainOptions& options,
                                             uint64_t seed) {
  if (!pool.defined() || pool.dim() != 4) {
    return absl::InvalidArgumentError("pool must be a [N, C, H, W] tensor");
  }
  try {
    torch::Tensor bytes = (pool * 255)
                              .round()
                              .clamp(0, 255)
                              .to(torch::kCPU, torch::kByte)
                              .contiguous();
    std::string text(reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>()),
                     bytes.numel());
    text += absl::StrCat(";shape:", absl::StrJoin(pool.sizes(), "x"), ";",
                         Describe(model, options, seed));
    return common::Sha256Hex(text);
  } catch (const c10::Error& e) {
    return TorchErrorToStatus(e, "cannot hash the pool");
  }
}

absl::StatusOr<PretrainResult> RunPretraining(const PretrainOptions& options,
                                              const ModelOptions& model,
                                              const torch::Tensor& pool,
                                              torch::Device device,
                                              uint64_t seed,
                                              const PretrainProgress& progress,
                                              const std::atomic<bool>* stop) {
  const std::vector<std::string> methods = PretrainMethodNames();
  if (std::find(methods.begin(), methods.end(), options.method) ==
      methods.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown pretraining method '", options.method,
                     "'; use none or one of ", absl::StrJoin(methods, ", ")));
  }
  if (options.steps <= 0 || options.log_every <= 0) {
    return absl::InvalidArgumentError(
        "pretraining steps and log_every must be positive");
  }
  PretrainResult result;
  ASSIGN_OR_RETURN(result.key, PretrainCacheKey(pool, model, options, seed));
  std::error_code error;
  std::filesystem::create_directories(options.cache_dir, error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create the pretraining cache ", options.cache_dir,
                     ": ", error.message()));
  }
  result.checkpoint =
      (std::filesystem::path(options.cache_dir) /
       absl::StrCat(options.method, "-", result.key.substr(0, 16), ".pt"))
          .string();
  if (std::filesystem::exists(result.checkpoint)) {
    result.reused = true;
    result.steps = options.steps;
    return result;
  }

  ModelOptions model_options = model;
  model_options.init_seed = seed;
  ASSIGN_OR_RETURN(Classifier probe, MakeModel(model_options));
  ObjectiveOptions objective_options = options.objective;
  objective_options.name = options.method;
  ObjectiveEnvironment environment;
  environment.device = device;
  environment.embedding_dim = probe->embedding_dim();
  environment.pool_size = pool.size(0);
  environment.seed = seed;
  ASSIGN_OR_RETURN(std::unique_ptr<TrainingObjective> objective,
                   MakeObjective(objective_options, environment));
  if (objective->uses_labels()) {
    return absl::InvalidArgumentError(absl::StrCat(
        options.method, " uses labels and cannot pretrain on the pool"));
  }
  LearnerOptions learner_options = options.learner;
  learner_options.total_steps = options.steps;
  learner_options.seed = seed;
  if (options.method == "byol") {
    // The learner's EMA copy is BYOL's target network.
    learner_options.ema_decay = options.objective.byol.target_decay;
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Learner> learner,
                   Learner::Create(model_options, learner_options,
                                   std::move(objective), device));
  StepData data;
  data.unlabelled_images = pool;
  const auto begin = std::chrono::steady_clock::now();
  auto window = begin;
  int64_t window_step = 0;
  while (learner->step() < options.steps) {
    if (stop != nullptr && stop->load()) {
      return absl::CancelledError(absl::StrCat(
          "pretraining stopped at step ", learner->step(), " of ",
          options.steps, "; nothing was cached"));
    }
    ASSIGN_OR_RETURN(LearnerStepStats stats, learner->Step(data));
    if (stats.step % options.log_every == 0 || stats.step == options.steps) {
      const double loss = stats.loss.item<double>();  // synchronises
      const auto now = std::chrono::steady_clock::now();
      const double seconds =
          std::chrono::duration<double>(now - window).count();
      const double rate =
          seconds > 0 ? (stats.step - window_step) / seconds : 0.0;
      window = now;
      window_step = stats.step;
      result.loss_curve.emplace_back(stats.step, loss);
      if (progress) progress({stats.step, loss, rate, stats.lr});
    }
  }
  result.wall_time_s = std::chrono::duration<double>(
                           std::chrono::steady_clock::now() - begin)
                           .count();
  result.steps = learner->step();
  result.steps_per_s =
      result.wall_time_s > 0 ? result.steps / result.wall_time_s : 0.0;
  const std::string temp = result.checkpoint + ".tmp";
  RETURN_IF_ERROR(learner->Save(temp));
  std::filesystem::rename(temp, result.checkpoint, error);
  if (error) {
    return absl::DataLossError(absl::StrCat("cannot rename ", temp, " to ",
                                            result.checkpoint, ": ",
                                            error.message()));
  }
  return result;
}

}  // namespace trainer
