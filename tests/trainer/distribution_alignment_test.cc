#include "trainer/objectives/distribution_alignment.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sstream>

namespace trainer {
namespace {

DistributionAlignmentOptions Options(double momentum, int64_t classes = 2) {
  DistributionAlignmentOptions options;
  options.enabled = true;
  options.momentum = momentum;
  options.num_classes = classes;
  return options;
}

TEST(DistributionAlignmentTest, DisabledReturnsItsInput) {
  DistributionAlignment alignment(DistributionAlignmentOptions{}, at::kCPU);
  const at::Tensor probs = at::softmax(at::randn({4, 10}), 1);
  EXPECT_TRUE(alignment.Align(probs).is_same(probs));
  EXPECT_TRUE(at::allclose(alignment.p_model(), at::full({10}, 0.1f)));
}

TEST(DistributionAlignmentTest, HandComputedWithMomentumZero) {
  DistributionAlignment alignment(Options(0.0), at::kCPU);
  const at::Tensor probs = at::tensor({0.6f, 0.4f, 0.8f, 0.2f}).view({2, 2});
  const at::Tensor aligned = alignment.Align(probs);
  // p_model = mean = (0.7, 0.3); rows divided by it and renormalised:
  // (0.857, 1.333) -> (0.3913, 0.6087); (1.1429, 0.6667) -> (0.6316, 0.3684).
  EXPECT_TRUE(at::allclose(alignment.p_model(), at::tensor({0.7f, 0.3f})));
  EXPECT_TRUE(at::allclose(
      aligned, at::tensor({0.3913f, 0.6087f, 0.6316f, 0.3684f}).view({2, 2}),
      1e-4, 1e-4));
  EXPECT_TRUE(at::allclose(aligned.sum(1), at::ones({2})));
  EXPECT_FALSE(aligned.requires_grad());
}

TEST(DistributionAlignmentTest, EmaStartsUniform) {
  DistributionAlignment alignment(Options(0.9), at::kCPU);
  alignment.Align(at::tensor({1.0f, 0.0f}).view({1, 2}));
  // 0.9 * 0.5 + 0.1 * (1, 0) = (0.55, 0.45).
  EXPECT_TRUE(at::allclose(alignment.p_model(), at::tensor({0.55f, 0.45f})));
  alignment.Align(at::tensor({1.0f, 0.0f}).view({1, 2}));
  EXPECT_TRUE(at::allclose(alignment.p_model(), at::tensor({0.595f, 0.405f})));
}

TEST(DistributionAlignmentTest, PushesBackAClassThatTakesOverThePredictions) {
  // The model calls most images class 0; a borderline image (0.55 for
  // class 0) becomes class 1 once aligned, a confident one stays class 0.
  DistributionAlignment alignment(Options(0.0), at::kCPU);
  const at::Tensor probs =
      at::tensor({0.9f, 0.1f, 0.9f, 0.1f, 0.9f, 0.1f, 0.55f, 0.45f})
          .view({4, 2});
  const at::Tensor aligned = alignment.Align(probs);
  EXPECT_EQ(probs.argmax(1)[3].item<int64_t>(), 0);
  EXPECT_EQ(aligned.argmax(1)[3].item<int64_t>(), 1);
  EXPECT_EQ(aligned.argmax(1)[0].item<int64_t>(), 0);
}

TEST(DistributionAlignmentTest, SaveLoadRoundTripAndOldCheckpoints) {
  DistributionAlignment a(Options(0.0), at::kCPU);
  a.Align(at::tensor({0.6f, 0.4f}).view({1, 2}));
  torch::serialize::OutputArchive out;
  a.Save(out, "alignment");
  std::ostringstream bytes;
  out.save_to(bytes);

  DistributionAlignment b(Options(0.0), at::kCPU);
  torch::serialize::InputArchive in;
  std::istringstream read(bytes.str());
  in.load_from(read);
  b.Load(in, "alignment");
  EXPECT_TRUE(at::equal(b.p_model(), a.p_model()));

  // A checkpoint without the key (written before alignment was on) keeps
  // the uniform start.
  DistributionAlignment c(Options(0.0), at::kCPU);
  torch::serialize::InputArchive same;
  std::istringstream again(bytes.str());
  same.load_from(again);
  c.Load(same, "other_key");
  EXPECT_TRUE(at::allclose(c.p_model(), at::full({2}, 0.5f)));

  // A wrong class count is an error, not a silent mix.
  DistributionAlignment wrong(Options(0.0, 3), at::kCPU);
  torch::serialize::InputArchive third;
  std::istringstream once_more(bytes.str());
  third.load_from(once_more);
  EXPECT_THROW(wrong.Load(third, "alignment"), c10::Error);
}

TEST(DistributionAlignmentTest, RejectsBadOptionsAndShapes) {
  EXPECT_THROW(DistributionAlignment(Options(1.0), at::kCPU), c10::Error);
  EXPECT_THROW(DistributionAlignment(Options(0.5, 1), at::kCPU), c10::Error);
  DistributionAlignment alignment(Options(0.5, 3), at::kCPU);
  EXPECT_THROW(alignment.Align(at::ones({2, 2})), c10::Error);
  EXPECT_THROW(alignment.Align(at::ones({0, 3})), c10::Error);
}

}  // namespace
}  // namespace trainer
