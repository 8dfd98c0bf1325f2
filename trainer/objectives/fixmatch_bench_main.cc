// Times FixMatch steps (Learner + FixMatchObjective), on synthetic data or
// (with --data_dir) on Fashion-MNIST with a random labelled subset and
// test-set evaluation. The bench reads the label files itself: no trainer
// library offers a way to read them.
//   fixmatch_bench --arch=cnn --width=64 --batch=64 --mu=7 --steps=300
//   fixmatch_bench --data_dir=/usr/share/datasets/fashion-mnist --steps=4000
// Throughput is measured between two device synchronisations.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/cuda.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/idx_file.h"
#include "common/status_macros.h"
#include "trainer/learn/augment.h"
#include "trainer/learn/cpu_threads.h"
#include "trainer/learn/dataset.h"
#include "trainer/learn/learner.h"
#include "trainer/learn/model.h"
#include "trainer/objectives/fixmatch.h"

ABSL_FLAG(std::string, arch, "cnn", "Model architecture: cnn or wrn28_2.");
ABSL_FLAG(int, width, 64, "Base width of the cnn architecture.");
ABSL_FLAG(int, batch, 64, "Labelled images per step.");
ABSL_FLAG(int, mu, 7, "Unlabelled images per labelled image.");
ABSL_FLAG(int, steps, 100, "Timed steps (also the cosine schedule length).");
ABSL_FLAG(int, warmup, 10, "Untimed steps before timing (synthetic data).");
ABSL_FLAG(std::string, device, "auto",
          "auto (cuda if available), cpu or cuda.");
ABSL_FLAG(bool, mixed_precision, true, "bf16 autocast on CUDA.");
ABSL_FLAG(bool, channels_last, true, "channels_last on CUDA.");
ABSL_FLAG(std::string, weak_forward, "joint",
          "Weak views' forward: joint, separate (no-grad) or ema.");
ABSL_FLAG(bool, cuda_graph, false, "Capture and replay steps as CUDA graphs.");
ABSL_FLAG(int, cpu_threads, 0,
          "Threads for LibTorch's CPU work; 0: OMP_NUM_THREADS if set, else "
          "every CPU this process may run on.");
ABSL_FLAG(bool, cudnn_benchmark, true,
          "Let cuDNN pick the fastest algorithms (process-wide setting).");
ABSL_FLAG(uint64_t, seed, 0, "Trainer and labelled-subset seed.");
ABSL_FLAG(int, labelled, 250, "Labelled pool size.");
ABSL_FLAG(int, unlabelled, 60000, "Synthetic unlabelled pool size.");
ABSL_FLAG(bool, time_augment, true, "Also time the augmentations alone.");
ABSL_FLAG(int, sync_steps, 20,
          "Steps timed one by one (sync before and after) to split host "
          "enqueue time from device time; 0 to skip.");
ABSL_FLAG(std::string, data_dir, "",
          "Fashion-MNIST directory: train on it and report test accuracy.");
ABSL_FLAG(int, eval_every, 1000, "Steps between test evaluations (data_dir).");

namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

void Sync(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize();
}

// Reads the IDX label file at `path` into an int64 [N] tensor on `device`.
// Errors as common::ReadIdxLabels, UNAVAILABLE if `device` cannot be used.
absl::StatusOr<at::Tensor> LoadLabels(const std::string& path,
                                      int64_t expected_count,
                                      const torch::Device& device) {
  ASSIGN_OR_RETURN(std::vector<uint8_t> labels,
                   common::ReadIdxLabels(path, expected_count));
  try {
    return at::tensor(std::vector<int64_t>(labels.begin(), labels.end()),
                      at::kLong)
        .to(device);
  } catch (const c10::Error& e) {
    return absl::UnavailableError(absl::StrCat("cannot copy labels to ",
                                               device.str(), ": ",
                                               e.what_without_backtrace()));
  }
}

struct Data {
  at::Tensor labelled, targets, unlabelled, test, test_targets;
};

absl::StatusOr<Data> LoadData(const std::string& dir, int num_labelled,
                              uint64_t seed, const torch::Device& device) {
  Data data;
  const std::string base = dir + "/";
  ASSIGN_OR_RETURN(data.unlabelled,
                   trainer::LoadImages(base + common::kTrainImagesFile,
                                       common::kTrainCount, device));
  ASSIGN_OR_RETURN(
      at::Tensor train_labels,
      LoadLabels(base + common::kTrainLabelsFile, common::kTrainCount, device));
  ASSIGN_OR_RETURN(data.test,
                   trainer::LoadImages(base + common::kTestImagesFile,
                                       common::kTestCount, device));
  ASSIGN_OR_RETURN(data.test_targets, LoadLabels(base + common::kTestLabelsFile,
                                                 common::kTestCount, device));
  at::Generator gen = at::detail::createCPUGenerator(seed);
  at::Tensor subset = at::randperm(common::kTrainCount, gen, at::kLong)
                          .narrow(0, 0, num_labelled)
                          .to(device);
  data.labelled = data.unlabelled.index_select(0, subset);
  data.targets = train_labels.index_select(0, subset);
  return data;
}

// `s.scalars` are FixMatchObjective's metrics: loss_x, loss_u, mask_rate.
void PrintStats(const char* what, const trainer::LearnerStepStats& s) {
  std::printf("%s step %lld: loss %.4f sup %.4f unsup %.4f mask %.3f lr %.5f\n",
              what, static_cast<long long>(s.step), s.loss.item<float>(),
              s.scalars.at(0).item<float>(), s.scalars.at(1).item<float>(),
              s.scalars.at(2).item<float>(), s.lr);
}

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "%s\n", status.ToString().c_str());
  return 1;
}

int Run() {
  const std::string device_flag = absl::GetFlag(FLAGS_device);
  const bool use_cuda = device_flag == "cuda" ||
                        (device_flag == "auto" && torch::cuda::is_available());
  const torch::Device device =
      use_cuda ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
  at::globalContext().setBenchmarkCuDNN(absl::GetFlag(FLAGS_cudnn_benchmark));
  auto threads = trainer::SetCpuThreads(absl::GetFlag(FLAGS_cpu_threads));
  if (!threads.ok()) {
    std::fprintf(stderr, "%s\n", threads.status().ToString().c_str());
    return 2;
  }

  trainer::ModelOptions model_options;
  model_options.arch = absl::GetFlag(FLAGS_arch);
  model_options.width = absl::GetFlag(FLAGS_width);
  trainer::FixMatchOptions fixmatch;
  fixmatch.batch.batch_size = absl::GetFlag(FLAGS_batch);
  fixmatch.batch.mu = absl::GetFlag(FLAGS_mu);
  auto weak_forward =
      trainer::ParseWeakViewForward(absl::GetFlag(FLAGS_weak_forward));
  if (!weak_forward.ok()) {
    std::fprintf(stderr, "%s\n", weak_forward.status().ToString().c_str());
    return 2;
  }
  fixmatch.batch.weak_forward = *weak_forward;
  trainer::LearnerOptions options;
  options.mixed_precision = absl::GetFlag(FLAGS_mixed_precision);
  options.channels_last = absl::GetFlag(FLAGS_channels_last);
  options.cuda_graph = absl::GetFlag(FLAGS_cuda_graph);
  options.seed = absl::GetFlag(FLAGS_seed);
  const int steps = absl::GetFlag(FLAGS_steps);
  options.total_steps = std::max(steps, 1);
  auto objective = trainer::FixMatchObjective::Create(fixmatch);
  if (!objective.ok()) return Fail(objective.status());
  auto learner = trainer::Learner::Create(model_options, options,
                                          *std::move(objective), device);
  if (!learner.ok()) return Fail(learner.status());
  std::printf(
      "device=%s arch=%s width=%d batch=%d mu=%d bf16=%d channels_last=%d "
      "weak_forward=%s cuda_graph=%d cpu_threads=%d\n",
      device.str().c_str(), model_options.arch.c_str(), model_options.width,
      fixmatch.batch.batch_size, fixmatch.batch.mu,
      options.mixed_precision && use_cuda ? 1 : 0,
      options.channels_last && use_cuda ? 1 : 0,
      trainer::WeakViewForwardName(fixmatch.batch.weak_forward).c_str(),
      options.cuda_graph && use_cuda ? 1 : 0, threads->threads);

  Data data;
  const std::string data_dir = absl::GetFlag(FLAGS_data_dir);
  if (!data_dir.empty()) {
    auto loaded =
        LoadData(data_dir, absl::GetFlag(FLAGS_labelled), options.seed, device);
    if (!loaded.ok()) return Fail(loaded.status());
    data = *std::move(loaded);
  } else {
    auto float_options = torch::TensorOptions().device(device);
    data.labelled =
        at::rand({absl::GetFlag(FLAGS_labelled), 1, 28, 28}, float_options);
    data.targets =
        at::randint(model_options.num_classes, {absl::GetFlag(FLAGS_labelled)},
                    float_options.dtype(at::kLong));
    data.unlabelled =
        at::rand({absl::GetFlag(FLAGS_unlabelled), 1, 28, 28}, float_options);
  }
  const trainer::StepData step_data{data.labelled, data.targets,
                                    data.unlabelled};
  auto step = [&]() { return (*learner)->Step(step_data); };

  if (!data_dir.empty()) {
    const int eval_every = std::max(1, absl::GetFlag(FLAGS_eval_every));
    double train_seconds = 0;
    for (int done = 0; done < steps;) {
      Sync(device);
      const auto start = Clock::now();
      trainer::LearnerStepStats last;
      const int chunk = std::min(eval_every, steps - done);
      for (int i = 0; i < chunk; ++i) {
        auto stats = step();
        if (!stats.ok()) return Fail(stats.status());
        last = *std::move(stats);
      }
      Sync(device);
      train_seconds += SecondsSince(start);
      done += chunk;
      PrintStats("train", last);
      for (bool use_ema : {false, true}) {
        auto predictions = (*learner)->Predict(data.test, use_ema);
        if (!predictions.ok()) return Fail(predictions.status());
        const double accuracy = predictions->probs.argmax(1)
                                    .eq(data.test_targets)
                                    .to(at::kFloat)
                                    .mean()
                                    .item<double>();
        std::printf("  test accuracy (%s): %.4f\n", use_ema ? "ema" : "model",
                    accuracy);
      }
    }
    std::printf("%d steps: %.2f steps/s\n", steps, steps / train_seconds);
    return 0;
  }

  for (int i = 0; i < absl::GetFlag(FLAGS_warmup); ++i) {
    auto stats = step();
    if (!stats.ok()) return Fail(stats.status());
  }
  Sync(device);
  trainer::LearnerStepStats last;
  auto start = Clock::now();
  for (int i = 0; i < steps; ++i) {
    auto stats = step();
    if (!stats.ok()) return Fail(stats.status());
    last = *std::move(stats);
  }
  Sync(device);
  const double seconds = SecondsSince(start);
  std::printf("%d steps: %.2f steps/s (%.3f ms/step)\n", steps, steps / seconds,
              1000.0 * seconds / steps);
  PrintStats("last", last);

  const int sync_steps = absl::GetFlag(FLAGS_sync_steps);
  if (sync_steps > 0) {
    double host = 0, total = 0;
    for (int i = 0; i < sync_steps; ++i) {
      Sync(device);
      const auto t0 = Clock::now();
      auto stats = step();
      if (!stats.ok()) return Fail(stats.status());
      host += SecondsSince(t0);
      Sync(device);
      total += SecondsSince(t0);
    }
    std::printf(
        "isolated step: %.3f ms host enqueue, %.3f ms until device idle\n",
        1000.0 * host / sync_steps, 1000.0 * total / sync_steps);
  }

  if (absl::GetFlag(FLAGS_time_augment)) {
    auto gen = trainer::MakeGenerator(device, 1);
    if (!gen.ok()) return Fail(gen.status());
    const int64_t n =
        static_cast<int64_t>(fixmatch.batch.batch_size) * fixmatch.batch.mu;
    at::Tensor batch = data.unlabelled.narrow(0, 0, n);
    for (const bool strong : {false, true}) {
      Sync(device);
      start = Clock::now();
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
