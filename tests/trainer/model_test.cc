#include "trainer/learn/model.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>

#include "common/status_matchers.h"

namespace trainer {
namespace {

using ::common::IsOk;
using ::common::StatusIs;

int64_t CountParameters(torch::nn::Module& module) {
  int64_t count = 0;
  for (const auto& p : module.parameters()) count += p.numel();
  return count;
}

TEST(MakeModelTest, CnnShapesAndEmbeddingDim) {
  ModelOptions options;
  options.width = 8;
  auto model = MakeModel(options);
  ASSERT_THAT(model, IsOk());
  EXPECT_EQ((*model)->embedding_dim(), 32);
  ModelOutput out = (*model)->forward(at::rand({3, 1, 28, 28}));
  EXPECT_EQ(out.logits.sizes(), (at::IntArrayRef{3, 10}));
  EXPECT_EQ(out.embedding.sizes(), (at::IntArrayRef{3, 32}));
  // 6 bias-free 3x3 convs (1-8-8-16-16-32-32), 6 BNs, a 32x10 linear.
  EXPECT_EQ(CountParameters(**model), 17928 + 224 + 330);
}

TEST(MakeModelTest, DefaultCnnEmbeddingIsFourTimesWidth) {
  auto model = MakeModel(ModelOptions{});
  ASSERT_THAT(model, IsOk());
  EXPECT_EQ((*model)->embedding_dim(), 256);
}

TEST(MakeModelTest, Wrn28x2ShapesAndParameterCount) {
  ModelOptions options;
  options.arch = "wrn28_2";
  options.num_classes = 7;
  auto model = MakeModel(options);
  ASSERT_THAT(model, IsOk());
  EXPECT_EQ((*model)->embedding_dim(), 128);
  ModelOutput out = (*model)->forward(at::rand({2, 1, 28, 28}));
  EXPECT_EQ(out.logits.sizes(), (at::IntArrayRef{2, 7}));
  EXPECT_EQ(out.embedding.sizes(), (at::IntArrayRef{2, 128}));
  // WRN-28-2 for one input channel: 1,466,032 without the head, which is
  // 128 * 7 + 7.
  EXPECT_EQ(CountParameters(**model), 1467322 - 1290 + 128 * 7 + 7);
}

TEST(MakeModelTest, RejectsBadOptions) {
  ModelOptions unknown;
  unknown.arch = "resnet50";
  EXPECT_THAT(MakeModel(unknown), StatusIs(absl::StatusCode::kInvalidArgument));
  ModelOptions zero_width;
  zero_width.width = 0;
  EXPECT_THAT(MakeModel(zero_width),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ModelOptions no_classes;
  no_classes.num_classes = 0;
  EXPECT_THAT(MakeModel(no_classes),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ModelOptions bad_std;
  bad_std.input_std = 0.0f;
  EXPECT_THAT(MakeModel(bad_std), StatusIs(absl::StatusCode::kInvalidArgument));
  ModelOptions bad_init;
  bad_init.init = "xavier";
  EXPECT_THAT(MakeModel(bad_init),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(MakeModelTest, DefaultInitIsUniformWithinOneOverSqrtFanIn) {
  ModelOptions options;
  options.width = 16;
  options.init = "default";
  auto model = MakeModel(options);
  ASSERT_THAT(model, IsOk());
  // The second conv: 16 -> 16 channels, 3x3: fan_in 144, bound 1/12.
  at::Tensor second;
  for (const auto& item : (*model)->named_parameters()) {
    if (item.value().dim() == 4 && item.value().size(1) == 16) {
      second = item.value();
      break;
    }
  }
  ASSERT_TRUE(second.defined());
  EXPECT_LE(second.abs().max().item<double>(), 1.0 / 12.0 + 1e-6);
  // Uniform on [-b, b] has std b / sqrt(3).
  EXPECT_NEAR(second.std().item<double>(), 1.0 / 12.0 / std::sqrt(3.0), 0.005);
  options.init_seed = 1;
  auto other = MakeModel(options);
  ASSERT_THAT(other, IsOk());
  EXPECT_FALSE(at::equal((*model)->parameters()[0], (*other)->parameters()[0]));
}

TEST(MakeModelTest, InitialisationFollowsInitSeed) {
  ModelOptions options;
  options.width = 4;
  options.init_seed = 7;
  auto a = MakeModel(options);
  auto b = MakeModel(options);
  options.init_seed = 8;
  auto c = MakeModel(options);
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  ASSERT_THAT(c, IsOk());
  auto pa = (*a)->parameters(), pb = (*b)->parameters(),
       pc = (*c)->parameters();
  ASSERT_EQ(pa.size(), pc.size());
  // The first parameter is the first conv's weight.
  EXPECT_TRUE(at::equal(pa[0], pb[0]));
  EXPECT_FALSE(at::equal(pa[0], pc[0]));
  // Kaiming fan-out std for 1->4 3x3 with slope 0.1: sqrt(2/1.01)/sqrt(36).
  EXPECT_NEAR((*a)->parameters()[0].std().item<double>(),
              std::sqrt(2.0 / 1.01) / 6.0, 0.1);
}

TEST(MakeModelTest, NormalisesInputInsideTheModel) {
  ModelOptions options;
  options.width = 4;
  auto model = MakeModel(options);
  ASSERT_THAT(model, IsOk());
  (*model)->eval();
  at::Tensor x = at::rand({2, 1, 28, 28});
  at::Tensor logits = (*model)->forward(x).logits;
  // Same weights, identity normalisation, pre-normalised input.
  options.input_mean = 0.0f;
  options.input_std = 1.0f;
  auto raw = MakeModel(options);
  ASSERT_THAT(raw, IsOk());
  (*raw)->eval();
  at::Tensor expected =
      (*raw)->forward((x - kFashionMnistMean) / kFashionMnistStd).logits;
  EXPECT_TRUE(at::allclose(logits, expected, 1e-4, 1e-5));
}

TEST(ToChannelsLastTest, ConvertsWeightsAndKeepsOutputs) {
  for (const char* arch : {"cnn", "wrn28_2"}) {
    SCOPED_TRACE(arch);
    ModelOptions options;
    options.arch = arch;
    options.width = 4;
    auto model = MakeModel(options);
    ASSERT_THAT(model, IsOk());
    (*model)->eval();
    at::Tensor x = at::rand({2, 1, 28, 28});
    at::Tensor before = (*model)->forward(x).logits;
    at::Tensor first_weight = (*model)->parameters()[0];
    ToChannelsLast(**model);
    // Same tensor object, new layout; true NHWC strides also for the
    // one-input-channel first conv ([4, 1, 3, 3] or [16, 1, 3, 3]).
    EXPECT_TRUE((*model)->parameters()[0].is_same(first_weight));
    EXPECT_EQ(first_weight.stride(1), 1);
    EXPECT_EQ(first_weight.stride(2), 3);
    EXPECT_EQ(first_weight.stride(0), 9);
    for (const auto& p : (*model)->parameters()) {
      if (p.dim() == 4 && p.size(1) > 1) {
        EXPECT_TRUE(p.is_contiguous(at::MemoryFormat::ChannelsLast));
      }
    }
    at::Tensor after =
        (*model)->forward(x.contiguous(at::MemoryFormat::ChannelsLast)).logits;
    EXPECT_TRUE(at::allclose(before, after, 1e-4, 1e-5));
  }
}

}  // namespace
}  // namespace trainer
