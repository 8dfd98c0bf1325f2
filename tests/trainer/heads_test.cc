#include "trainer/learn/heads.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <set>
#include <string>

namespace trainer {
namespace {

ProjectionHeadOptions Options(int64_t input, int64_t hidden, int64_t output) {
  ProjectionHeadOptions options;
  options.input_dim = input;
  options.hidden_dim = hidden;
  options.output_dim = output;
  return options;
}

TEST(ProjectionHeadTest, MapsFeaturesToProjections) {
  ProjectionHead head(Options(64, 32, 16));
  torch::Tensor out = head->forward(torch::randn({8, 64}));
  EXPECT_EQ(out.sizes(), (torch::IntArrayRef{8, 16}));
  EXPECT_EQ(out.scalar_type(), torch::kFloat);
}

TEST(ProjectionHeadTest, DefaultsHiddenToInputAndOutputTo128) {
  ProjectionHeadOptions options;
  options.input_dim = 48;
  ProjectionHead head(options);
  EXPECT_EQ(head->options().hidden_dim, 48);
  EXPECT_EQ(head->forward(torch::randn({4, 48})).size(1), 128);
}

TEST(ProjectionHeadTest, RegistersEveryLayer) {
  ProjectionHead head(Options(10, 20, 5));
  std::set<std::string> names;
  int64_t count = 0;
  for (const auto& item : head->named_parameters()) {
    names.insert(item.key());
    count += item.value().numel();
  }
  const std::set<std::string> expected = {"hidden.weight", "norm.weight",
                                          "norm.bias", "output.weight",
                                          "output.bias"};
  EXPECT_EQ(names, expected);
  // 10*20 (no bias) + 2*20 (BatchNorm) + 20*5 + 5.
  EXPECT_EQ(count, 200 + 40 + 100 + 5);
  std::set<std::string> buffers;
  for (const auto& item : head->named_buffers()) buffers.insert(item.key());
  EXPECT_TRUE(buffers.count("norm.running_mean"));
  EXPECT_TRUE(buffers.count("norm.running_var"));
  // Moving the head moves them all.
  head->to(torch::kDouble);
  for (const auto& p : head->parameters()) {
    EXPECT_EQ(p.scalar_type(), torch::kDouble);
  }
}

TEST(ProjectionHeadTest, InitialWeightsFollowTheSeedNotTheGlobalGenerator) {
  ProjectionHeadOptions a = Options(10, 20, 5);
  a.init_seed = 1;
  ProjectionHeadOptions b = a;
  b.init_seed = 2;
  torch::manual_seed(0);
  ProjectionHead first(a);
  // Another state of the global generator gives the same weights.
  torch::manual_seed(99);
  ProjectionHead again(a);
  ProjectionHead other(b);
  auto p1 = first->named_parameters();
  auto p2 = again->named_parameters();
  auto p3 = other->named_parameters();
  for (const char* name : {"hidden.weight", "output.weight", "output.bias"}) {
    EXPECT_TRUE(torch::equal(p1[name], p2[name])) << name;
    EXPECT_FALSE(torch::equal(p1[name], p3[name])) << name;
    // PyTorch's default scheme: uniform in +-1/sqrt(fan_in).
    const double fan_in = std::string(name).rfind("hidden", 0) == 0 ? 10 : 20;
    EXPECT_LE(p1[name].abs().max().item<double>(), 1.0 / std::sqrt(fan_in))
        << name;
  }
}

TEST(ProjectionHeadTest, TrainUsesBatchStatisticsEvalRunningOnes) {
  torch::manual_seed(0);
  ProjectionHead head(Options(6, 12, 4));
  torch::Tensor x = torch::randn({16, 6}) * 3 + 2;
  EXPECT_TRUE(head->is_training());
  torch::Tensor train_out = head->forward(x);
  // Batch statistics: every hidden unit is normalised over the batch, so
  // shifting every input by the same vector does not change the output.
  torch::Tensor shifted = head->forward(x + 5);
  EXPECT_TRUE(torch::allclose(train_out, shifted, 1e-4, 1e-4));
  head->eval();
  EXPECT_FALSE(head->is_training());
  torch::Tensor eval_a = head->forward(x);
  torch::Tensor eval_b = head->forward(x.narrow(0, 0, 1));
  // Eval mode: rows are independent of the rest of the batch, and the
  // running statistics (two steps of momentum 0.1) differ from the batch's.
  EXPECT_TRUE(torch::allclose(eval_a.narrow(0, 0, 1), eval_b, 1e-5, 1e-5));
  EXPECT_FALSE(torch::allclose(eval_a, train_out, 1e-3, 1e-3));
}

TEST(ProjectionHeadTest, GradientsReachEveryParameter) {
  ProjectionHead head(Options(8, 8, 4));
  torch::Tensor features = torch::randn({5, 8}, torch::requires_grad());
  head->forward(features).pow(2).sum().backward();
  for (const auto& item : head->named_parameters()) {
    ASSERT_TRUE(item.value().grad().defined()) << item.key();
    EXPECT_GT(item.value().grad().abs().sum().item<float>(), 0.0f)
        << item.key();
  }
  EXPECT_TRUE(features.grad().defined());
}

TEST(ProjectionHeadTest, BadOptionsThrow) {
  EXPECT_THROW(ProjectionHead(Options(0, 8, 4)), c10::Error);
  EXPECT_THROW(ProjectionHead(Options(8, -1, 4)), c10::Error);
  EXPECT_THROW(ProjectionHead(Options(8, 8, 0)), c10::Error);
}

}  // namespace
}  // namespace trainer
