#include "trainer/learn/fixmatch.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <c10/util/Exception.h>
#include <c10/util/string_utils.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>
#include <torch/version.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"

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
#endif

constexpr char kCheckpointFormat[] = "fewlabels-fixmatch-v1";
constexpr double kPi = 3.14159265358979323846;

// Maps a LibTorch exception to the most specific status code.
absl::Status TorchErrorToStatus(const c10::Error& e, absl::string_view what) {
  std::string message = absl::StrCat(what, ": ", e.what_without_backtrace());
  if (dynamic_cast<const c10::OutOfMemoryError*>(&e) != nullptr) {
    return absl::ResourceExhaustedError(message);
  }
  if (dynamic_cast<const c10::IndexError*>(&e) != nullptr ||
      dynamic_cast<const c10::ValueError*>(&e) != nullptr ||
      dynamic_cast<const c10::TypeError*>(&e) != nullptr) {
    return absl::InvalidArgumentError(message);
  }
  return absl::InternalError(message);
}

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

absl::Status ValidateOptions(const FixMatchOptions& o) {
  if (o.batch_size <= 0 || o.mu <= 0 || o.total_steps <= 0 ||
      o.predict_batch_size <= 0) {
    return absl::InvalidArgumentError(
        "batch_size, mu, total_steps and predict_batch_size must be positive");
  }
  if (!(o.threshold >= 0.0 && o.threshold <= 1.0)) {
    return absl::InvalidArgumentError("threshold must be in [0, 1]");
  }
  if (!(o.ema_decay >= 0.0 && o.ema_decay <= 1.0)) {
    return absl::InvalidArgumentError("ema_decay must be in [0, 1]");
  }
  if (o.nesterov && !(o.momentum > 0.0)) {
    return absl::InvalidArgumentError("nesterov requires momentum > 0");
  }
  if (o.lr < 0.0 || o.momentum < 0.0 || o.weight_decay < 0.0 ||
      o.lambda_u < 0.0) {
    return absl::InvalidArgumentError(
        "lr, momentum, weight_decay and lambda_u must be non-negative");
  }
  if (o.strong.num_ops < 0 || o.strong.num_ops > kNumStrongOps ||
      o.strong.min_posterize_bits < 0 || o.strong.min_posterize_bits > 8) {
    return absl::InvalidArgumentError(
        absl::StrCat("strong.num_ops must be in [0, ", kNumStrongOps,
                     "] and strong.min_posterize_bits in [0, 8]"));
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

FixMatchLoss ComputeFixMatchLoss(const Tensor& logits_x,
                                 const Tensor& targets_x,
                                 const Tensor& logits_u_weak,
                                 const Tensor& logits_u_strong,
                                 double threshold, double lambda_u) {
  TORCH_CHECK(logits_u_weak.sizes() == logits_u_strong.sizes(),
              "weak and strong logits differ in shape: ", logits_u_weak.sizes(),
              " vs ", logits_u_strong.sizes());
  Tensor supervised =
      at::cross_entropy_loss(logits_x.to(at::kFloat), targets_x);
  Tensor probs = at::softmax(logits_u_weak.detach().to(at::kFloat), 1);
  auto [max_probs, pseudo_labels] = probs.max(1);
  Tensor mask = (max_probs >= threshold).to(at::kFloat);
  Tensor per_image =
      at::cross_entropy_loss(logits_u_strong.to(at::kFloat), pseudo_labels,
                             /*weight=*/{}, at::Reduction::None);
  Tensor unsupervised = (per_image * mask).mean();
  Tensor total = supervised + lambda_u * unsupervised;
  return {std::move(total), std::move(supervised), std::move(unsupervised),
          mask.mean()};
}

double CosineLearningRate(double lr, int64_t step, int64_t total_steps) {
  const double k =
      static_cast<double>(std::clamp<int64_t>(step, 0, total_steps));
  return lr *
         std::cos(7.0 * kPi * k / (16.0 * static_cast<double>(total_steps)));
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
struct FixMatchTrainer::Networks {
  Classifier model{nullptr};
  Classifier ema{nullptr};
  std::unique_ptr<torch::optim::SGD> optimizer;
};

#if TRAINER_CUDA_GRAPHS

// A captured training step and its fixed inputs and outputs.
struct FixMatchTrainer::CudaGraphStep {
  // Warm-up steps and capture run on this stream (one per trainer shape
  // set, so cuDNN/cuBLAS state warmed up is the state captured).
  c10::cuda::CUDAStream stream = c10::cuda::getStreamFromPool();
  // Eager warm-up steps taken; the graph is captured after
  // kCudaGraphWarmupSteps of them.
  int warmup_steps = 0;
  bool captured = false;
  at::cuda::CUDAGraph graph;
  Tensor neg_lr;  // 0-d float32, -learning rate, written before each replay
  Tensor stats;   // [4]: total, supervised, unsupervised, mask_rate
  // Private copies of the inputs (their addresses are baked into the graph)
  // and the caller's tensors they were last copied from, with versions.
  std::array<Tensor, 3> inputs;
  std::array<Tensor, 3> sources;
  std::array<int64_t, 3> source_versions{};

  // Whether `x` has the shapes of the last inputs seen (warm-up or capture).
  bool FitsShapes(const std::array<Tensor, 3>& x) const {
    for (size_t i = 0; i < x.size(); ++i) {
      if (!sources[i].defined() || x[i].sizes() != sources[i].sizes()) {
        return false;
      }
    }
    return true;
  }

  // Copies each of `x` into the graph's inputs unless it is the tensor last
  // copied and unmodified since (same version counter).
  void Refresh(const std::array<Tensor, 3>& x) {
    for (size_t i = 0; i < x.size(); ++i) {
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

struct FixMatchTrainer::CudaGraphStep {};

#endif  // TRAINER_CUDA_GRAPHS

absl::StatusOr<std::unique_ptr<FixMatchTrainer::Networks>>
FixMatchTrainer::BuildNetworks(const ModelOptions& model_options,
                               const FixMatchOptions& options,
                               const torch::Device& device,
                               bool channels_last) {
  auto networks = std::make_unique<FixMatchTrainer::Networks>();
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
    for (auto& p : networks->model->parameters()) {
      (p.dim() > 1 ? decayed : not_decayed).push_back(p);
    }
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

absl::StatusOr<std::unique_ptr<FixMatchTrainer>> FixMatchTrainer::Create(
    const ModelOptions& model_options, const FixMatchOptions& options,
    torch::Device device) {
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
  ASSIGN_OR_RETURN(
      std::unique_ptr<Networks> networks,
      BuildNetworks(model_options, options, device, channels_last));
  return std::unique_ptr<FixMatchTrainer>(
      new FixMatchTrainer(model_options, options, device, std::move(networks),
                          std::move(generator)));
}

FixMatchTrainer::FixMatchTrainer(const ModelOptions& model_options,
                                 const FixMatchOptions& options,
                                 torch::Device device,
                                 std::unique_ptr<Networks> networks,
                                 at::Generator generator)
    : model_options_(model_options),
      options_(options),
      device_(device),
      channels_last_(options.channels_last && device.is_cuda()),
      mixed_precision_(options.mixed_precision && device.is_cuda()),
      use_cuda_graph_(options.cuda_graph && device.is_cuda()),
      networks_(std::move(networks)),
      generator_(std::move(generator)) {}

FixMatchTrainer::~FixMatchTrainer() = default;

Classifier& FixMatchTrainer::model() { return networks_->model; }
Classifier& FixMatchTrainer::ema_model() { return networks_->ema; }

double FixMatchTrainer::next_lr() const {
  return CosineLearningRate(options_.lr, step_, options_.total_steps);
}

absl::StatusOr<FixMatchStepStats> FixMatchTrainer::Step(
    const Tensor& labelled_images, const Tensor& labelled_targets,
    const Tensor& unlabelled_images) {
  RETURN_IF_ERROR(ValidateImages(labelled_images, "labelled_images", device_));
  RETURN_IF_ERROR(
      ValidateImages(unlabelled_images, "unlabelled_images", device_));
  if (!labelled_targets.defined() || labelled_targets.dim() != 1 ||
      labelled_targets.scalar_type() != at::kLong ||
      labelled_targets.size(0) != labelled_images.size(0) ||
      labelled_targets.device() != device_) {
    return absl::InvalidArgumentError(
        "labelled_targets must be int64 [L] on the trainer's device, L = "
        "labelled_images.size(0)");
  }
  if (labelled_images.sizes().slice(1) != unlabelled_images.sizes().slice(1)) {
    return absl::InvalidArgumentError(
        "labelled and unlabelled images differ in [C, H, W]");
  }
  try {
#if TRAINER_CUDA_GRAPHS
    if (use_cuda_graph_) {
      return GraphStep(labelled_images, labelled_targets, unlabelled_images);
    }
#endif
    const double lr = next_lr();
    FixMatchLoss loss = RunStep(labelled_images, labelled_targets,
                                unlabelled_images, lr, /*neg_lr=*/Tensor());
    ++step_;
    return FixMatchStepStats{
        {loss.total.detach(), loss.supervised.detach(),
         loss.unsupervised.detach(), loss.mask_rate.detach()},
        lr,
        step_};
  } catch (const c10::Error& e) {
    return TorchErrorToStatus(e, "FixMatch step failed");
  }
}

FixMatchLoss FixMatchTrainer::RunStep(const Tensor& labelled_images,
                                      const Tensor& labelled_targets,
                                      const Tensor& unlabelled_images,
                                      double lr, const Tensor& neg_lr) {
  Networks& nets = *networks_;
  const int64_t b = options_.batch_size;
  const int64_t ub = static_cast<int64_t>(options_.mu) * b;
  const auto index_options =
      torch::TensorOptions().dtype(at::kLong).device(device_);
  Tensor labelled_index =
      at::randint(labelled_images.size(0), {b}, generator_, index_options);
  Tensor unlabelled_index =
      at::randint(unlabelled_images.size(0), {ub}, generator_, index_options);
  Tensor targets = labelled_targets.index_select(0, labelled_index);
  Tensor unlabelled = unlabelled_images.index_select(0, unlabelled_index);
  // One gather for the labelled batch, the weak unlabelled views and the
  // flip-and-shift base of the strong views (independent draws each).
  Tensor weak =
      WeakAugment(at::cat({labelled_images.index_select(0, labelled_index),
                           unlabelled, unlabelled}),
                  generator_, options_.weak);
  Tensor strong =
      StrongAugment(weak.narrow(0, b + ub, ub), generator_, options_.strong);
  weak = weak.narrow(0, 0, b + ub);
  const bool teacher_is_ema = options_.use_ema_for_pseudo_labels;
  Tensor inputs = teacher_is_ema ? at::cat({weak.narrow(0, 0, b), strong})
                                 : at::cat({weak, strong});
  if (channels_last_) {
    inputs = inputs.contiguous(at::MemoryFormat::ChannelsLast);
  }
  Tensor logits;
  Tensor logits_u_weak;
  {
    ScopedCudaAutocast autocast(mixed_precision_);
    logits = nets.model->forward(inputs).logits;
    if (teacher_is_ema) {
      torch::NoGradGuard no_grad;
      Tensor teacher_inputs = weak.narrow(0, b, ub);
      if (channels_last_) {
        teacher_inputs =
            teacher_inputs.contiguous(at::MemoryFormat::ChannelsLast);
      }
      logits_u_weak = nets.ema->forward(teacher_inputs).logits;
    }
  }
  Tensor logits_x = logits.narrow(0, 0, b);
  Tensor logits_u_strong = logits.narrow(0, logits.size(0) - ub, ub);
  if (!teacher_is_ema) logits_u_weak = logits.narrow(0, b, ub);
  FixMatchLoss loss =
      ComputeFixMatchLoss(logits_x, targets, logits_u_weak, logits_u_strong,
                          options_.threshold, options_.lambda_u);

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

absl::StatusOr<FixMatchStepStats> FixMatchTrainer::GraphStep(
    const Tensor& labelled_images, const Tensor& labelled_targets,
    const Tensor& unlabelled_images) {
  const std::array<Tensor, 3> inputs = {labelled_images, labelled_targets,
                                        unlabelled_images};
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
      g.sources = inputs;
      const double lr = next_lr();
      FixMatchLoss loss;
      {
        c10::cuda::CUDAStreamGuard guard(g.stream);
        loss = RunStep(labelled_images, labelled_targets, unlabelled_images, lr,
                       /*neg_lr=*/Tensor());
      }
      torch::cuda::synchronize();
      ++g.warmup_steps;
      ++step_;
      return FixMatchStepStats{
          {loss.total.detach(), loss.supervised.detach(),
           loss.unsupervised.detach(), loss.mask_rate.detach()},
          lr,
          step_};
    }
    for (size_t i = 0; i < inputs.size(); ++i) {
      g.inputs[i] = inputs[i].clone();
      g.sources[i] = inputs[i];
      g.source_versions[i] = inputs[i]._version();
    }
    g.neg_lr =
        at::zeros({}, torch::TensorOptions().dtype(at::kFloat).device(device_));
    torch::cuda::synchronize();
    {
      c10::cuda::CUDAStreamGuard guard(g.stream);
      const bool cache_was_enabled = at::autocast::is_autocast_cache_enabled();
      at::autocast::set_autocast_cache_enabled(false);
      g.graph.register_generator_state(generator_);
      g.graph.capture_begin();
      try {
        FixMatchLoss loss = RunStep(g.inputs[0], g.inputs[1], g.inputs[2],
                                    /*lr=*/0.0, g.neg_lr);
        g.stats =
            at::stack({loss.total.detach(), loss.supervised.detach(),
                       loss.unsupervised.detach(), loss.mask_rate.detach()});
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
  return FixMatchStepStats{{stats[0], stats[1], stats[2], stats[3]}, lr, step_};
}

#endif  // TRAINER_CUDA_GRAPHS

absl::StatusOr<Predictions> FixMatchTrainer::Predict(const Tensor& images,
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
    const int64_t n = images.size(0);
    for (int64_t start = 0; start < n; start += options_.predict_batch_size) {
      Tensor chunk = images.narrow(
          0, start, std::min(options_.predict_batch_size, n - start));
      if (channels_last_)
        chunk = chunk.contiguous(at::MemoryFormat::ChannelsLast);
      ScopedCudaAutocast autocast(mixed_precision_);
      ModelOutput out = net->forward(chunk);
      probs.push_back(at::softmax(out.logits.to(at::kFloat), 1));
      embeddings.push_back(out.embedding.to(at::kFloat));
    }
    if (n == 0) {
      auto options = images.options();
      return Predictions{at::empty({0, model_options_.num_classes}, options),
                         at::empty({0, net->embedding_dim()}, options)};
    }
    return Predictions{at::cat(probs), at::cat(embeddings)};
  } catch (const c10::Error& e) {
    return TorchErrorToStatus(e, "prediction failed");
  }
}

absl::Status FixMatchTrainer::Save(const std::string& path) const {
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
    torch::serialize::OutputArchive model_archive, ema_archive,
        optimizer_archive;
    networks_->model->save(model_archive);
    networks_->ema->save(ema_archive);
    networks_->optimizer->save(optimizer_archive);
    archive.write("model", model_archive);
    archive.write("ema", ema_archive);
    archive.write("optimizer", optimizer_archive);
    archive.write("step", at::scalar_tensor(step_, at::kLong));
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

absl::Status FixMatchTrainer::Load(const std::string& path) {
  if (!std::filesystem::exists(path)) {
    return absl::NotFoundError(absl::StrCat("checkpoint ", path, " not found"));
  }
  ASSIGN_OR_RETURN(
      std::unique_ptr<Networks> networks,
      BuildNetworks(model_options_, options_, device_, channels_last_));
  int64_t step = 0;
  at::Tensor generator_state;
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path, device_);
    c10::IValue format, signature;
    if (!archive.try_read("format", format) || !format.isString() ||
        format.toStringRef() != kCheckpointFormat) {
      return absl::DataLossError(
          absl::StrCat(path, " is not a FixMatch checkpoint"));
    }
    if (!archive.try_read("model_signature", signature) ||
        !signature.isString() ||
        signature.toStringRef() != ModelSignature(model_options_)) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, " was written for model ",
                       signature.isString() ? signature.toStringRef() : "?",
                       ", this trainer has ", ModelSignature(model_options_)));
    }
    torch::serialize::InputArchive model_archive, ema_archive,
        optimizer_archive;
    archive.read("model", model_archive);
    archive.read("ema", ema_archive);
    archive.read("optimizer", optimizer_archive);
    networks->model->load(model_archive);
    networks->ema->load(ema_archive);
    networks->optimizer->load(optimizer_archive);
    at::Tensor step_tensor;
    archive.read("step", step_tensor);
    step = step_tensor.item<int64_t>();
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
  return absl::OkStatus();
}

}  // namespace trainer
