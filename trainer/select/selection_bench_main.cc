// Times the built-in selection strategies and LabelFreeFeatures on synthetic
// data of Fashion-MNIST scale, and optionally checks the device's selection
// against the CPU's.
//   selection_bench --device=cuda --n=60000 --d=256 --count=100 --labelled=40
// With --data_dir the pool is Fashion-MNIST's training set, embedded by
// LabelFreeFeatures (--d dims), and each selection is also scored with the
// true labels: classes hit, and the pool's kNN accuracy from the chosen ids.
//   selection_bench --data_dir=/usr/share/datasets/fashion-mnist --d=64 \
//       --labelled=0 --strategies=probcover
#include <torch/cuda.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_split.h"
#include "common/idx_file.h"
#include "trainer/select/feature_quality.h"
#include "trainer/select/label_free_features.h"
#include "trainer/select/selection_strategy.h"

ABSL_FLAG(std::string, device, "cpu", "cpu or cuda");
ABSL_FLAG(int64_t, n, 60000, "pool size");
ABSL_FLAG(int64_t, d, 256, "embedding dimension");
ABSL_FLAG(int64_t, count, 100, "ids to select");
ABSL_FLAG(int64_t, labelled, 40, "pool ids already labelled");
ABSL_FLAG(std::string, strategies, "random,kcenter,typiclust,margin,probcover",
          "comma-separated specs to time");
ABSL_FLAG(int, repeats, 2, "timed calls per strategy (the first warms up)");
ABSL_FLAG(int, kmeans_iterations, 30, "StrategyOptions::kmeans_iterations");
ABSL_FLAG(double, kmeans_tolerance, 1e-3, "StrategyOptions::kmeans_tolerance");
ABSL_FLAG(bool, compare_cpu, false,
          "also select on CPU and print how many ids agree");
ABSL_FLAG(bool, label_free, true, "also time LabelFreeFeatures on [n,1,28,28]");
ABSL_FLAG(std::string, data_dir, "",
          "folder with Fashion-MNIST's IDX files: select from its training "
          "images (the first --n) instead of synthetic data");
ABSL_FLAG(double, probcover_delta, 0, "StrategyOptions::probcover_delta");
ABSL_FLAG(int64_t, max_block_elements, int64_t{1} << 24,
          "StrategyOptions::max_block_elements");

namespace {

double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
      .count();
}

// Selects once, printing the time; exits the process on error.
std::vector<int64_t> TimedSelect(trainer::SelectionStrategy& strategy,
                                 const trainer::PoolState& pool,
                                 const char* label) {
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::vector<int64_t>> ids =
      strategy.Select(pool, absl::GetFlag(FLAGS_count));
  const double s = Seconds(start);
  if (!ids.ok()) {
    std::fprintf(stderr, "%s %s: %s\n", strategy.name().c_str(), label,
                 ids.status().ToString().c_str());
    std::exit(1);
  }
  std::printf("%-10s %-6s %8.3f s  first ids %ld %ld\n",
              strategy.name().c_str(), label, s, static_cast<long>((*ids)[0]),
              static_cast<long>(ids->size() > 1 ? (*ids)[1] : -1));
  if (!strategy.last_note().empty()) {
    std::printf("           %s\n", strategy.last_note().c_str());
  }
  return *ids;
}

// Prints how many classes `ids` hit and the pool's accuracy under a 20-NN
// classifier that knows only their labels. labels: [N] long, pool ids are
// row positions.
void Score(const std::vector<int64_t>& ids, const torch::Tensor& embeddings,
           const torch::Tensor& labels) {
  const torch::Tensor rows = torch::tensor(ids, torch::kLong);
  const torch::Tensor chosen = labels.index_select(0, rows);
  const torch::Tensor chosen_cpu = chosen.contiguous();
  const std::set<int64_t> classes(
      chosen_cpu.data_ptr<int64_t>(),
      chosen_cpu.data_ptr<int64_t>() + chosen_cpu.numel());
  absl::StatusOr<torch::Tensor> predicted = trainer::KnnClassify(
      embeddings.index_select(0, rows.to(embeddings.device())), chosen,
      embeddings, trainer::KnnOptions());
  if (!predicted.ok()) {
    std::fprintf(stderr, "%s\n", predicted.status().ToString().c_str());
    std::exit(1);
  }
  const double accuracy =
      predicted->cpu().eq(labels).to(torch::kDouble).mean().item<double>();
  std::printf("           %ld classes hit, kNN accuracy on the pool %.1f %%\n",
              static_cast<long>(classes.size()), 100 * accuracy);
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string device_name = absl::GetFlag(FLAGS_device);
  if (device_name == "cuda" && !torch::cuda::is_available()) {
    std::fprintf(stderr, "CUDA is not available\n");
    return 1;
  }
  const torch::Device device(device_name == "cuda" ? torch::kCUDA
                                                   : torch::kCPU);
  const int64_t n = absl::GetFlag(FLAGS_n), d = absl::GetFlag(FLAGS_d);
  const int64_t labelled = absl::GetFlag(FLAGS_labelled);

  trainer::PoolState cpu_pool;
  torch::Tensor true_labels;  // [n] long with --data_dir
  const std::string data_dir = absl::GetFlag(FLAGS_data_dir);
  if (data_dir.empty()) {
    // A mixture of 10 Gaussians, like embeddings of 10 classes.
    torch::manual_seed(0);
    const torch::Tensor means = torch::randn({10, d}) * 2;
    const torch::Tensor cls = torch::randint(10, {n}, torch::kLong);
    cpu_pool.embeddings = means.index_select(0, cls) + torch::randn({n, d});
    cpu_pool.probabilities = torch::softmax(torch::randn({n, 10}) * 3, 1);
  } else {
    absl::StatusOr<common::IdxArray> images = common::ReadIdxImages(
        data_dir + "/" + common::kTrainImagesFile, common::kTrainCount);
    absl::StatusOr<std::vector<uint8_t>> labels = common::ReadIdxLabels(
        data_dir + "/" + common::kTrainLabelsFile, common::kTrainCount);
    if (!images.ok() || !labels.ok() || n > common::kTrainCount) {
      std::fprintf(stderr, "%s %s (n <= %ld)\n",
                   images.status().ToString().c_str(),
                   labels.status().ToString().c_str(),
                   static_cast<long>(common::kTrainCount));
      return 1;
    }
    const torch::Tensor pixels =
        torch::from_blob(images->data.data(), {common::kTrainCount, 1, 28, 28},
                         torch::kByte)
            .slice(0, 0, n)
            .to(device, torch::kFloat) /
        255;
    const auto start = std::chrono::steady_clock::now();
    absl::StatusOr<torch::Tensor> features =
        trainer::LabelFreeFeatures(pixels, static_cast<int>(d));
    if (!features.ok()) {
      std::fprintf(stderr, "%s\n", features.status().ToString().c_str());
      return 1;
    }
    std::printf("Fashion-MNIST: %ld images, PCA to %ld dims in %.3f s\n",
                static_cast<long>(n), static_cast<long>(d), Seconds(start));
    cpu_pool.embeddings = features->cpu();
    true_labels =
        torch::from_blob(labels->data(), {common::kTrainCount}, torch::kByte)
            .slice(0, 0, n)
            .to(torch::kLong);
  }
  for (int64_t i = 0; i < n; ++i) cpu_pool.pool_ids.push_back(i);
  for (int64_t i = 0; i < labelled; ++i) {
    cpu_pool.labelled_ids.push_back(i * (n / labelled));
  }
  cpu_pool.seed = 1;
  trainer::PoolState pool = cpu_pool;
  pool.embeddings = cpu_pool.embeddings.to(device);
  if (cpu_pool.probabilities.defined()) {
    pool.probabilities = cpu_pool.probabilities.to(device);
  }
  std::printf("device=%s n=%ld d=%ld count=%ld labelled=%ld\n",
              device_name.c_str(), static_cast<long>(n), static_cast<long>(d),
              static_cast<long>(absl::GetFlag(FLAGS_count)),
              static_cast<long>(labelled));

  trainer::StrategyOptions options;
  options.kmeans_iterations = absl::GetFlag(FLAGS_kmeans_iterations);
  options.kmeans_tolerance = absl::GetFlag(FLAGS_kmeans_tolerance);
  options.probcover_delta = absl::GetFlag(FLAGS_probcover_delta);
  options.max_block_elements = absl::GetFlag(FLAGS_max_block_elements);
  const std::vector<std::string> specs =
      absl::StrSplit(absl::GetFlag(FLAGS_strategies), ',', absl::SkipEmpty());
  for (const std::string& spec : specs) {
    absl::StatusOr<std::unique_ptr<trainer::SelectionStrategy>> strategy =
        trainer::MakeSelectionStrategy(spec, options);
    if (!strategy.ok()) {
      std::fprintf(stderr, "%s\n", strategy.status().ToString().c_str());
      return 1;
    }
    std::vector<int64_t> ids;
    for (int r = 0; r < absl::GetFlag(FLAGS_repeats); ++r) {
      ids = TimedSelect(**strategy, pool, device_name.c_str());
    }
    if (true_labels.defined()) Score(ids, cpu_pool.embeddings, true_labels);
    if (absl::GetFlag(FLAGS_compare_cpu) && device.is_cuda()) {
      const std::vector<int64_t> cpu_ids =
          TimedSelect(**strategy, cpu_pool, "cpu");
      const std::set<int64_t> a(ids.begin(), ids.end());
      int64_t agree = 0;
      for (int64_t id : cpu_ids) agree += a.count(id);
      std::printf("%-10s cuda/cpu agree on %ld of %zu ids\n", spec.c_str(),
                  static_cast<long>(agree), ids.size());
    }
  }

  if (absl::GetFlag(FLAGS_label_free) && data_dir.empty()) {
    const torch::Tensor images = torch::rand({n, 1, 28, 28}).to(device);
    for (int r = 0; r < absl::GetFlag(FLAGS_repeats); ++r) {
      const auto start = std::chrono::steady_clock::now();
      absl::StatusOr<torch::Tensor> features =
          trainer::LabelFreeFeatures(images, 64);
      if (!features.ok()) {
        std::fprintf(stderr, "%s\n", features.status().ToString().c_str());
        return 1;
      }
      const float norm_sum = features->norm(2, {1}).sum().item<float>();
      std::printf("label_free %-6s %8.3f s  (sum of row norms %.1f)\n",
                  device_name.c_str(), Seconds(start), norm_sum);
    }
  }
  return 0;
}
