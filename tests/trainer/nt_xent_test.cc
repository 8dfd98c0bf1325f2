#include "trainer/objectives/nt_xent.h"

#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <utility>
#include <vector>

namespace trainer {
namespace {

// Loss of one row whose positive has cosine `positive` and whose
// `negatives` negatives all have cosine `negative`.
double RowLoss(double positive, double negative, int negatives,
               double temperature) {
  return std::log(1.0 +
                  negatives * std::exp((negative - positive) / temperature));
}

torch::Tensor Random(int64_t n, int64_t d, uint64_t seed) {
  torch::manual_seed(seed);
  return torch::randn({n, d});
}

TEST(NtXentTest, IdenticalViewsOfOrthogonalImagesByHand) {
  // Rows e1, e2 in both views: each row's positive has cosine 1, its two
  // negatives cosine 0, so every row's loss is log(1 + 2 exp(-1 / t)).
  torch::Tensor z = torch::tensor({{1.0f, 0.0f}, {0.0f, 1.0f}});
  for (double t : {0.1, 0.5, 1.0}) {
    NtXentLoss result = ComputeNtXentLoss(z, z.clone(), t);
    EXPECT_EQ(result.loss.dim(), 0);
    EXPECT_EQ(result.loss.scalar_type(), torch::kFloat);
    EXPECT_NEAR(result.loss.item<double>(), RowLoss(1, 0, 2, t), 1e-6) << t;
    EXPECT_EQ(result.positive_accuracy.item<float>(), 1.0f);
  }
}

TEST(NtXentTest, OppositeViewsByHandAndScaleInvariant) {
  // View 2 is -3 times view 1: positives have cosine -1, negatives 0
  // (e1 against e2 and -e2), so row loss is log(1 + 2 exp(1 / t)) and no
  // row finds its positive first.
  torch::Tensor z1 = torch::tensor({{2.0f, 0.0f}, {0.0f, 0.5f}});
  NtXentLoss result = ComputeNtXentLoss(z1, -3 * z1, 0.5);
  EXPECT_NEAR(result.loss.item<double>(), RowLoss(-1, 0, 2, 0.5), 1e-5);
  EXPECT_EQ(result.positive_accuracy.item<float>(), 0.0f);
}

TEST(NtXentTest, MixedCosinesByHand) {
  // N = 2, D = 2: a = e1, b = (1, 1)/sqrt2 as view 1 of images 0 and 1,
  // a' = e1, b' = e2 as view 2. Rows (a, b, a', b'):
  //   a : positive a' (1), negatives b (c), b' (0)        c = 1/sqrt2
  //   b : positive b' (c), negatives a (c), a' (c)
  //   a': positive a (1), negatives b (c), b' (0)
  //   b': positive b (c), negatives a (0), a' (0)
  const double t = 0.5, c = 1.0 / std::sqrt(2.0);
  auto row = [t](double pos, std::initializer_list<double> negs) {
    double sum = std::exp(pos / t);
    for (double n : negs) sum += std::exp(n / t);
    return -pos / t + std::log(sum);
  };
  const double expected =
      (row(1, {c, 0}) + row(c, {c, c}) + row(1, {c, 0}) + row(c, {0, 0})) / 4;
  torch::Tensor z1 = torch::tensor({{1.0f, 0.0f}, {1.0f, 1.0f}});
  torch::Tensor z2 = torch::tensor({{1.0f, 0.0f}, {0.0f, 1.0f}});
  NtXentLoss result = ComputeNtXentLoss(z1, z2, t);
  EXPECT_NEAR(result.loss.item<double>(), expected, 1e-5);
}

TEST(NtXentTest, AlignedViewsBeatRandomViews) {
  // 8 orthogonal images (one-hot rows), identical views, against random
  // projections.
  torch::Tensor eye = torch::eye(8);
  const double aligned = ComputeNtXentLoss(eye, eye, 0.5).loss.item<double>();
  const double random = ComputeNtXentLoss(Random(8, 8, 1), Random(8, 8, 2), 0.5)
                            .loss.item<double>();
  EXPECT_NEAR(aligned, RowLoss(1, 0, 14, 0.5), 1e-5);
  EXPECT_LT(aligned, random);
}

TEST(NtXentTest, TemperatureScaling) {
  torch::Tensor eye = torch::eye(4);
  // Aligned orthogonal views: the loss falls towards 0 as t shrinks.
  double previous = ComputeNtXentLoss(eye, eye, 2.0).loss.item<double>();
  for (double t : {1.0, 0.5, 0.1, 0.05}) {
    const double loss = ComputeNtXentLoss(eye, eye, t).loss.item<double>();
    EXPECT_LT(loss, previous) << t;
    previous = loss;
  }
  EXPECT_LT(previous, 1e-6);
  // Any views: a very high temperature flattens the softmax to uniform over
  // the 2N - 1 others.
  const double hot = ComputeNtXentLoss(Random(4, 16, 3), Random(4, 16, 4), 1e4)
                         .loss.item<double>();
  EXPECT_NEAR(hot, std::log(7.0), 1e-3);
}

TEST(NtXentTest, GradientsFlowToBothViews) {
  torch::Tensor z1 = Random(6, 5, 5).requires_grad_();
  torch::Tensor z2 = Random(6, 5, 6).requires_grad_();
  NtXentLoss result = ComputeNtXentLoss(z1, z2, 0.2);
  EXPECT_FALSE(result.positive_accuracy.requires_grad());
  result.loss.backward();
  ASSERT_TRUE(z1.grad().defined());
  ASSERT_TRUE(z2.grad().defined());
  EXPECT_TRUE(torch::isfinite(z1.grad()).all().item<bool>());
  EXPECT_TRUE(torch::isfinite(z2.grad()).all().item<bool>());
  EXPECT_GT(z1.grad().abs().sum().item<float>(), 0.0f);
  EXPECT_GT(z2.grad().abs().sum().item<float>(), 0.0f);
  // A small step against the gradient lowers the loss.
  torch::Tensor lower;
  {
    torch::NoGradGuard no_grad;
    lower = ComputeNtXentLoss(z1 - 1e-2 * z1.grad(), z2 - 1e-2 * z2.grad(), 0.2)
                .loss;
  }
  EXPECT_LT(lower.item<float>(), result.loss.item<float>());
}

// CPU bf16 autocast on while alive; the device-generic calls replaced the
// CPU-specific ones (deprecated) in LibTorch 2.4.
class ScopedCpuBf16Autocast {
 public:
  ScopedCpuBf16Autocast() {
#if TORCH_VERSION_MAJOR > 2 || \
    (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    was_enabled_ = at::autocast::is_autocast_enabled(at::kCPU);
    was_dtype_ = at::autocast::get_autocast_dtype(at::kCPU);
    at::autocast::set_autocast_enabled(at::kCPU, true);
    at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
#else
    was_enabled_ = at::autocast::is_cpu_enabled();
    was_dtype_ = at::autocast::get_autocast_cpu_dtype();
    at::autocast::set_cpu_enabled(true);
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
#endif
  }
  ~ScopedCpuBf16Autocast() {
#if TORCH_VERSION_MAJOR > 2 || \
    (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_enabled(at::kCPU, was_enabled_);
    at::autocast::set_autocast_dtype(at::kCPU, was_dtype_);
#else
    at::autocast::set_cpu_enabled(was_enabled_);
    at::autocast::set_autocast_cpu_dtype(was_dtype_);
#endif
    at::autocast::clear_cache();
  }

 private:
  bool was_enabled_ = false;
  at::ScalarType was_dtype_ = at::kFloat;
};

TEST(NtXentTest, Float32UnderBf16Autocast) {
  torch::Tensor z1 = Random(16, 32, 7), z2 = Random(16, 32, 8);
  const double reference = ComputeNtXentLoss(z1, z2, 0.1).loss.item<double>();
  at::ScalarType mm_dtype = at::kFloat;
  NtXentLoss from_float, from_bf16;
  {
    ScopedCpuBf16Autocast autocast;
    // Autocast is active: a plain matmul runs in bf16.
    mm_dtype = torch::mm(z1, z2.t()).scalar_type();
    from_float = ComputeNtXentLoss(z1, z2, 0.1);
    from_bf16 = ComputeNtXentLoss(z1.to(torch::kBFloat16),
                                  z2.to(torch::kBFloat16), 0.1);
  }
  EXPECT_EQ(mm_dtype, torch::kBFloat16);
  EXPECT_EQ(from_float.loss.scalar_type(), torch::kFloat);
  EXPECT_EQ(from_float.positive_accuracy.scalar_type(), torch::kFloat);
  EXPECT_NEAR(from_float.loss.item<double>(), reference, 1e-6);
  EXPECT_EQ(from_bf16.loss.scalar_type(), torch::kFloat);
  EXPECT_NEAR(from_bf16.loss.item<double>(), reference, 0.05);
}

TEST(NtXentTest, BadShapesAndTemperatureThrow) {
  torch::Tensor z = torch::randn({4, 8});
  EXPECT_THROW(ComputeNtXentLoss(z, torch::randn({4, 7}), 0.5), c10::Error);
  EXPECT_THROW(ComputeNtXentLoss(z, torch::randn({3, 8}), 0.5), c10::Error);
  EXPECT_THROW(ComputeNtXentLoss(z, torch::randn({4, 8, 1}), 0.5), c10::Error);
  EXPECT_THROW(ComputeNtXentLoss(torch::randn({8}), torch::randn({8}), 0.5),
               c10::Error);
  EXPECT_THROW(
      ComputeNtXentLoss(torch::randn({1, 8}), torch::randn({1, 8}), 0.5),
      c10::Error);
  EXPECT_THROW(ComputeNtXentLoss(z, z, 0.0), c10::Error);
  EXPECT_THROW(ComputeNtXentLoss(z.to(torch::kLong), z.to(torch::kLong), 0.5),
               c10::Error);
}

// The multi-view loss and positive accuracy by plain loops over doubles.
std::pair<double, double> MultiViewByLoops(
    const std::vector<torch::Tensor>& views, double t) {
  std::vector<std::vector<double>> rows;
  std::vector<int64_t> image;
  for (const torch::Tensor& v : views) {
    for (int64_t i = 0; i < v.size(0); ++i) {
      std::vector<double> row;
      double norm = 0;
      for (int64_t d = 0; d < v.size(1); ++d) {
        row.push_back(v[i][d].item<double>());
        norm += row.back() * row.back();
      }
      for (double& x : row) x /= std::sqrt(norm);
      rows.push_back(row);
      image.push_back(i);
    }
  }
  double loss = 0, hits = 0;
  for (size_t a = 0; a < rows.size(); ++a) {
    double positives = 0, all = 0, best = -1e300;
    bool best_positive = false;
    for (size_t b = 0; b < rows.size(); ++b) {
      if (a == b) continue;
      double cosine = 0;
      for (size_t d = 0; d < rows[a].size(); ++d)
        cosine += rows[a][d] * rows[b][d];
      const double e = std::exp(cosine / t);
      all += e;
      if (image[a] == image[b]) positives += e;
      if (cosine > best) {
        best = cosine;
        best_positive = image[a] == image[b];
      }
    }
    loss += -std::log(positives / all);
    hits += best_positive ? 1 : 0;
  }
  return {loss / rows.size(), hits / rows.size()};
}

TEST(NtXentTest, MultiViewIdenticalViewsByHand) {
  // Three identical views of e1, e2: each row has two positives of cosine 1
  // and three negatives of cosine 0: log(1 + 1.5 exp(-1 / t)).
  torch::Tensor z = torch::tensor({{1.0f, 0.0f}, {0.0f, 1.0f}});
  for (double t : {0.2, 1.0}) {
    NtXentLoss result = ComputeMultiViewNtXentLoss({z, z, z}, t);
    EXPECT_EQ(result.loss.dim(), 0);
    EXPECT_NEAR(result.loss.item<double>(),
                std::log(1.0 + 1.5 * std::exp(-1.0 / t)), 1e-6)
        << t;
    EXPECT_EQ(result.positive_accuracy.item<float>(), 1.0f);
  }
}

TEST(NtXentTest, MultiViewMatchesLoopsAndTwoViewsMatchNtXent) {
  for (int views : {2, 3, 6}) {
    std::vector<torch::Tensor> z;
    for (int v = 0; v < views; ++v) z.push_back(Random(5, 4, 20 + v));
    NtXentLoss result = ComputeMultiViewNtXentLoss(z, 0.3);
    const auto [loss, accuracy] = MultiViewByLoops(z, 0.3);
    EXPECT_NEAR(result.loss.item<double>(), loss, 1e-5) << views;
    EXPECT_NEAR(result.positive_accuracy.item<double>(), accuracy, 1e-6)
        << views;
  }
  // A view swapped between the images: some rows' nearest is a negative.
  torch::Tensor z = torch::tensor({{1.0f, 0.1f}, {0.1f, 1.0f}});
  std::vector<torch::Tensor> swapped = {z, z, z.flip(0)};
  const auto [loss, accuracy] = MultiViewByLoops(swapped, 0.5);
  NtXentLoss result = ComputeMultiViewNtXentLoss(swapped, 0.5);
  EXPECT_NEAR(result.loss.item<double>(), loss, 1e-5);
  EXPECT_NEAR(result.positive_accuracy.item<double>(), accuracy, 1e-6);
  EXPECT_LT(accuracy, 1.0);
  // Two views: the same as SimCLR's pairwise loss.
  torch::Tensor z1 = Random(6, 5, 30), z2 = Random(6, 5, 31);
  EXPECT_NEAR(ComputeMultiViewNtXentLoss({z1, z2}, 0.2).loss.item<double>(),
              ComputeNtXentLoss(z1, z2, 0.2).loss.item<double>(), 1e-6);
}

TEST(NtXentTest, MultiViewGradientsAndBadInputs) {
  std::vector<torch::Tensor> z;
  for (int v = 0; v < 4; ++v)
    z.push_back(Random(6, 5, 40 + v).requires_grad_());
  ComputeMultiViewNtXentLoss(z, 0.2).loss.backward();
  for (const torch::Tensor& view : z) {
    ASSERT_TRUE(view.grad().defined());
    EXPECT_TRUE(torch::isfinite(view.grad()).all().item<bool>());
    EXPECT_GT(view.grad().abs().sum().item<float>(), 0.0f);
  }
  torch::Tensor a = torch::randn({4, 8});
  EXPECT_THROW(ComputeMultiViewNtXentLoss({a}, 0.5), c10::Error);
  EXPECT_THROW(ComputeMultiViewNtXentLoss({a, a, torch::randn({3, 8})}, 0.5),
               c10::Error);
  EXPECT_THROW(ComputeMultiViewNtXentLoss({a, a, a}, 0.0), c10::Error);
}

TEST(NtXentTest, CudaMatchesCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  torch::Tensor z1 = Random(32, 16, 9), z2 = Random(32, 16, 10);
  NtXentLoss cpu = ComputeNtXentLoss(z1, z2, 0.2);
  NtXentLoss cuda =
      ComputeNtXentLoss(z1.to(torch::kCUDA), z2.to(torch::kCUDA), 0.2);
  EXPECT_TRUE(cuda.loss.is_cuda());
  EXPECT_NEAR(cuda.loss.item<double>(), cpu.loss.item<double>(), 1e-4);
  EXPECT_EQ(cuda.positive_accuracy.item<float>(),
            cpu.positive_accuracy.item<float>());
}

}  // namespace
}  // namespace trainer
