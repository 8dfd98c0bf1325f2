#include "trainer/learn/learner.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <c10/util/Exception.h>
// c10::optional / c10::nullopt below: LibTorch 2.x headers no longer pull
// this in on their own (there it is an alias of std::optional).
#include <c10/util/Optional.h>
#include <c10/util/string_utils.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>
#include <torch/version.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <functional>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"
#include "trainer/learn/augment.h"
#include "trainer/learn/torch_status.h"

// Device-generic autocast state functions arrived in LibTorch 2.4.
#if TORCH_VERSION_MAJOR > 2 || \
    (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define TRAINER_AUTOCAST_DEVICE_API 1
#else
#define TRAINER_AUTOCAST_DEVICE_API 0
#endif

// CUDA graph capture needs a CUDA build of LibTorch >= 2.4 (explicit
// generator registration); CMake defines FEWLABELS_WITH_CUDA for those.
#if defined(FEWLABELS_WITH_CUDA) && TRAINER_AUTOCAST_DEVICE_API
#define TRAINER_CUDA_GRAPHS 1
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/cuda.h>
#else
#define TRAINER_CUDA_GRAPHS 0
#endif

namespace trainer {
namespace {

using torch::Tensor;

#if TRAINER_CUDA_GRAPHS
constexpr int kCudaGraphWarmupSteps = 3;

// Whether Graph::register_generator_state takes an at::Generator: LibTorch
// 2.4 to at least 2.6 need the step's own generator registered before the
// capture; 2.14 has only an overload for its private state and registers
// every generator a capture uses at its first use ("lazy registration").
template <typename Graph, typename = void>
struct RegistersGenerator : std::false_type {};
template <typename Graph>
struct RegistersGenerator<
    Graph, std::void_t<decltype(std::declval<Graph&>().register_generator_state(
               std::declval<const at::Generator&>()))>> : std::true_type {};

// Makes `generator`'s draws inside the capture that follows advance with
// each replay, on either kind of LibTorch.
template <typename Graph>
void RegisterGeneratorForCapture(Graph& graph, const at::Generator& generator) {
  if constexpr (RegistersGenerator<Graph>::value) {
    graph.register_generator_state(generator);
  }
}
#endif

constexpr char kCheckpointFormat[] = "fewlabels-learner-v2";
// What trainers before the engine/objective split wrote.
constexpr char kOldCheckpointFormat[] = "fewlabels-fixmatch-v1";
constexpr double kPi = 3.14159265358979323846;

// bf16 autocast for CUDA ops while alive (no-op when disabled); restores the
// previous state and drops the cast-weight cache on destruction.
class ScopedCudaAutocast {
 public:
  explicit ScopedCudaAutocast(bool enabled) : enabled_(enabled) {
    if (!enabled_) return;
#if TRAINER_AUTOCAST_DEVICE_API
    was_enabled_ = at::autocast::is_autocast_enabled(at::kCUDA);
    previous_dtype_ = at::autocast::get_autocast_dtype(at::kCUDA);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
#else
    was_enabled_ = at::autocast::is_enabled();
    previous_dtype_ = at::autocast::get_autocast_gpu_dtype();
    at::autocast::set_enabled(true);
    at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
#endif
    at::autocast::increment_nesting();
  }

  ~ScopedCudaAutocast() {
    if (!enabled_) return;
#if TRAINER_AUTOCAST_DEVICE_API
    at::autocast::set_autocast_enabled(at::kCUDA, was_enabled_);
    at::autocast::set_autocast_dtype(at::kCUDA, previous_dtype_);
#else
    at::autocast::set_enabled(was_enabled_);
    at::autocast::set_autocast_gpu_dtype(previous_dtype_);
#endif
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  }

  ScopedCudaAutocast(const ScopedCudaAutocast&) = delete;
  ScopedCudaAutocast& operator=(const ScopedCudaAutocast&) = delete;

 private:
  bool enabled_;
  bool was_enabled_ = false;
  at::ScalarType previous_dtype_ = at::kBFloat16;
};

// Puts a module in eval mode while alive, restoring train mode after.
class ScopedEval {
 public:
  explicit ScopedEval(torch::nn::Module& module)
      : module_(module), was_training_(module.is_training()) {
    module_.eval();
  }
  ~ScopedEval() {
    if (was_training_) module_.train();
  }
  ScopedEval(const ScopedEval&) = delete;
  ScopedEval& operator=(const ScopedEval&) = delete;

 private:
  torch::nn::Module& module_;
  bool was_training_;
};

absl::Status ValidateOptions(const LearnerOptions& o) {
  if (o.total_steps <= 0 || o.predict_batch_size <= 0) {
    return absl::InvalidArgumentError(
        "total_steps and predict_batch_size must be positive");
  }
  if (!(o.ema_decay >= 0.0 && o.ema_decay <= 1.0)) {
    return absl::InvalidArgumentError("ema_decay must be in [0, 1]");
  }
  if (o.nesterov && !(o.momentum > 0.0)) {
    return absl::InvalidArgumentError("nesterov requires momentum > 0");
  }
  if (o.lr < 0.0 || o.momentum < 0.0 || o.weight_decay < 0.0 ||
      !(o.cosine_span >= 0.0)) {
    return absl::InvalidArgumentError(
        "lr, cosine_span, momentum and weight_decay must be non-negative");
  }
  return absl::OkStatus();
}

absl::Status ValidateImages(const Tensor& images, absl::string_view name,
                            const torch::Device& device) {
  if (!images.defined() || images.dim() != 4 ||
      images.scalar_type() != at::kFloat || images.size(0) == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " must be a non-empty [N, C, H, W] float32 tensor"));
  }
  if (images.device() != device) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, " is on ", images.device().str(), ", expected ", device.str()));
  }
  return absl::OkStatus();
}

// Identifies the parameter layout a checkpoint was written for.
std::string ModelSignature(const ModelOptions& o) {
  return absl::StrCat(o.arch, ";width=", o.width, ";classes=", o.num_classes,
                      ";in=", o.in_channels);
}

#if TORCH_VERSION_MAJOR >= 2
using OptimizerStateKey = void*;
OptimizerStateKey StateKey(const Tensor& p) { return p.unsafeGetTensorImpl(); }
#else
using OptimizerStateKey = std::string;
OptimizerStateKey StateKey(const Tensor& p) {
  return c10::guts::to_string(p.unsafeGetTensorImpl());
}
#endif

// Gives every parameter of `optimizer` a zero momentum buffer (so a step
// never allocates one; the first step's buffer equals the gradient, as in
// PyTorch).
void InitMomentumBuffers(torch::optim::SGD& optimizer) {
  torch::NoGradGuard no_grad;
  for (auto& group : optimizer.param_groups()) {
    for (auto& p : group.params()) {
      auto state = std::make_unique<torch::optim::SGDParamState>();
      state->momentum_buffer(at::zeros_like(p));
      optimizer.state()[StateKey(p)] = std::move(state);
    }
  }
}

// torch::optim::SGD's update (coupled weight decay, momentum with
// dampening, Nesterov) with one foreach kernel per stage and group instead
// of several kernels per parameter; state stays in `optimizer`, so its
// save/load still apply. Uses `neg_lr` (0-d, on device: -learning rate) when
// defined, else `lr`.
void SgdStep(torch::optim::SGD& optimizer, double lr, const Tensor& neg_lr) {
  torch::NoGradGuard no_grad;
  for (auto& group : optimizer.param_groups()) {
    const auto& o =
        static_cast<const torch::optim::SGDOptions&>(group.options());
    std::vector<Tensor> params, grads, buffers;
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      params.push_back(p);
      grads.push_back(p.grad());
      if (o.momentum() != 0) {
        auto& state = static_cast<torch::optim::SGDParamState&>(
            *optimizer.state().at(StateKey(p)));
        buffers.push_back(state.momentum_buffer());
      }
    }
    if (params.empty()) continue;
    std::vector<Tensor> update =
        o.weight_decay() != 0
            ? at::_foreach_add(grads, params, o.weight_decay())
            : grads;
    if (o.momentum() != 0) {
      at::_foreach_mul_(buffers, o.momentum());
      at::_foreach_add_(buffers, update, 1.0 - o.dampening());
      update = o.nesterov() ? at::_foreach_add(update, buffers, o.momentum())
                            : buffers;
    }
    if (neg_lr.defined()) {
#if TRAINER_CUDA_GRAPHS
      at::_foreach_add_(params, at::_foreach_mul(update, neg_lr));
#else
      TORCH_CHECK(false, "device learning rate needs LibTorch >= 2.1");
#endif
    } else {
      at::_foreach_add_(params, update, -lr);
    }
  }
}

}  // namespace

double CosineLearningRate(double lr, int64_t step, int64_t total_steps,
                          double span) {
  const double k =
      static_cast<double>(std::clamp<int64_t>(step, 0, total_steps));
  return lr * std::cos(span * kPi * k / static_cast<double>(total_steps));
}

void UpdateEma(torch::nn::Module& ema, const torch::nn::Module& model,
               double decay) {
  torch::NoGradGuard no_grad;
  std::vector<Tensor> ema_params = ema.parameters();
  std::vector<Tensor> params = model.parameters();
  TORCH_CHECK(ema_params.size() == params.size(),
              "EMA and model differ in parameter count");
  if (!params.empty()) {
    at::_foreach_mul_(ema_params, decay);
    at::_foreach_add_(ema_params, params, 1.0 - decay);
  }
  std::vector<Tensor> ema_buffers = ema.buffers();
  std::vector<Tensor> buffers = model.buffers();
  TORCH_CHECK(ema_buffers.size() == buffers.size(),
              "EMA and model differ in buffer count");
  for (size_t i = 0; i < buffers.size(); ++i) ema_buffers[i].copy_(buffers[i]);
}

// The trained model, its EMA copy and the optimizer over the model.
// The trained model, its EMA copy and the optimizer over the model and the
// objective's trained modules.
struct Learner::Networks {
  Classifier model{nullptr};
  Classifier ema{nullptr};
  std::unique_ptr<torch::optim::SGD> optimizer;
};

namespace {

LearnerStepStats MakeStats(const ObjectiveLoss& loss, double lr,
                           int64_t step) {
  LearnerStepStats stats;
  stats.loss = loss.total.detach();
  for (const Tensor& t : loss.scalars) stats.scalars.push_back(t.detach());
  stats.lr = lr;
  stats.step = step;
  return stats;
}

}  // namespace

#if TRAINER_CUDA_GRAPHS

namespace {

// StepData's tensors in a fixed order (undefined ones stay undefined).
constexpr size_t kStepInputs = 4;
std::array<Tensor, kStepInputs> AsArray(const StepData& data) {
  return {data.labelled_images, data.labelled_targets,
          data.unlabelled_images, data.teacher_probs};
}

StepData FromArray(const std::array<Tensor, kStepInputs>& x) {
  return StepData{x[0], x[1], x[2], x[3]};
}

}  // namespace

// A captured training step and its fixed inputs and outputs.
struct Learner::CudaGraphStep {
  // Warm-up steps and capture run on this stream (one per learner shape
  // set, so cuDNN/cuBLAS state warmed up is the state captured).
  c10::cuda::CUDAStream stream = c10::cuda::getStreamFromPool();
  // Eager warm-up steps taken; the graph is captured after
  // kCudaGraphWarmupSteps of them.
  int warmup_steps = 0;
  bool captured = false;
  at::cuda::CUDAGraph graph;
  Tensor neg_lr;  // 0-d float32, -learning rate, written before each replay
  Tensor stats;   // [1 + scalars]: total, then the objective's scalars
  // Private copies of the inputs (their addresses are baked into the graph)
  // and the caller's tensors they were last copied from, with versions.
  std::array<Tensor, kStepInputs> inputs;
  std::array<Tensor, kStepInputs> sources;
  std::array<int64_t, kStepInputs> source_versions{};
  bool seen = false;

  // Whether `x` has the shapes (and definedness) of the last inputs seen.
  bool FitsShapes(const std::array<Tensor, kStepInputs>& x) const {
    if (!seen) return false;
    for (size_t i = 0; i < x.size(); ++i) {
      if (x[i].defined() != sources[i].defined()) return false;
      if (x[i].defined() && x[i].sizes() != sources[i].sizes()) return false;
    }
    return true;
  }

  void Remember(const std::array<Tensor, kStepInputs>& x) {
    sources = x;
    seen = true;
  }

  // Copies each of `x` into the graph's inputs unless it is the tensor last
  // copied and unmodified since (same version counter).
  void Refresh(const std::array<Tensor, kStepInputs>& x) {
    for (size_t i = 0; i < x.size(); ++i) {
      if (!x[i].defined()) continue;
      if (x[i].is_same(sources[i]) && x[i]._version() == source_versions[i]) {
        continue;
      }
      inputs[i].copy_(x[i]);
      sources[i] = x[i];
      source_versions[i] = x[i]._version();
    }
  }
};

#else

struct Learner::CudaGraphStep {};

#endif  // TRAINER_CUDA_GRAPHS

absl::StatusOr<std::unique_ptr<Learner::Networks>> Learner::BuildNetworks(
    const ModelOptions& model_options, const LearnerOptions& options,
    TrainingObjective& objective, const torch::Device& device,
    bool channels_last) {
  auto networks = std::make_unique<Learner::Networks>();
  ASSIGN_OR_RETURN(networks->model, MakeModel(model_options));
  ASSIGN_OR_RETURN(networks->ema, MakeModel(model_options));
  try {
    networks->model->to(device);
    networks->ema->to(device);
    if (channels_last) {
      ToChannelsLast(*networks->model);
      ToChannelsLast(*networks->ema);
    }
    for (auto& p : networks->ema->parameters()) p.requires_grad_(false);
    UpdateEma(*networks->ema, *networks->model, /*decay=*/0.0);
    networks->model->train();
    networks->ema->eval();

    std::vector<Tensor> decayed, not_decayed;
    std::vector<Tensor> params = networks->model->parameters();
    for (torch::nn::Module* module : objective.trained_modules()) {
      for (auto& p : module->parameters()) params.push_back(p);
    }
    for (auto& p : params) (p.dim() > 1 ? decayed : not_decayed).push_back(p);
    auto sgd = [&](double weight_decay) {
      return torch::optim::SGDOptions(options.lr)
          .momentum(options.momentum)
          .nesterov(options.nesterov)
          .weight_decay(weight_decay);
    };
    std::vector<torch::optim::OptimizerParamGroup> groups;
    groups.emplace_back(
        std::move(decayed),
        std::make_unique<torch::optim::SGDOptions>(sgd(options.weight_decay)));
    groups.emplace_back(std::move(not_decayed),
                        std::make_unique<torch::optim::SGDOptions>(sgd(0.0)));
    networks->optimizer =
        std::make_unique<torch::optim::SGD>(std::move(groups), sgd(0.0));
    if (options.momentum != 0) InitMomentumBuffers(*networks->optimizer);
  } catch (const c10::Error& e) {
    return absl::UnavailableError(absl::StrCat("cannot place the model on ",
                                               device.str(), ": ",
                                               e.what_without_backtrace()));
  }
  return networks;
}

absl::StatusOr<std::unique_ptr<Learner>> Learner::Create(
    const ModelOptions& model_options, const LearnerOptions& options,
    std::unique_ptr<TrainingObjective> objective, torch::Device device) {
  if (objective == nullptr) {
    return absl::InvalidArgumentError("a learner needs an objective");
  }
  RETURN_IF_ERROR(ValidateOptions(options));
  if (device.is_cuda() && !device.has_index())
    device = torch::Device(torch::kCUDA, 0);
  const bool channels_last = options.channels_last && device.is_cuda();
  if (options.cuda_graph && device.is_cuda() && !TRAINER_CUDA_GRAPHS) {
    return absl::UnimplementedError(
        "cuda_graph needs a CUDA build of LibTorch >= 2.4");
  }
  ASSIGN_OR_RETURN(at::Generator generator,
                   MakeGenerator(device, options.seed));
  ASSIGN_OR_RETURN(std::unique_ptr<Networks> networks,
                   BuildNetworks(model_options, options, *objective, device,
                                 channels_last));
  return std::unique_ptr<Learner>(
      new Learner(model_options, options, std::move(objective), device,
                  std::move(networks), std::move(generator)));
}

Learner::Learner(const ModelOptions& model_options,
                 const LearnerOptions& options,
                 std::unique_ptr<TrainingObjective> objective,
                 torch::Device device, std::unique_ptr<Networks> networks,
                 at::Generator generator)
    : model_options_(model_options),
      options_(options),
      objective_(std::move(objective)),
      device_(device),
      channels_last_(options.channels_last && device.is_cuda()),
      mixed_precision_(options.mixed_precision && device.is_cuda()),
      use_cuda_graph_(options.cuda_graph && device.is_cuda()),
      networks_(std::move(networks)),
      generator_(std::move(generator)),
      schedule_end_(options.total_steps) {}

Learner::~Learner() = default;

Classifier& Learner::model() { return networks_->model; }
Classifier& Learner::ema_model() { return networks_->ema; }

namespace {

// Fraction of the cosine's span reached at `step` of a schedule that is at
// `anchor_progress` at `anchor` and at 1 at `end` (> anchor).
double ScheduleProgress(int64_t step, int64_t anchor, double anchor_progress,
                        int64_t end) {
  const double k = static_cast<double>(std::clamp(step, anchor, end) - anchor);
  return anchor_progress +
         (1.0 - anchor_progress) * k / static_cast<double>(end - anchor);
}

}  // namespace

double Learner::next_lr() const {
  if (schedule_anchor_progress_ == 0) {
    // CosineLearningRate's exact arithmetic for an unfitted schedule.
    return CosineLearningRate(options_.lr, step_ - schedule_anchor_,
                              schedule_end_ - schedule_anchor_,
                              options_.cosine_span);
  }
  const double progress = ScheduleProgress(
      step_, schedule_anchor_, schedule_anchor_progress_, schedule_end_);
  return options_.lr * std::cos(options_.cosine_span * kPi * progress);
}

void Learner::SetSchedule(int64_t start_step, int64_t total_steps) {
  schedule_anchor_ = start_step;
  schedule_anchor_progress_ = 0;
  schedule_end_ = start_step + std::max<int64_t>(1, total_steps);
}

void Learner::FitScheduleEnd(int64_t end_step) {
  const double progress = ScheduleProgress(
      step_, schedule_anchor_, schedule_anchor_progress_, schedule_end_);
  schedule_anchor_ = step_;
  schedule_anchor_progress_ = progress;
  schedule_end_ = std::max(end_step, step_ + 1);
}

absl::StatusOr<LearnerStepStats> Learner::Step(const StepData& data) {
  RETURN_IF_ERROR(
      ValidateImages(data.unlabelled_images, "unlabelled_images", device_));
  if (objective_->uses_labels()) {
    RETURN_IF_ERROR(
        ValidateImages(data.labelled_images, "labelled_images", device_));
    const Tensor& targets = data.labelled_targets;
    if (!targets.defined() || targets.dim() != 1 ||
        targets.scalar_type() != at::kLong ||
        targets.size(0) != data.labelled_images.size(0) ||
        targets.device() != device_) {
      return absl::InvalidArgumentError(
          "labelled_targets must be int64 [L] on the learner's device, L = "
          "labelled_images.size(0)");
    }
    if (data.labelled_images.sizes().slice(1) !=
        data.unlabelled_images.sizes().slice(1)) {
      return absl::InvalidArgumentError(
          "labelled and unlabelled images differ in [C, H, W]");
    }
  }
  const Tensor& teacher = data.teacher_probs;
  if (teacher.defined() &&
      (teacher.dim() != 2 || teacher.scalar_type() != at::kFloat ||
       teacher.size(0) != data.unlabelled_images.size(0) ||
       teacher.size(1) != model_options_.num_classes ||
       teacher.device() != device_)) {
    return absl::InvalidArgumentError(
        "teacher_probs must be float32 [U, classes] on the learner's device, "
        "U = unlabelled_images.size(0), classes = the model's");
  }
  StepData used = data;
  if (!objective_->uses_labels()) {
    used.labelled_images = Tensor();
    used.labelled_targets = Tensor();
  }
  try {
#if TRAINER_CUDA_GRAPHS
    if (use_cuda_graph_) return GraphStep(used);
#endif
    const double lr = next_lr();
    ObjectiveLoss loss = RunStep(used, lr, /*neg_lr=*/Tensor());
    ++step_;
    return MakeStats(loss, lr, step_);
  } catch (const c10::Error& e) {
    return TorchErrorToStatus(
        e, absl::StrCat(objective_->name(), " step failed"));
  }
}

ObjectiveLoss Learner::RunStep(const StepData& data, double lr,
                               const Tensor& neg_lr) {
  Networks& nets = *networks_;
  ObjectiveLoss loss;
  {
    ScopedCudaAutocast autocast(mixed_precision_);
    StepContext context{nets.model, nets.ema, generator_, channels_last_};
    loss = objective_->Loss(context, data);
  }
  for (auto& group : nets.optimizer->param_groups()) {
    static_cast<torch::optim::SGDOptions&>(group.options()).lr(lr);
    for (auto& p : group.params()) p.mutable_grad() = Tensor();
  }
  loss.total.backward();
  SgdStep(*nets.optimizer, lr, neg_lr);
  UpdateEma(*nets.ema, *nets.model, options_.ema_decay);
  return loss;
}

#if TRAINER_CUDA_GRAPHS

absl::StatusOr<LearnerStepStats> Learner::GraphStep(const StepData& data) {
  const std::array<Tensor, kStepInputs> inputs = AsArray(data);
  if (graph_ != nullptr && graph_->captured && !graph_->FitsShapes(inputs)) {
    graph_.reset();
  }
  if (graph_ == nullptr) graph_ = std::make_unique<CudaGraphStep>();
  CudaGraphStep& g = *graph_;
  if (!g.captured) {
    // PyTorch's whole-network capture recipe: eager warm-up steps on a side
    // stream (cuDNN autotuning, lazy initialisation), then capture on it.
    torch::cuda::synchronize();
    // Warm up (again) for new shapes: capture must not autotune.
    if (g.warmup_steps > 0 && !g.FitsShapes(inputs)) g.warmup_steps = 0;
    if (g.warmup_steps < kCudaGraphWarmupSteps) {
      g.Remember(inputs);
      const double lr = next_lr();
      ObjectiveLoss loss;
      {
        c10::cuda::CUDAStreamGuard guard(g.stream);
        loss = RunStep(data, lr, /*neg_lr=*/Tensor());
      }
      torch::cuda::synchronize();
      ++g.warmup_steps;
      ++step_;
      return MakeStats(loss, lr, step_);
    }
    for (size_t i = 0; i < inputs.size(); ++i) {
      g.inputs[i] = inputs[i].defined() ? inputs[i].clone() : Tensor();
      g.sources[i] = inputs[i];
      g.source_versions[i] = inputs[i].defined() ? inputs[i]._version() : 0;
    }
    g.neg_lr =
        at::zeros({}, torch::TensorOptions().dtype(at::kFloat).device(device_));
    torch::cuda::synchronize();
    {
      c10::cuda::CUDAStreamGuard guard(g.stream);
      const bool cache_was_enabled = at::autocast::is_autocast_cache_enabled();
      at::autocast::set_autocast_cache_enabled(false);
      RegisterGeneratorForCapture(g.graph, generator_);
      g.graph.capture_begin();
      try {
        ObjectiveLoss loss = RunStep(FromArray(g.inputs), /*lr=*/0.0, g.neg_lr);
        std::vector<Tensor> parts = {loss.total.detach().to(at::kFloat)};
        for (const Tensor& t : loss.scalars) {
          parts.push_back(t.detach().to(at::kFloat));
        }
        g.stats = at::stack(parts);
      } catch (...) {
        // Leave capture mode so the stream stays usable, then rethrow.
        try {
          g.graph.capture_end();
        } catch (...) {
        }
        at::autocast::set_autocast_cache_enabled(cache_was_enabled);
        graph_.reset();
        throw;
      }
      g.graph.capture_end();
      at::autocast::set_autocast_cache_enabled(cache_was_enabled);
    }
    torch::cuda::synchronize();
    g.captured = true;
  }
  g.Refresh(inputs);
  const double lr = next_lr();
  g.neg_lr.fill_(-lr);
  g.graph.replay();
  ++step_;
  Tensor stats = g.stats.clone();
  LearnerStepStats result;
  result.loss = stats[0];
  for (int64_t i = 1; i < stats.size(0); ++i) result.scalars.push_back(stats[i]);
  result.lr = lr;
  result.step = step_;
  return result;
}

#endif  // TRAINER_CUDA_GRAPHS

void Learner::ForwardInChunks(
    Classifier& net, const Tensor& images,
    const std::function<void(const ModelOutput&)>& consume) {
  const int64_t n = images.size(0);
  for (int64_t start = 0; start < n; start += options_.predict_batch_size) {
    Tensor chunk = images.narrow(
        0, start, std::min(options_.predict_batch_size, n - start));
    if (channels_last_) chunk = chunk.contiguous(at::MemoryFormat::ChannelsLast);
    ScopedCudaAutocast autocast(mixed_precision_);
    consume(net->forward(chunk));
  }
}

absl::StatusOr<Predictions> Learner::Predict(const Tensor& images,
                                             bool use_ema) {
  if (!images.defined() || images.dim() != 4 ||
      images.scalar_type() != at::kFloat || images.device() != device_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "images must be a [N, C, H, W] float32 tensor on ", device_.str()));
  }
  Classifier& net = use_ema ? networks_->ema : networks_->model;
  try {
    torch::NoGradGuard no_grad;
    ScopedEval eval(*net);
    std::vector<Tensor> probs, embeddings;
    ForwardInChunks(net, images, [&](const ModelOutput& out) {
      probs.push_back(at::softmax(out.logits.to(at::kFloat), 1));
      embeddings.push_back(out.embedding.to(at::kFloat));
    });
    if (images.size(0) == 0) {
      auto options = images.options();
      return Predictions{at::empty({0, model_options_.num_classes}, options),
                         at::empty({0, net->embedding_dim()}, options)};
    }
    return Predictions{at::cat(probs), at::cat(embeddings)};
  } catch (const c10::Error& e) {
    return TorchErrorToStatus(e, "prediction failed");
  }
}

absl::Status Learner::RecalibrateBatchNorm(const Tensor& images,
                                           bool use_ema) {
  if (!images.defined() || images.dim() != 4 ||
      images.scalar_type() != at::kFloat || images.device() != device_ ||
      images.size(0) == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "images must be a non-empty [N, C, H, W] float32 tensor on ",
        device_.str()));
  }
  Classifier& net = use_ema ? networks_->ema : networks_->model;
  try {
    torch::NoGradGuard no_grad;
    // Cumulative averages (momentum unset) over the images, then the
    // modules' own momentum again.
    std::vector<std::pair<torch::nn::BatchNorm2dImpl*, c10::optional<double>>>
        batch_norms;
    for (const auto& module : net->modules(/*include_self=*/false)) {
      if (auto* bn = module->as<torch::nn::BatchNorm2d>()) {
        batch_norms.emplace_back(bn, bn->options.momentum());
        bn->reset_running_stats();
        bn->options.momentum(c10::nullopt);
      }
    }
    const bool was_training = net->is_training();
    net->train();
    ForwardInChunks(net, images, [](const ModelOutput&) {});
    if (!was_training) net->eval();
    for (auto& [bn, momentum] : batch_norms) bn->options.momentum(momentum);
  } catch (const c10::Error& e) {
    return TorchErrorToStatus(e, "batch-norm recalibration failed");
  }
  return absl::OkStatus();
}

absl::Status Learner::Save(const std::string& path) const {
  const std::filesystem::path parent =
      std::filesystem::path(path).parent_path();
  if (!parent.empty() && !std::filesystem::is_directory(parent)) {
    return absl::NotFoundError(
        absl::StrCat("directory ", parent.string(), " does not exist"));
  }
  try {
    torch::serialize::OutputArchive archive;
    archive.write("format", c10::IValue(std::string(kCheckpointFormat)));
    archive.write("model_signature",
                  c10::IValue(ModelSignature(model_options_)));
    archive.write("objective", c10::IValue(objective_->name()));
    torch::serialize::OutputArchive model_archive, ema_archive,
        optimizer_archive, objective_archive;
    networks_->model->save(model_archive);
    networks_->ema->save(ema_archive);
    networks_->optimizer->save(optimizer_archive);
    objective_->Save(objective_archive);
    archive.write("model", model_archive);
    archive.write("ema", ema_archive);
    archive.write("optimizer", optimizer_archive);
    archive.write("objective_state", objective_archive);
    archive.write("step", at::scalar_tensor(step_, at::kLong));
    archive.write("schedule_steps",
                  at::tensor({schedule_anchor_, schedule_end_}, at::kLong));
    archive.write("schedule_anchor_progress",
                  at::scalar_tensor(schedule_anchor_progress_, at::kDouble));
    at::Tensor generator_state;
    {
      at::Generator generator = generator_;
      std::lock_guard<std::mutex> lock(generator.mutex());
      generator_state = generator.get_state();
    }
    archive.write("generator_state", generator_state);
    archive.save_to(path);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("cannot write checkpoint ", path,
                                            ": ", e.what_without_backtrace()));
  }
  return absl::OkStatus();
}

namespace {

// Opens a checkpoint Save wrote and checks its format and model signature.
absl::Status OpenCheckpoint(const std::string& path,
                            const ModelOptions& model_options,
                            const torch::Device& device,
                            torch::serialize::InputArchive& archive) {
  if (!std::filesystem::exists(path)) {
    return absl::NotFoundError(absl::StrCat("checkpoint ", path, " not found"));
  }
  try {
    archive.load_from(path, device);
    c10::IValue format, signature;
    if (!archive.try_read("format", format) || !format.isString()) {
      return absl::DataLossError(
          absl::StrCat(path, " is not a trainer checkpoint"));
    }
    if (format.toStringRef() == kOldCheckpointFormat) {
      return absl::FailedPreconditionError(absl::StrCat(
          path,
          " was written by an older trainer (FixMatch-only format v1) and "
          "cannot be resumed; start a new run in another --out_dir"));
    }
    if (format.toStringRef() != kCheckpointFormat) {
      return absl::DataLossError(absl::StrCat(
          path, " has unknown checkpoint format ", format.toStringRef()));
    }
    if (!archive.try_read("model_signature", signature) ||
        !signature.isString() ||
        signature.toStringRef() != ModelSignature(model_options)) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, " was written for model ",
                       signature.isString() ? signature.toStringRef() : "?",
                       ", this learner has ", ModelSignature(model_options)));
    }
  } catch (const c10::Error& e) {
    return absl::DataLossError(absl::StrCat("cannot read checkpoint ", path,
                                            ": ", e.what_without_backtrace()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status Learner::Load(const std::string& path) {
  torch::serialize::InputArchive archive;
  RETURN_IF_ERROR(OpenCheckpoint(path, model_options_, device_, archive));
  ASSIGN_OR_RETURN(std::unique_ptr<Networks> networks,
                   BuildNetworks(model_options_, options_, *objective_,
                                 device_, channels_last_));
  int64_t step = 0;
  // (anchor, anchor progress, end), when the checkpoint has them.
  std::optional<std::tuple<int64_t, double, int64_t>> schedule;
  at::Tensor generator_state;
  try {
    c10::IValue objective;
    if (!archive.try_read("objective", objective) || !objective.isString() ||
        objective.toStringRef() != objective_->name()) {
      return absl::FailedPreconditionError(absl::StrCat(
          path, " was written for objective ",
          objective.isString() ? objective.toStringRef() : "?",
          ", this learner trains ", objective_->name()));
    }
    torch::serialize::InputArchive model_archive, ema_archive,
        optimizer_archive, objective_archive;
    archive.read("model", model_archive);
    archive.read("ema", ema_archive);
    archive.read("optimizer", optimizer_archive);
    archive.read("objective_state", objective_archive);
    networks->model->load(model_archive);
    networks->ema->load(ema_archive);
    // The objective's trained modules are the objective's own; BuildNetworks
    // put their current parameters into the new optimizer, and Load below
    // restores their values in place.
    objective_->Load(objective_archive);
    networks->optimizer->load(optimizer_archive);
    at::Tensor step_tensor;
    archive.read("step", step_tensor);
    step = step_tensor.item<int64_t>();
    at::Tensor schedule_steps, schedule_progress;
    if (archive.try_read("schedule_steps", schedule_steps) &&
        archive.try_read("schedule_anchor_progress", schedule_progress)) {
      schedule_steps = schedule_steps.to(at::kCPU);
      schedule.emplace(schedule_steps[0].item<int64_t>(),
                       schedule_progress.item<double>(),
                       schedule_steps[1].item<int64_t>());
    }
    archive.read("generator_state", generator_state);
    generator_state = generator_state.to(at::kCPU);
    if (channels_last_) {
      ToChannelsLast(*networks->model);
      ToChannelsLast(*networks->ema);
    }
    std::lock_guard<std::mutex> lock(generator_.mutex());
    generator_.set_state(generator_state);
  } catch (const c10::Error& e) {
    return absl::DataLossError(absl::StrCat("cannot read checkpoint ", path,
                                            ": ", e.what_without_backtrace()));
  }
  graph_.reset();
  networks_ = std::move(networks);
  step_ = step;
  if (schedule.has_value()) {
    std::tie(schedule_anchor_, schedule_anchor_progress_, schedule_end_) =
        *schedule;
  }
  return absl::OkStatus();
}

absl::Status Learner::InitializeFrom(const std::string& path) {
  torch::serialize::InputArchive archive;
  RETURN_IF_ERROR(OpenCheckpoint(path, model_options_, device_, archive));
  try {
    torch::serialize::InputArchive model_archive;
    archive.read("model", model_archive);
    // Read into a scratch model first so a failure leaves the learner
    // unchanged.
    auto scratch = MakeModel(model_options_);
    if (!scratch.ok()) return scratch.status();
    (*scratch)->to(device_);
    (*scratch)->load(model_archive);
    torch::NoGradGuard no_grad;
    std::vector<Tensor> from = (*scratch)->parameters();
    std::vector<Tensor> to = networks_->model->parameters();
    for (size_t i = 0; i < to.size(); ++i) to[i].copy_(from[i]);
    from = (*scratch)->buffers();
    to = networks_->model->buffers();
    for (size_t i = 0; i < to.size(); ++i) to[i].copy_(from[i]);
    UpdateEma(*networks_->ema, *networks_->model, /*decay=*/0.0);
  } catch (const c10::Error& e) {
    return absl::DataLossError(absl::StrCat("cannot read initial weights from ",
                                            path, ": ",
                                            e.what_without_backtrace()));
  }
  graph_.reset();
  return absl::OkStatus();
}

absl::Status Learner::SetClassifierLayer(const Tensor& weight,
                                         const Tensor& bias) {
  torch::nn::Linear& layer = networks_->model->classifier();
  if (!weight.defined() || !bias.defined() ||
      weight.sizes() != layer->weight.sizes() ||
      bias.sizes() != layer->bias.sizes()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "classifier layer must be a [", layer->weight.size(0), ", ",
        layer->weight.size(1), "] weight and a [", layer->bias.size(0),
        "] bias"));
  }
  torch::NoGradGuard no_grad;
  for (Classifier* net : {&networks_->model, &networks_->ema}) {
    (*net)->classifier()->weight.copy_(weight);
    (*net)->classifier()->bias.copy_(bias);
  }
  graph_.reset();
  return absl::OkStatus();
}

}  // namespace trainer
