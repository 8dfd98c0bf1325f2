#include "trainer/objectives/graph_contrast.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>
#include <torch/torch.h>

#include <cmath>
#include <sstream>

#include "common/status_matchers.h"

namespace trainer {
namespace {

using ::common::IsOk;
using ::common::StatusIs;

at::Tensor Normalised(const at::Tensor& z) { return z / z.norm(2, {1}, true); }

// Row i's cross-entropy against the target distribution q_i, by hand.
double ExpectedLoss(const at::Tensor& a, const at::Tensor& b,
                    const at::Tensor& q, double temperature) {
  at::Tensor similarity = at::mm(Normalised(a), Normalised(b).t());
  at::Tensor log_p = at::log_softmax(similarity / temperature, 1);
  return -(q * log_p).sum(1).mean().item<double>();
}

TEST(ComputeGraphContrastLossTest, DistinctPseudoLabelsGiveInstanceContrast) {
  // Every image confidently in its own class: the graph has only the self
  // loops, so each row's target is its own other view.
  at::manual_seed(1);
  at::Tensor a = at::randn({4, 6});
  at::Tensor b = at::randn({4, 6});
  at::Tensor probs = at::eye(4).narrow(1, 0, 4);
  GraphContrastLoss loss = ComputeGraphContrastLoss(a, b, probs, 0.5, 0.8);
  EXPECT_NEAR(loss.loss.item<double>(), ExpectedLoss(a, b, at::eye(4), 0.5),
              1e-5);
  EXPECT_FLOAT_EQ(loss.mean_neighbours.item<float>(), 1.0f);
}

TEST(ComputeGraphContrastLossTest, SharedPseudoLabelsSpreadTheTarget) {
  // Images 0-2 share class 0, image 3 is class 1: rows 0-2 target the three
  // class-0 views equally, row 3 only itself.
  at::manual_seed(2);
  at::Tensor a = at::randn({4, 5});
  at::Tensor b = at::randn({4, 5});
  at::Tensor probs =
      torch::tensor({1.f, 0.f, 1.f, 0.f, 1.f, 0.f, 0.f, 1.f}).reshape({4, 2});
  at::Tensor q = at::zeros({4, 4});
  q.narrow(0, 0, 3).narrow(1, 0, 3).fill_(1.0 / 3);
  q[3][3] = 1.0;
  GraphContrastLoss loss = ComputeGraphContrastLoss(a, b, probs, 0.2, 0.8);
  EXPECT_NEAR(loss.loss.item<double>(), ExpectedLoss(a, b, q, 0.2), 1e-5);
  EXPECT_FLOAT_EQ(loss.mean_neighbours.item<float>(), 10.0f / 4);
}

TEST(ComputeGraphContrastLossTest, WeakAgreementMakesNoEdgeAndWeightsEdges) {
  // p0 . p1 = 0.5 is below 0.8: no edge. p0 . p2 = 0.9 is an edge, weighted
  // 0.9 against the self loop's 1.
  at::Tensor probs =
      torch::tensor({0.9f, 0.1f, 0.5f, 0.5f, 1.0f, 0.0f}).reshape({3, 2});
  const double p01 = 0.9 * 0.5 + 0.1 * 0.5;  // 0.5
  const double p02 = 0.9;
  ASSERT_LT(p01, 0.8);
  at::manual_seed(3);
  at::Tensor a = at::randn({3, 4});
  at::Tensor b = at::randn({3, 4});
  at::Tensor q = at::zeros({3, 3});
  q[0][0] = 1.0 / (1.0 + p02);
  q[0][2] = p02 / (1.0 + p02);
  q[1][1] = 1.0;
  q[2][0] = p02 / (1.0 + p02);
  q[2][2] = 1.0 / (1.0 + p02);
  GraphContrastLoss loss = ComputeGraphContrastLoss(a, b, probs, 0.2, 0.8);
  EXPECT_NEAR(loss.loss.item<double>(), ExpectedLoss(a, b, q, 0.2), 1e-5);
}

TEST(ComputeGraphContrastLossTest, GradientsReachBothViewsNotTheGraph) {
  at::Tensor a = at::randn({5, 3}).requires_grad_(true);
  at::Tensor b = at::randn({5, 3}).requires_grad_(true);
  at::Tensor probs = at::softmax(at::randn({5, 4}), 1).requires_grad_(true);
  ComputeGraphContrastLoss(a, b, probs, 0.2, 0.8).loss.backward();
  EXPECT_GT(a.grad().abs().sum().item<double>(), 0.0);
  EXPECT_GT(b.grad().abs().sum().item<double>(), 0.0);
  EXPECT_FALSE(probs.grad().defined());
}

TEST(ComputeGraphContrastLossTest, AcceptsBfloat16AndRejectsBadShapes) {
  at::Tensor probs = at::softmax(at::randn({4, 3}), 1);
  GraphContrastLoss loss = ComputeGraphContrastLoss(
      at::randn({4, 8}).to(at::kBFloat16), at::randn({4, 8}).to(at::kBFloat16),
      probs, 0.2, 0.8);
  EXPECT_EQ(loss.loss.scalar_type(), at::kFloat);
  EXPECT_TRUE(std::isfinite(loss.loss.item<double>()));
  EXPECT_THROW(ComputeGraphContrastLoss(at::randn({4, 8}), at::randn({4, 7}),
                                        probs, 0.2, 0.8),
               c10::Error);
  EXPECT_THROW(ComputeGraphContrastLoss(at::randn({4, 8}), at::randn({4, 8}),
                                        at::randn({3, 3}), 0.2, 0.8),
               c10::Error);
  EXPECT_THROW(ComputeGraphContrastLoss(at::randn({1, 8}), at::randn({1, 8}),
                                        at::ones({1, 3}), 0.2, 0.8),
               c10::Error);
}

TEST(GraphContrastTest, CreateValidatesOptions) {
  GraphContrastOptions good;
  good.weight = 1.0;
  EXPECT_THAT(GraphContrast::Create(good, 16, 3, at::kCPU, 0), IsOk());
  EXPECT_THAT(GraphContrast::Create(good, 0, 3, at::kCPU, 0),
              StatusIs(absl::StatusCode::kInvalidArgument));
  GraphContrastOptions bad = good;
  bad.weight = -1.0;
  EXPECT_THAT(GraphContrast::Create(bad, 16, 3, at::kCPU, 0),
              StatusIs(absl::StatusCode::kInvalidArgument));
  bad = good;
  bad.temperature = 0.0;
  EXPECT_THAT(GraphContrast::Create(bad, 16, 3, at::kCPU, 0),
              StatusIs(absl::StatusCode::kInvalidArgument));
  bad = good;
  bad.graph_threshold = 1.5;
  EXPECT_THAT(GraphContrast::Create(bad, 16, 3, at::kCPU, 0),
              StatusIs(absl::StatusCode::kInvalidArgument));
  bad = good;
  bad.projection_dim = 0;
  EXPECT_THAT(GraphContrast::Create(bad, 16, 3, at::kCPU, 0),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(GraphContrast::Create(good, 16, 1, at::kCPU, 0),
              StatusIs(absl::StatusCode::kInvalidArgument));
  bad = good;
  bad.memory_size = -1;
  EXPECT_THAT(GraphContrast::Create(bad, 16, 3, at::kCPU, 0),
              StatusIs(absl::StatusCode::kInvalidArgument));
  bad = good;
  bad.memory_size = 8;
  bad.smoothing_alpha = -0.1;
  EXPECT_THAT(GraphContrast::Create(bad, 16, 3, at::kCPU, 0),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // The memory and two strong views need the term on.
  GraphContrastOptions off;
  off.memory_size = 8;
  EXPECT_THAT(ValidateGraphContrastOptions(off),
              StatusIs(absl::StatusCode::kInvalidArgument));
  off = GraphContrastOptions();
  off.two_strong_views = true;
  EXPECT_THAT(ValidateGraphContrastOptions(off),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(GraphContrastTest, HeadIsSeededTrainedAndSavedUnderItsKey) {
  GraphContrastOptions options;
  options.weight = 1.0;
  options.projection_dim = 8;
  auto first = GraphContrast::Create(options, 16, 3, at::kCPU, 7);
  auto same_seed = GraphContrast::Create(options, 16, 3, at::kCPU, 7);
  ASSERT_THAT(first, IsOk());
  ASSERT_THAT(same_seed, IsOk());
  EXPECT_EQ((*first)->memory(), nullptr);
  at::Tensor weak = at::randn({6, 16}).requires_grad_(true);
  at::Tensor strong = at::randn({6, 16}).requires_grad_(true);
  at::Tensor probs = at::softmax(at::randn({6, 3}), 1);
  ContrastProjections projections = (*first)->Project(weak, strong, {});
  EXPECT_EQ(projections.weak.sizes(), (at::IntArrayRef{6, 8}));
  EXPECT_FALSE(projections.labelled.defined());
  // Without a memory the pseudo-labels pass through.
  EXPECT_TRUE(at::equal((*first)->SmoothPseudoLabels(projections, probs,
                                                     at::zeros({2}, at::kLong)),
                        probs));
  GraphContrastLoss loss = (*first)->Loss(projections, probs);
  EXPECT_NEAR(loss.loss.item<double>(),
              (*same_seed)
                  ->Loss((*same_seed)->Project(weak, strong, {}), probs)
                  .loss.item<double>(),
              1e-6);
  loss.loss.backward();
  EXPECT_GT(strong.grad().abs().sum().item<double>(), 0.0);
  for (const at::Tensor& p : (*first)->head()->parameters()) {
    EXPECT_TRUE(p.grad().defined());
  }

  // Save, change, load: the head's weights come back.
  torch::serialize::OutputArchive out;
  (*first)->Save(out, "contrast");
  std::stringstream buffer;
  out.save_to(buffer);
  at::Tensor before = (*first)->head()->parameters()[0].detach().clone();
  {
    at::NoGradGuard no_grad;
    (*first)->head()->parameters()[0].add_(1.0);
  }
  torch::serialize::InputArchive in;
  in.load_from(buffer);
  (*first)->Load(in, "contrast");
  EXPECT_TRUE(at::equal((*first)->head()->parameters()[0], before));
  torch::serialize::InputArchive wrong_key;
  std::stringstream again;
  out.save_to(again);
  wrong_key.load_from(again);
  EXPECT_THROW((*first)->Load(wrong_key, "other"), c10::Error);
}

TEST(GraphContrastTest, MemoryProjectsLabelledImagesAndSmooths) {
  GraphContrastOptions options;
  options.weight = 1.0;
  options.projection_dim = 8;
  options.memory_size = 20;
  options.smoothing_alpha = 0.5;
  auto contrast = GraphContrast::Create(options, 16, 3, at::kCPU, 7);
  ASSERT_THAT(contrast, IsOk());
  ASSERT_NE((*contrast)->memory(), nullptr);
  EXPECT_EQ((*contrast)->memory()->keys().sizes(), (at::IntArrayRef{20, 8}));
  at::Tensor weak = at::randn({6, 16}).requires_grad_(true);
  at::Tensor strong = at::randn({6, 16}).requires_grad_(true);
  at::Tensor labelled = at::randn({2, 16}).requires_grad_(true);
  EXPECT_THROW((*contrast)->Project(weak, strong, {}), c10::Error);
  ContrastProjections projections =
      (*contrast)->Project(weak, strong, labelled);
  ASSERT_TRUE(projections.labelled.defined());
  EXPECT_EQ(projections.labelled.sizes(), (at::IntArrayRef{2, 8}));
  EXPECT_FALSE(projections.labelled.requires_grad());
  at::Tensor probs = at::softmax(at::randn({6, 3}), 1);
  at::Tensor targets = torch::tensor({0, 1}, at::kLong);
  EXPECT_THROW((*contrast)->SmoothPseudoLabels(projections, probs,
                                               at::zeros({3}, at::kLong)),
               c10::Error);
  // An empty memory leaves the labels; the step's 6 + 2 entries go in.
  EXPECT_TRUE(at::allclose(
      (*contrast)->SmoothPseudoLabels(projections, probs, targets), probs));
  EXPECT_EQ((*contrast)->memory()->valid().sum().item<int64_t>(), 8);
  // The same images again: now each leans towards its stored copy's mix.
  at::Tensor smoothed =
      (*contrast)->SmoothPseudoLabels(projections, probs, targets);
  EXPECT_FALSE(at::allclose(smoothed, probs));
  EXPECT_TRUE(at::allclose(smoothed.sum(1), at::ones({6})));
}

TEST(GraphContrastTest, TwoStrongViewsContrastTheStrongViews) {
  // With the head on running statistics every row's projection is its own,
  // so the two-view term's slices can be checked against a one-view term
  // with the same head weights (same seed) fed the second strong views in
  // place of the weak ones.
  GraphContrastOptions options;
  options.weight = 1.0;
  options.projection_dim = 8;
  options.memory_size = 20;
  options.two_strong_views = true;
  GraphContrastOptions one_view = options;
  one_view.two_strong_views = false;
  auto two = GraphContrast::Create(options, 16, 3, at::kCPU, 7);
  auto one = GraphContrast::Create(one_view, 16, 3, at::kCPU, 7);
  ASSERT_THAT(two, IsOk());
  ASSERT_THAT(one, IsOk());
  (*two)->head()->eval();
  (*one)->head()->eval();
  at::Tensor weak = at::randn({6, 16}).requires_grad_(true);
  at::Tensor strong = at::randn({6, 16}).requires_grad_(true);
  at::Tensor second = at::randn({6, 16}).requires_grad_(true);
  at::Tensor labelled = at::randn({2, 16});
  EXPECT_THROW((*two)->Project(weak, strong, labelled), c10::Error);
  EXPECT_THROW((*two)->Project(weak, strong, labelled, at::randn({5, 16})),
               c10::Error);
  ContrastProjections projections =
      (*two)->Project(weak, strong, labelled, second);
  ContrastProjections reference = (*one)->Project(second, strong, labelled);
  ASSERT_TRUE(projections.strong_second.defined());
  // The two heads see the rows in different batches, so the matrix
  // products may round differently: compare to float precision, not exactly.
  auto alike = [](const at::Tensor& a, const at::Tensor& b) {
    return at::allclose(a, b, 1e-4, 1e-5);
  };
  EXPECT_TRUE(alike(projections.strong_second, reference.weak));
  EXPECT_TRUE(alike(projections.strong, reference.strong));
  EXPECT_TRUE(alike(projections.labelled, reference.labelled));
  // The one-view term ignores a second strong view.
  EXPECT_FALSE(
      (*one)->Project(weak, strong, labelled, second).strong_second.defined());

  at::Tensor probs = at::softmax(at::randn({6, 3}), 1);
  GraphContrastLoss loss = (*two)->Loss(projections, probs);
  EXPECT_NEAR(loss.loss.item<double>(),
              (*one)->Loss(reference, probs).loss.item<double>(), 1e-5);
  loss.loss.backward();
  EXPECT_GT(second.grad().abs().sum().item<double>(), 0.0);
  EXPECT_GT(strong.grad().abs().sum().item<double>(), 0.0);
  // The weak views are projected (for the memory) but not contrasted: on
  // running statistics no gradient reaches them.
  EXPECT_FALSE(weak.grad().defined() &&
               weak.grad().abs().sum().item<double>() > 0.0);
}

}  // namespace
}  // namespace trainer
