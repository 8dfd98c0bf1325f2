#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "common/status_matchers.h"
#include "tests/trainer/toy_step.h"
#include "trainer/objectives/fixmatch.h"
#include "trainer/objectives/semi_supervised.h"

namespace trainer {
namespace {

using ::common::IsOk;
using ::common::StatusIs;
using ::testing::ElementsAre;

TEST(ComputeFixMatchLossTest, HandComputedValues) {
  // Labelled: two uniform 2-class predictions -> CE ln 2 each.
  at::Tensor logits_x = at::zeros({2, 2});
  at::Tensor targets_x = at::tensor({0, 1}, at::kLong);
  // Weak view max probabilities: 0.881 (class 0), 0.525 (class 1),
  // 0.953 (class 1). With tau = 0.9 only the third is masked in.
  at::Tensor weak = at::tensor({2.0f, 0.0f, 0.0f, 0.1f, 0.0f, 3.0f})
                        .view({3, 2})
                        .set_requires_grad(true);
  // Strong view: argmax would say class 0 for all three; the pseudo-label
  // for the third image is class 1 (from the weak view).
  at::Tensor strong = at::tensor({0.0f, 0.0f, 5.0f, 0.0f, 1.0f, 0.0f})
                          .view({3, 2})
                          .set_requires_grad(true);
  FixMatchLoss loss = ComputeFixMatchLoss(logits_x, targets_x, weak, strong,
                                          /*threshold=*/0.9, /*lambda_u=*/2.0);
  const double ce_third = std::log(1.0 + std::exp(1.0));  // -log sm([1,0])[1]
  EXPECT_NEAR(loss.supervised.item<double>(), std::log(2.0), 1e-6);
  EXPECT_NEAR(loss.unsupervised.item<double>(), ce_third / 3.0, 1e-6);
  EXPECT_NEAR(loss.mask_rate.item<double>(), 1.0 / 3.0, 1e-7);
  EXPECT_NEAR(loss.total.item<double>(), std::log(2.0) + 2.0 * ce_third / 3.0,
              1e-6);
  EXPECT_EQ(loss.total.scalar_type(), at::kFloat);
  EXPECT_EQ(loss.total.dim(), 0);

  // Gradients reach the strong logits of masked-in images only, never the
  // weak logits.
  loss.total.backward();
  EXPECT_FALSE(weak.grad().defined());
  ASSERT_TRUE(strong.grad().defined());
  EXPECT_EQ(strong.grad()[0].abs().sum().item<float>(), 0.0f);
  EXPECT_EQ(strong.grad()[1].abs().sum().item<float>(), 0.0f);
  // d/dz of lambda/3 * CE(z, 1) at z = [1, 0]: lambda/3 * (softmax - onehot).
  const double p0 = std::exp(1.0) / (std::exp(1.0) + 1.0);
  EXPECT_NEAR(strong.grad()[2][0].item<double>(), 2.0 / 3.0 * p0, 1e-6);
  EXPECT_NEAR(strong.grad()[2][1].item<double>(), -2.0 / 3.0 * p0, 1e-6);
}

TEST(ComputeFixMatchLossTest, ThresholdIsInclusive) {
  at::Tensor logits_x = at::zeros({1, 3});
  at::Tensor targets_x = at::tensor({2}, at::kLong);
  at::Tensor weak = at::tensor({1.0f, 0.0f, -1.0f}).view({1, 3});
  at::Tensor strong = at::zeros({1, 3});
  const float max_prob = at::softmax(weak, 1).max().item<float>();
  FixMatchLoss at_threshold = ComputeFixMatchLoss(
      logits_x, targets_x, weak, strong, static_cast<double>(max_prob), 1.0);
  EXPECT_EQ(at_threshold.mask_rate.item<float>(), 1.0f);
  EXPECT_NEAR(at_threshold.unsupervised.item<double>(), std::log(3.0), 1e-6);
  FixMatchLoss above = ComputeFixMatchLoss(
      logits_x, targets_x, weak, strong,
      static_cast<double>(std::nextafter(max_prob, 2.0f)), 1.0);
  EXPECT_EQ(above.mask_rate.item<float>(), 0.0f);
  EXPECT_EQ(above.unsupervised.item<float>(), 0.0f);
  EXPECT_NEAR(above.total.item<double>(), std::log(3.0), 1e-6);
}

TEST(ComputeFixMatchLossTest, AcceptsBfloat16Logits) {
  at::Tensor logits = at::zeros({2, 4}, at::kBFloat16);
  FixMatchLoss loss = ComputeFixMatchLoss(logits, at::tensor({0, 3}, at::kLong),
                                          logits, logits, 0.95, 1.0);
  EXPECT_EQ(loss.total.scalar_type(), at::kFloat);
  EXPECT_NEAR(loss.total.item<double>(), std::log(4.0), 1e-6);
}

TEST(ComputeFixMatchLossTest, SoftTargetsUseTheWholeDistribution) {
  const at::Tensor logits_x = at::zeros({1, 2});
  const at::Tensor targets_x = at::zeros({1}, at::kLong);
  const at::Tensor probs = at::tensor({0.8f, 0.2f}).reshape({1, 2});
  const at::Tensor strong = at::log(at::tensor({0.75f, 0.25f})).reshape({1, 2});
  FixMatchLoss hard = ComputeFixMatchLossFromProbs(logits_x, targets_x, probs,
                                                   strong, 0.5, 1.0);
  FixMatchLoss soft = ComputeFixMatchLossFromProbs(
      logits_x, targets_x, probs, strong, 0.5, 1.0, /*soft_targets=*/true);
  EXPECT_NEAR(hard.unsupervised.item<double>(), -std::log(0.75), 1e-6);
  EXPECT_NEAR(soft.unsupervised.item<double>(),
              -(0.8 * std::log(0.75) + 0.2 * std::log(0.25)), 1e-6);
  EXPECT_EQ(soft.mask_rate.item<double>(), 1.0);
}

TEST(ComputeFixMatchLossTest, MismatchedViewsThrow) {
  at::Tensor logits_x = at::zeros({1, 2});
  at::Tensor targets_x = at::tensor({0}, at::kLong);
  EXPECT_THROW(ComputeFixMatchLoss(logits_x, targets_x, at::zeros({3, 2}),
                                   at::zeros({2, 2}), 0.95, 1.0),
               c10::Error);
}

TEST(FixMatchObjectiveTest, CreateValidatesOptions) {
  EXPECT_THAT(FixMatchObjective::Create(FixMatchOptions{}), IsOk());
  FixMatchOptions zero_batch;
  zero_batch.batch.batch_size = 0;
  EXPECT_THAT(FixMatchObjective::Create(zero_batch),
              StatusIs(absl::StatusCode::kInvalidArgument));
  FixMatchOptions zero_mu;
  zero_mu.batch.mu = 0;
  EXPECT_THAT(FixMatchObjective::Create(zero_mu),
              StatusIs(absl::StatusCode::kInvalidArgument));
  FixMatchOptions negative_lambda;
  negative_lambda.batch.lambda_u = -1.0;
  EXPECT_THAT(FixMatchObjective::Create(negative_lambda),
              StatusIs(absl::StatusCode::kInvalidArgument));
  FixMatchOptions too_many_ops;
  too_many_ops.batch.strong.num_ops = kNumStrongOps + 1;
  EXPECT_THAT(FixMatchObjective::Create(too_many_ops),
              StatusIs(absl::StatusCode::kInvalidArgument));
  FixMatchOptions bad_posterize;
  bad_posterize.batch.strong.min_posterize_bits = 9;
  EXPECT_THAT(FixMatchObjective::Create(bad_posterize),
              StatusIs(absl::StatusCode::kInvalidArgument));
  FixMatchOptions bad_alignment;
  bad_alignment.batch.alignment_momentum = 1.0;
  EXPECT_THAT(FixMatchObjective::Create(bad_alignment),
              StatusIs(absl::StatusCode::kInvalidArgument));
  FixMatchOptions one_class;
  one_class.num_classes = 1;
  EXPECT_THAT(FixMatchObjective::Create(one_class),
              StatusIs(absl::StatusCode::kInvalidArgument));
  for (double threshold : {-0.1, 1.5, std::nan("")}) {
    FixMatchOptions bad_threshold;
    bad_threshold.threshold = threshold;
    EXPECT_THAT(FixMatchObjective::Create(bad_threshold),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << "threshold " << threshold;
  }
  for (double threshold : {0.0, 1.0}) {
    FixMatchOptions edge;
    edge.threshold = threshold;
    EXPECT_THAT(FixMatchObjective::Create(edge), IsOk());
  }
}

TEST(FixMatchObjectiveTest, NameLabelsAndMetricNames) {
  auto objective = FixMatchObjective::Create(FixMatchOptions{});
  ASSERT_THAT(objective, IsOk());
  EXPECT_EQ((*objective)->name(), "fixmatch");
  EXPECT_TRUE((*objective)->uses_labels());
  EXPECT_THAT((*objective)->metric_names(),
              ElementsAre("loss_x", "loss_u", "mask_rate"));
  EXPECT_TRUE((*objective)->trained_modules().empty());
}

TEST(FixMatchObjectiveTest, LossCombinesTermsInMetricOrder) {
  ToyContext toy = MakeToyContext();
  FixMatchOptions options;
  options.batch.batch_size = 4;
  options.batch.mu = 2;
  options.batch.lambda_u = 0.5;
  options.threshold = 0.0;  // every pseudo-label counts
  auto objective = FixMatchObjective::Create(options);
  ASSERT_THAT(objective, IsOk());
  ObjectiveLoss loss = (*objective)->Loss(toy.context(), ToyStepData());
  ASSERT_EQ(loss.scalars.size(), 3u);
  EXPECT_EQ(loss.total.dim(), 0);
  EXPECT_TRUE(loss.total.requires_grad());
  EXPECT_EQ(loss.scalars[2].item<float>(), 1.0f);  // mask_rate
  EXPECT_GT(loss.scalars[1].item<float>(), 0.0f);  // loss_u
  EXPECT_NEAR(
      loss.total.item<double>(),
      loss.scalars[0].item<double>() + 0.5 * loss.scalars[1].item<double>(),
      1e-5);
}

// FixMatch with mixup of the labelled batch (B 4, mu 2, lambda_u 0.5,
// threshold 0: every image passes), and with `unlabelled` of the unlabelled
// one too.
FixMatchOptions MixupOptions(bool unlabelled) {
  FixMatchOptions options;
  options.batch.batch_size = 4;
  options.batch.mu = 2;
  options.batch.lambda_u = 0.5;
  options.batch.mixup_alpha = 0.75;
  options.batch.mixup_unlabelled = unlabelled;
  options.threshold = 0.0;
  return options;
}

// One step's objective loss, and the forward of the same step by hand
// (the same weights and draws).
struct StepAndForward {
  ObjectiveLoss loss;
  SemiSupervisedLogits logits;
};
StepAndForward StepAndForwardByHand(const FixMatchOptions& options) {
  StepAndForward out;
  torch::manual_seed(3);
  ToyContext toy = MakeToyContext();
  auto objective = FixMatchObjective::Create(options);
  EXPECT_THAT(objective, IsOk());
  if (!objective.ok()) return out;
  out.loss = (*objective)->Loss(toy.context(), ToyStepData());
  torch::manual_seed(3);
  ToyContext again = MakeToyContext();
  out.logits =
      SemiSupervisedForward(again.context(), ToyStepData(), options.batch);
  return out;
}

TEST(FixMatchObjectiveTest, MixupReplacesTheSupervisedTermWithTheMixedOne) {
  auto [loss, logits] = StepAndForwardByHand(MixupOptions(false));
  ASSERT_TRUE(logits.logits_x_mixed.defined());
  const double supervised = SupervisedLoss(logits).item<double>();
  EXPECT_NEAR(loss.scalars[0].item<double>(), supervised, 1e-5);
  EXPECT_GT(std::abs(supervised - at::cross_entropy_loss(logits.logits_x,
                                                         logits.targets_x)
                                      .item<double>()),
            1e-4);
  EXPECT_NEAR(loss.total.item<double>(),
              supervised + 0.5 * loss.scalars[1].item<double>(), 1e-5);
  EXPECT_TRUE(loss.total.requires_grad());
}

TEST(FixMatchObjectiveTest, UnlabelledMixupAddsTheMixedRowsToTheUnlabelledTerm) {
  // Threshold 0: every image passes, so the unlabelled term is
  // PseudoLabelLoss under a mask of ones on the same forward by hand.
  auto [loss, logits] = StepAndForwardByHand(MixupOptions(true));
  ASSERT_TRUE(logits.logits_u_mixed.defined());
  at::Tensor probs = at::softmax(logits.logits_u_weak.to(at::kFloat), 1);
  at::Tensor ones = at::ones({8});
  const double unsupervised =
      PseudoLabelLoss(logits, logits.logits_u_strong, probs, ones, false)
          .item<double>();
  EXPECT_NEAR(loss.scalars[1].item<double>(), unsupervised, 1e-5);
  // Not the strong views' term alone.
  EXPECT_GT(std::abs(unsupervised -
                     PseudoLabelCrossEntropy(logits.logits_u_strong, probs,
                                             false)
                         .mean()
                         .item<double>()),
            1e-4);
  EXPECT_NEAR(loss.scalars[0].item<double>(),
              SupervisedLoss(logits).item<double>(), 1e-5);
  EXPECT_NEAR(loss.total.item<double>(),
              loss.scalars[0].item<double>() + 0.5 * unsupervised, 1e-5);
  EXPECT_TRUE(loss.total.requires_grad());
}

TEST(FixMatchObjectiveTest, GraphContrastAddsItsWeightedTermAndHead) {
  ToyContext toy = MakeToyContext();
  FixMatchOptions options;
  options.num_classes = 3;
  options.batch.batch_size = 4;
  options.batch.mu = 2;
  options.batch.contrast.weight = 0.5;
  // On without the embedding size: refused.
  EXPECT_THAT(FixMatchObjective::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument));
  options.batch.contrast.temperature = 0.0;
  EXPECT_THAT(FixMatchObjective::Create(options, at::kCPU,
                                        toy.model->embedding_dim(), 1),
              StatusIs(absl::StatusCode::kInvalidArgument));
  options.batch.contrast.temperature = 0.2;
  auto objective = FixMatchObjective::Create(options, at::kCPU,
                                             toy.model->embedding_dim(), 1);
  ASSERT_THAT(objective, IsOk());
  EXPECT_THAT((*objective)->metric_names(),
              ElementsAre("loss_x", "loss_u", "mask_rate", "loss_c",
                          "contrast_neighbours"));
  ASSERT_EQ((*objective)->trained_modules().size(), 1u);
  ObjectiveLoss loss = (*objective)->Loss(toy.context(), ToyStepData());
  ASSERT_EQ(loss.scalars.size(), 5u);
  const double loss_c = loss.scalars[3].item<double>();
  EXPECT_GT(loss_c, 0.0);
  // Every image is at least its own neighbour; at most all 8 are.
  EXPECT_GE(loss.scalars[4].item<double>(), 1.0);
  EXPECT_LE(loss.scalars[4].item<double>(), 8.0);
  EXPECT_NEAR(loss.total.item<double>(),
              loss.scalars[0].item<double>() + loss.scalars[1].item<double>() +
                  0.5 * loss_c,
              1e-5);
  loss.total.backward();
  for (const at::Tensor& p : (*objective)->trained_modules()[0]->parameters()) {
    EXPECT_TRUE(p.grad().defined());
  }
}

TEST(FixMatchObjectiveTest, DistributionAlignmentFollowsThePredictions) {
  for (bool aligned : {false, true}) {
    ToyContext toy = MakeToyContext();
    FixMatchOptions options;
    options.num_classes = 3;
    options.batch.batch_size = 4;
    options.batch.mu = 2;
    options.batch.distribution_alignment = aligned;
    options.batch.alignment_momentum = 0.0;
    auto objective = FixMatchObjective::Create(options);
    ASSERT_THAT(objective, IsOk());
    (*objective)->Loss(toy.context(), ToyStepData());
    const at::Tensor p_model =
        (*objective)->pseudo_labelling().alignment().p_model();
    EXPECT_NEAR(p_model.sum().item<double>(), 1.0, 1e-5);
    // With momentum 0, p_model is the batch's mean prediction: an untrained
    // network is not exactly uniform.
    EXPECT_EQ(at::allclose(p_model, at::full({3}, 1.0f / 3), 0.0, 1e-7),
              !aligned)
        << "aligned " << aligned;
  }
}

}  // namespace
}  // namespace trainer
