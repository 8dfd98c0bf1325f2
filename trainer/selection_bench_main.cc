// Times the built-in selection strategies and LabelFreeFeatures on synthetic
// data of Fashion-MNIST scale.
//   selection_bench --device=cuda --n=60000 --d=256 --count=100 --labelled=40
#include <torch/cuda.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_split.h"
#include "trainer/label_free_features.h"
#include "trainer/selection_strategy.h"

ABSL_FLAG(std::string, device, "cpu", "cpu or cuda");
ABSL_FLAG(int64_t, n, 60000, "pool size");
ABSL_FLAG(int64_t, d, 256, "embedding dimension");
ABSL_FLAG(int64_t, count, 100, "ids to select");
ABSL_FLAG(int64_t, labelled, 40, "pool ids already labelled");
ABSL_FLAG(std::string, strategies, "random,kcenter,typiclust,margin",
          "comma-separated specs to time");
ABSL_FLAG(int, repeats, 2, "timed calls per strategy (the first warms up)");
ABSL_FLAG(bool, label_free, true, "also time LabelFreeFeatures on [n,1,28,28]");

namespace {

double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
      .count();
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string device_name = absl::GetFlag(FLAGS_device);
  if (device_name == "cuda" && !torch::cuda::is_available()) {
    std::fprintf(stderr, "CUDA is not available\n");
    return 1;
  }
  const torch::Device device(device_name == "cuda" ? torch::kCUDA : torch::kCPU);
  const int64_t n = absl::GetFlag(FLAGS_n), d = absl::GetFlag(FLAGS_d);

  // A mixture of 10 Gaussians, like embeddings of 10 classes.
  torch::manual_seed(0);
  const torch::Tensor means = torch::randn({10, d}) * 2;
  const torch::Tensor cls = torch::randint(10, {n}, torch::kLong);
  trainer::PoolState pool;
  pool.embeddings = (means.index_select(0, cls) + torch::randn({n, d})).to(device);
  pool.probabilities =
      torch::softmax(torch::randn({n, 10}) * 3, 1).to(device);
  for (int64_t i = 0; i < n; ++i) pool.pool_ids.push_back(i);
  for (int64_t i = 0; i < absl::GetFlag(FLAGS_labelled); ++i) {
    pool.labelled_ids.push_back(i * (n / absl::GetFlag(FLAGS_labelled)));
  }
  pool.seed = 1;
  std::printf("device=%s n=%ld d=%ld count=%ld labelled=%ld\n",
              device_name.c_str(), static_cast<long>(n), static_cast<long>(d),
              static_cast<long>(absl::GetFlag(FLAGS_count)),
              static_cast<long>(pool.labelled_ids.size()));

  const std::vector<std::string> specs = absl::StrSplit(
      absl::GetFlag(FLAGS_strategies), ',', absl::SkipEmpty());
  for (const std::string& spec : specs) {
    absl::StatusOr<std::unique_ptr<trainer::SelectionStrategy>> strategy =
        trainer::MakeSelectionStrategy(spec, trainer::StrategyOptions());
    if (!strategy.ok()) {
      std::fprintf(stderr, "%s\n", strategy.status().ToString().c_str());
      return 1;
    }
    for (int r = 0; r < absl::GetFlag(FLAGS_repeats); ++r) {
      const auto start = std::chrono::steady_clock::now();
      absl::StatusOr<std::vector<int64_t>> ids =
          (*strategy)->Select(pool, absl::GetFlag(FLAGS_count));
      const double s = Seconds(start);
      if (!ids.ok()) {
        std::fprintf(stderr, "%s: %s\n", spec.c_str(),
                     ids.status().ToString().c_str());
        return 1;
      }
      std::printf("%-10s call %d: %8.3f s  first ids %ld %ld\n", spec.c_str(),
                  r + 1, s, static_cast<long>((*ids)[0]),
                  static_cast<long>(ids->size() > 1 ? (*ids)[1] : -1));
    }
  }

  if (absl::GetFlag(FLAGS_label_free)) {
    const torch::Tensor images = torch::rand({n, 1, 28, 28}).to(device);
    for (int r = 0; r < absl::GetFlag(FLAGS_repeats); ++r) {
      const auto start = std::chrono::steady_clock::now();
      absl::StatusOr<torch::Tensor> features =
          trainer::LabelFreeFeatures(images, 64);
      if (!features.ok()) {
        std::fprintf(stderr, "%s\n", features.status().ToString().c_str());
        return 1;
      }
      const float check = features->sum().item<float>();
      std::printf("label_free call %d: %8.3f s  (sum %.3f)\n", r + 1,
                  Seconds(start), check);
    }
  }
  return 0;
}
