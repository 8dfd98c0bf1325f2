// Times FixMatch steps on synthetic data:
//   fixmatch_bench --arch=cnn --width=64 --batch=64 --mu=7 --steps=200
// Prints steps/s measured between two device synchronisations.
#include <ATen/ATen.h>
#include <torch/cuda.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "trainer/augment.h"
#include "trainer/fixmatch.h"
#include "trainer/model.h"

ABSL_FLAG(std::string, arch, "cnn", "Model architecture: cnn or wrn28_2.");
ABSL_FLAG(int, width, 64, "Base width of the cnn architecture.");
ABSL_FLAG(int, batch, 64, "Labelled images per step.");
ABSL_FLAG(int, mu, 7, "Unlabelled images per labelled image.");
ABSL_FLAG(int, steps, 100, "Timed steps.");
ABSL_FLAG(int, warmup, 10, "Untimed steps before timing.");
ABSL_FLAG(std::string, device, "auto",
          "auto (cuda if available), cpu or cuda.");
ABSL_FLAG(bool, mixed_precision, true, "bf16 autocast on CUDA.");
ABSL_FLAG(bool, channels_last, true, "channels_last on CUDA.");
ABSL_FLAG(bool, ema_teacher, false, "Pseudo-label with the EMA model.");
ABSL_FLAG(int, labelled, 250, "Synthetic labelled pool size.");
ABSL_FLAG(int, unlabelled, 60000, "Synthetic unlabelled pool size.");
ABSL_FLAG(bool, time_augment, true, "Also time the augmentations alone.");
ABSL_FLAG(bool, cudnn_benchmark, true,
          "Let cuDNN pick the fastest algorithms (process-wide setting).");

namespace {

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
      .count();
}

void Sync(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize();
}

int Run() {
  const std::string device_flag = absl::GetFlag(FLAGS_device);
  const bool use_cuda = device_flag == "cuda" ||
                        (device_flag == "auto" && torch::cuda::is_available());
  const torch::Device device =
      use_cuda ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);

  at::globalContext().setBenchmarkCuDNN(absl::GetFlag(FLAGS_cudnn_benchmark));

  trainer::ModelOptions model_options;
  model_options.arch = absl::GetFlag(FLAGS_arch);
  model_options.width = absl::GetFlag(FLAGS_width);
  trainer::FixMatchOptions options;
  options.batch_size = absl::GetFlag(FLAGS_batch);
  options.mu = absl::GetFlag(FLAGS_mu);
  options.mixed_precision = absl::GetFlag(FLAGS_mixed_precision);
  options.channels_last = absl::GetFlag(FLAGS_channels_last);
  options.use_ema_for_pseudo_labels = absl::GetFlag(FLAGS_ema_teacher);
  auto trainer =
      trainer::FixMatchTrainer::Create(model_options, options, device);
  if (!trainer.ok()) {
    std::fprintf(stderr, "%s\n", trainer.status().ToString().c_str());
    return 1;
  }

  auto float_options = torch::TensorOptions().device(device);
  at::Tensor labelled =
      at::rand({absl::GetFlag(FLAGS_labelled), 1, 28, 28}, float_options);
  at::Tensor targets =
      at::randint(model_options.num_classes, {absl::GetFlag(FLAGS_labelled)},
                  float_options.dtype(at::kLong));
  at::Tensor unlabelled =
      at::rand({absl::GetFlag(FLAGS_unlabelled), 1, 28, 28}, float_options);

  auto step = [&]() -> absl::StatusOr<trainer::FixMatchStepStats> {
    return (*trainer)->Step(labelled, targets, unlabelled);
  };
  for (int i = 0; i < absl::GetFlag(FLAGS_warmup); ++i) {
    auto stats = step();
    if (!stats.ok()) {
      std::fprintf(stderr, "%s\n", stats.status().ToString().c_str());
      return 1;
    }
  }
  Sync(device);
  const int steps = absl::GetFlag(FLAGS_steps);
  trainer::FixMatchStepStats last;
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; ++i) {
    auto stats = step();
    if (!stats.ok()) {
      std::fprintf(stderr, "%s\n", stats.status().ToString().c_str());
      return 1;
    }
    last = *std::move(stats);
  }
  Sync(device);
  const double seconds = SecondsSince(start);
  std::printf(
      "device=%s arch=%s width=%d batch=%d mu=%d bf16=%d channels_last=%d "
      "steps=%d: %.2f steps/s (%.2f ms/step); last loss %.4f sup %.4f "
      "unsup %.4f mask %.3f lr %.5f\n",
      device.str().c_str(), model_options.arch.c_str(), model_options.width,
      options.batch_size, options.mu,
      options.mixed_precision && use_cuda ? 1 : 0,
      options.channels_last && use_cuda ? 1 : 0, steps, steps / seconds,
      1000.0 * seconds / steps, last.loss.total.item<float>(),
      last.loss.supervised.item<float>(), last.loss.unsupervised.item<float>(),
      last.loss.mask_rate.item<float>(), last.lr);

  if (absl::GetFlag(FLAGS_time_augment)) {
    auto gen = trainer::MakeGenerator(device, 1);
    if (!gen.ok()) {
      std::fprintf(stderr, "%s\n", gen.status().ToString().c_str());
      return 1;
    }
    const int64_t n = static_cast<int64_t>(options.batch_size) * options.mu;
    at::Tensor batch = unlabelled.narrow(0, 0, n);
    for (const bool strong : {false, true}) {
      Sync(device);
      start = std::chrono::steady_clock::now();
      for (int i = 0; i < steps; ++i) {
        at::Tensor out = strong ? trainer::StrongAugment(batch, *gen)
                                : trainer::WeakAugment(batch, *gen);
      }
      Sync(device);
      std::printf("%s augment of %lld images: %.3f ms\n",
                  strong ? "strong" : "weak", static_cast<long long>(n),
                  1000.0 * SecondsSince(start) / steps);
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return Run();
}
