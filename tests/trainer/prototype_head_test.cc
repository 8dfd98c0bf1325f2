#include "trainer/learn/prototype_head.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "absl/status/status.h"

namespace trainer {
namespace {

// `per_class` samples of each of `classes` classes in `dim` dimensions:
// class c's samples scatter with standard deviation `spread` around a
// centre of its own (centres about 4 apart).
struct Clusters {
  torch::Tensor embeddings;
  torch::Tensor labels;
};
Clusters MakeClusters(int64_t classes, int64_t per_class, int64_t dim,
                      double spread, uint64_t seed) {
  torch::manual_seed(seed);
  torch::Tensor centres = 4.0 * torch::randn({classes, dim});
  torch::Tensor labels =
      torch::arange(classes, torch::kLong).repeat_interleave(per_class);
  torch::Tensor embeddings = centres.index_select(0, labels) +
                             spread * torch::randn({labels.size(0), dim});
  return {embeddings, labels};
}

torch::Tensor Logits(const PrototypeHead& head, const torch::Tensor& e) {
  return e.matmul(head.weight.t()) + head.bias;
}

TEST(PrototypeHeadTest, PredictsTheNearestClassMean) {
  Clusters data = MakeClusters(4, 5, 16, 1.0, 1);
  auto head = FitPrototypeHead(data.embeddings, data.labels, 4);
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_EQ(head->weight.sizes(), (torch::IntArrayRef{4, 16}));
  EXPECT_EQ(head->bias.sizes(), (torch::IntArrayRef{4}));
  EXPECT_EQ(head->weight.scalar_type(), torch::kFloat);
  EXPECT_EQ(head->classes_present, 4);
  EXPECT_EQ(head->samples_scored, 20);

  torch::Tensor means = torch::zeros({4, 16});
  for (int c = 0; c < 4; ++c) {
    means[c] = data.embeddings.index({data.labels == c}).mean(0);
  }
  torch::Tensor queries = 3.0 * torch::randn({200, 16});
  torch::Tensor distance = torch::cdist(queries, means).pow(2);
  EXPECT_TRUE(
      torch::equal(Logits(*head, queries).argmax(1), distance.argmin(1)));
  // The softmax is the one of -|e - m_c|^2 / (2T).
  EXPECT_TRUE(torch::allclose(
      torch::softmax(Logits(*head, queries), 1),
      torch::softmax(-distance / (2 * head->temperature), 1), 1e-4, 1e-5));
}

TEST(PrototypeHeadTest, WiderClassesGetAHigherTemperature) {
  Clusters tight = MakeClusters(3, 6, 8, 0.3, 2);
  Clusters wide = MakeClusters(3, 6, 8, 3.0, 2);
  auto tight_head = FitPrototypeHead(tight.embeddings, tight.labels, 3);
  auto wide_head = FitPrototypeHead(wide.embeddings, wide.labels, 3);
  ASSERT_TRUE(tight_head.ok() && wide_head.ok());
  EXPECT_GT(wide_head->temperature, 4 * tight_head->temperature);
  // The fitted temperature is the grid's best leave-one-out likelihood:
  // halving or doubling it does no better.
  auto nll = [&](const Clusters& data, double t) {
    double total = 0;
    for (int64_t i = 0; i < data.labels.size(0); ++i) {
      torch::Tensor keep = torch::arange(data.labels.size(0)) != i;
      torch::Tensor e = data.embeddings.index({keep});
      torch::Tensor y = data.labels.index({keep});
      torch::Tensor d = torch::zeros({3});
      for (int c = 0; c < 3; ++c) {
        d[c] = (data.embeddings[i] - e.index({y == c}).mean(0)).pow(2).sum();
      }
      total -=
          torch::log_softmax(-d / (2 * t), 0)[data.labels[i].item<int64_t>()]
              .item<double>();
    }
    return total;
  };
  const double t = wide_head->temperature;
  EXPECT_LE(nll(wide, t), nll(wide, 2 * t) + 1e-6);
  EXPECT_LE(nll(wide, t), nll(wide, t / 2) + 1e-6);
}

TEST(PrototypeHeadTest, AClassWithoutLabelsStartsBelowTheOthers) {
  Clusters data = MakeClusters(3, 4, 8, 1.0, 3);  // classes 0-2 of 5
  auto head = FitPrototypeHead(data.embeddings, data.labels, 5);
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_EQ(head->classes_present, 3);
  EXPECT_TRUE(torch::equal(head->weight.narrow(0, 3, 2), torch::zeros({2, 8})));
  torch::Tensor logits = Logits(*head, data.embeddings);
  torch::Tensor lowest_present = logits.narrow(1, 0, 3).amin(1);
  EXPECT_NEAR(head->bias[3].item<double>(),
              lowest_present.mean().item<double>(), 1e-3);
  EXPECT_EQ(head->bias[3].item<double>(), head->bias[4].item<double>());
  // Never the prediction for a labelled sample.
  EXPECT_TRUE(torch::equal(logits.argmax(1), data.labels));
}

TEST(PrototypeHeadTest, SingleSamplesFallBackToTheDistanceScale) {
  torch::Tensor e = torch::tensor({{0.0f, 0.0f}, {2.0f, 0.0f}});
  torch::Tensor y = torch::tensor({0, 1}, torch::kLong);
  auto head = FitPrototypeHead(e, y, 2);
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_EQ(head->samples_scored, 0);
  EXPECT_DOUBLE_EQ(head->temperature, 4.0);  // squared distance 2^2
  // Weight m_c / T, bias -|m_c|^2 / (2T).
  EXPECT_TRUE(torch::allclose(head->weight,
                              torch::tensor({{0.0f, 0.0f}, {0.5f, 0.0f}})));
  EXPECT_TRUE(torch::allclose(head->bias, torch::tensor({0.0f, -0.5f})));
}

TEST(PrototypeHeadTest, KeepsTheEmbeddingsDeviceAndIsDeterministic) {
  Clusters data = MakeClusters(2, 3, 4, 1.0, 4);
  auto a = FitPrototypeHead(data.embeddings, data.labels, 2);
  auto b = FitPrototypeHead(data.embeddings.clone(), data.labels.clone(), 2);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(torch::equal(a->weight, b->weight));
  EXPECT_TRUE(torch::equal(a->bias, b->bias));
  EXPECT_EQ(a->weight.device(), data.embeddings.device());
}

TEST(PrototypeHeadTest, RejectsBadInput) {
  torch::Tensor e = torch::randn({4, 3});
  torch::Tensor y = torch::tensor({0, 1, 1, 0}, torch::kLong);
  auto code = [](const absl::StatusOr<PrototypeHead>& r) {
    return r.status().code();
  };
  EXPECT_EQ(code(FitPrototypeHead(e, y, 1)),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(FitPrototypeHead(e, y.narrow(0, 0, 3), 2)),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(FitPrototypeHead(e, y.to(torch::kInt), 2)),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(FitPrototypeHead(e.flatten(), y, 2)),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(FitPrototypeHead(e.narrow(0, 0, 0), y.narrow(0, 0, 0), 2)),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(FitPrototypeHead(e.to(torch::kLong), y, 2)),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      code(FitPrototypeHead(e, torch::tensor({0, 1, 2, 0}, torch::kLong), 2)),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      code(FitPrototypeHead(e, torch::tensor({0, -1, 1, 0}, torch::kLong), 2)),
      absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(FitPrototypeHead(e, y, 2).ok());
}

}  // namespace
}  // namespace trainer
