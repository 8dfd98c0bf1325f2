#include "trainer/objectives/pseudo_label_memory.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>
#include <torch/torch.h>

#include <cmath>
#include <sstream>

namespace trainer {
namespace {

at::Tensor Normalised(const at::Tensor& z) { return z / z.norm(2, {1}, true); }

TEST(SmoothPseudoLabelsTest, MixesOwnDistributionWithSimilarityWeightedKeys) {
  // One query, two valid keys and one not yet written.
  at::Tensor probs = torch::tensor({{0.6f, 0.4f}});
  at::Tensor queries = torch::tensor({{1.0f, 0.0f}});
  at::Tensor keys = torch::tensor({{1.0f, 0.0f}, {0.0f, 1.0f}, {1.0f, 0.0f}});
  at::Tensor key_probs =
      torch::tensor({{1.0f, 0.0f}, {0.0f, 1.0f}, {0.0f, 1.0f}});
  at::Tensor valid = torch::tensor({true, true, false});
  const double t = 0.5, alpha = 0.9;
  at::Tensor smoothed =
      SmoothPseudoLabels(probs, queries, keys, key_probs, valid, t, alpha);
  // Weights over the valid keys: softmax(1/t, 0/t); the third key counts
  // for nothing although it is the most similar.
  const double w0 = std::exp(1.0 / t) / (std::exp(1.0 / t) + 1.0);
  EXPECT_NEAR(smoothed[0][0].item<double>(), 0.9 * 0.6 + 0.1 * w0, 1e-6);
  EXPECT_NEAR(smoothed[0][1].item<double>(), 0.9 * 0.4 + 0.1 * (1 - w0), 1e-6);
  EXPECT_NEAR(smoothed.sum().item<double>(), 1.0, 1e-6);
  EXPECT_FALSE(smoothed.requires_grad());
}

TEST(SmoothPseudoLabelsTest, EmptyMemoryOrAlphaOneLeaveProbsAsTheyAre) {
  at::Tensor probs = at::softmax(at::randn({3, 4}), 1);
  at::Tensor queries = Normalised(at::randn({3, 5}));
  at::Tensor keys = Normalised(at::randn({6, 5}));
  at::Tensor key_probs = at::softmax(at::randn({6, 4}), 1);
  at::Tensor none = at::zeros({6}, at::kBool);
  at::Tensor smoothed =
      SmoothPseudoLabels(probs, queries, keys, key_probs, none, 0.2, 0.9);
  EXPECT_TRUE(at::allclose(smoothed, probs));
  EXPECT_FALSE(at::isnan(smoothed).any().item<bool>());
  at::Tensor all = at::ones({6}, at::kBool);
  EXPECT_TRUE(at::allclose(
      SmoothPseudoLabels(probs, queries, keys, key_probs, all, 0.2, 1.0),
      probs));
  // alpha 0: the neighbours' distributions alone.
  at::Tensor neighbours =
      at::mm(at::softmax(at::mm(queries, keys.t()) / 0.2, 1), key_probs);
  EXPECT_TRUE(at::allclose(
      SmoothPseudoLabels(probs, queries, keys, key_probs, all, 0.2, 0.0),
      neighbours, 1e-5, 1e-6));
}

TEST(SmoothPseudoLabelsTest, RejectsMismatchedShapes) {
  at::Tensor probs = at::softmax(at::randn({3, 4}), 1);
  at::Tensor queries = at::randn({3, 5});
  at::Tensor keys = at::randn({6, 5});
  at::Tensor key_probs = at::softmax(at::randn({6, 4}), 1);
  at::Tensor valid = at::ones({6}, at::kBool);
  EXPECT_THROW(SmoothPseudoLabels(probs, at::randn({2, 5}), keys, key_probs,
                                  valid, 0.2, 0.9),
               c10::Error);
  EXPECT_THROW(SmoothPseudoLabels(probs, queries, at::randn({6, 4}), key_probs,
                                  valid, 0.2, 0.9),
               c10::Error);
  EXPECT_THROW(
      SmoothPseudoLabels(probs, queries, keys,
                         at::softmax(at::randn({6, 3}), 1), valid, 0.2, 0.9),
      c10::Error);
  EXPECT_THROW(SmoothPseudoLabels(probs, queries, keys, key_probs,
                                  at::ones({5}, at::kBool), 0.2, 0.9),
               c10::Error);
  EXPECT_THROW(
      SmoothPseudoLabels(probs, queries, keys, key_probs, valid, 0.0, 0.9),
      c10::Error);
}

PseudoLabelMemoryOptions SmallMemory() {
  PseudoLabelMemoryOptions o;
  o.size = 5;
  o.dim = 2;
  o.num_classes = 3;
  o.temperature = 0.1;
  o.alpha = 0.5;
  return o;
}

TEST(PseudoLabelMemoryTest, PushesWrapAroundOverwritingTheOldest) {
  PseudoLabelMemory memory(SmallMemory(), at::kCPU);
  EXPECT_EQ(memory.valid().sum().item<int64_t>(), 0);
  at::Tensor first_keys =
      torch::tensor({{1.0f, 0.0f}, {0.0f, 1.0f}, {1.0f, 0.0f}});
  at::Tensor first_probs = at::eye(3);
  memory.Push(first_keys, first_probs);
  EXPECT_EQ(memory.valid().sum().item<int64_t>(), 3);
  EXPECT_TRUE(at::equal(memory.keys().narrow(0, 0, 3), first_keys));
  // Three more: rows 3, 4, then 0 again.
  at::Tensor second_keys = at::full({3, 2}, 0.5f);
  at::Tensor second_probs = at::full({3, 3}, 1.0f / 3);
  memory.Push(second_keys, second_probs);
  EXPECT_EQ(memory.valid().sum().item<int64_t>(), 5);
  EXPECT_TRUE(at::equal(memory.keys()[0], second_keys[2]));
  EXPECT_TRUE(at::equal(memory.keys()[1], first_keys[1]));
  EXPECT_TRUE(at::equal(memory.key_probs()[4], second_probs[1]));
  EXPECT_THROW(memory.Push(at::zeros({6, 2}), at::zeros({6, 3})), c10::Error);
  EXPECT_THROW(memory.Push(at::zeros({2, 3}), at::zeros({2, 3})), c10::Error);
}

TEST(PseudoLabelMemoryTest, LabelledNeighboursPullAnUncertainImage) {
  PseudoLabelMemory memory(SmallMemory(), at::kCPU);
  // Two labelled images of class 2 next to the query's direction, one of
  // class 0 opposite.
  memory.Push(
      torch::tensor({{1.0f, 0.0f}, {1.0f, 0.0f}, {-1.0f, 0.0f}}),
      torch::tensor(
          {{0.0f, 0.0f, 1.0f}, {0.0f, 0.0f, 1.0f}, {1.0f, 0.0f, 0.0f}}));
  at::Tensor uncertain = torch::tensor({{0.4f, 0.35f, 0.25f}});
  at::Tensor smoothed = memory.Smooth(uncertain, torch::tensor({{1.0f, 0.0f}}));
  EXPECT_EQ(smoothed.argmax(1).item<int64_t>(), 2);
  EXPECT_NEAR(smoothed.sum().item<double>(), 1.0, 1e-6);
}

TEST(PseudoLabelMemoryTest, RejectsBadOptions) {
  PseudoLabelMemoryOptions bad = SmallMemory();
  bad.size = 0;
  EXPECT_THROW(PseudoLabelMemory(bad, at::kCPU), c10::Error);
  bad = SmallMemory();
  bad.alpha = 1.5;
  EXPECT_THROW(PseudoLabelMemory(bad, at::kCPU), c10::Error);
  bad = SmallMemory();
  bad.temperature = 0.0;
  EXPECT_THROW(PseudoLabelMemory(bad, at::kCPU), c10::Error);
}

TEST(PseudoLabelMemoryTest, SaveLoadRestoresTheBufferAndItsPosition) {
  PseudoLabelMemory memory(SmallMemory(), at::kCPU);
  memory.Push(at::randn({4, 2}), at::softmax(at::randn({4, 3}), 1));
  torch::serialize::OutputArchive out;
  memory.Save(out, "memory");
  std::stringstream buffer;
  out.save_to(buffer);

  PseudoLabelMemory restored(SmallMemory(), at::kCPU);
  torch::serialize::InputArchive in;
  in.load_from(buffer);
  restored.Load(in, "memory");
  EXPECT_TRUE(at::equal(restored.keys(), memory.keys()));
  EXPECT_TRUE(at::equal(restored.key_probs(), memory.key_probs()));
  EXPECT_TRUE(at::equal(restored.valid(), memory.valid()));
  // The next push lands where the original's would: row 4, then row 0.
  at::Tensor keys = torch::tensor({{3.0f, 3.0f}, {4.0f, 4.0f}});
  memory.Push(keys, at::eye(3).narrow(0, 0, 2));
  restored.Push(keys, at::eye(3).narrow(0, 0, 2));
  EXPECT_TRUE(at::equal(restored.keys(), memory.keys()));
  EXPECT_TRUE(at::equal(restored.keys()[0], keys[1]));

  // Another shape is refused and leaves the buffer as it was.
  PseudoLabelMemoryOptions larger = SmallMemory();
  larger.size = 6;
  PseudoLabelMemory other(larger, at::kCPU);
  std::stringstream again;
  out.save_to(again);
  torch::serialize::InputArchive in_again;
  in_again.load_from(again);
  EXPECT_THROW(other.Load(in_again, "memory"), c10::Error);
  EXPECT_EQ(other.valid().sum().item<int64_t>(), 0);
  torch::serialize::InputArchive wrong_key;
  std::stringstream third;
  out.save_to(third);
  wrong_key.load_from(third);
  EXPECT_THROW(restored.Load(wrong_key, "other"), c10::Error);
}

}  // namespace
}  // namespace trainer
