#include "trainer/objectives/freematch.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <tuple>
#include <utility>

#include "common/status_matchers.h"
#include "tests/trainer/toy_learner.h"
#include "trainer/learn/augment.h"
#include "trainer/learn/learner.h"
#include "trainer/learn/model.h"
#include "trainer/objectives/registry.h"

namespace trainer {
namespace {

using ::common::IsOk;
using ::common::StatusIs;
using ::testing::ElementsAre;

StepData ToyPool() { return ToyStepData(); }

FreeMatchOptions ToyFreeMatch() {
  FreeMatchOptions options;
  options.batch.batch_size = 8;
  options.batch.mu = 2;
  options.num_classes = 2;
  options.ema_momentum = 0.9;  // thresholds move visibly in a few steps
  return options;
}

// A learner training `objective`; `*raw` keeps a view of the objective.
std::unique_ptr<Learner> MakeLearner(uint64_t seed, FreeMatchObjective** raw) {
  return MakeToyLearner(FreeMatchObjective::Create(ToyFreeMatch(), at::kCPU),
                        seed, raw);
}

TEST(FreeMatchObjectiveTest, CreateValidatesOptions) {
  EXPECT_THAT(FreeMatchObjective::Create(ToyFreeMatch(), at::kCPU), IsOk());
  FreeMatchOptions zero_batch = ToyFreeMatch();
  zero_batch.batch.batch_size = 0;
  EXPECT_THAT(FreeMatchObjective::Create(zero_batch, at::kCPU),
              StatusIs(absl::StatusCode::kInvalidArgument));
  FreeMatchOptions momentum_one = ToyFreeMatch();
  momentum_one.ema_momentum = 1.0;
  EXPECT_THAT(FreeMatchObjective::Create(momentum_one, at::kCPU),
              StatusIs(absl::StatusCode::kInvalidArgument));
  FreeMatchOptions negative_lambda = ToyFreeMatch();
  negative_lambda.lambda_f = -0.1;
  EXPECT_THAT(FreeMatchObjective::Create(negative_lambda, at::kCPU),
              StatusIs(absl::StatusCode::kInvalidArgument));
  FreeMatchOptions one_class = ToyFreeMatch();
  one_class.num_classes = 1;
  EXPECT_THAT(FreeMatchObjective::Create(one_class, at::kCPU),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(FreeMatchObjectiveTest, NameLabelsAndMetricNames) {
  auto objective = FreeMatchObjective::Create(ToyFreeMatch(), at::kCPU);
  ASSERT_THAT(objective, IsOk());
  EXPECT_EQ((*objective)->name(), "freematch");
  EXPECT_TRUE((*objective)->uses_labels());
  EXPECT_THAT((*objective)->metric_names(),
              ElementsAre("loss_x", "loss_u", "mask_rate", "loss_f", "tau"));
  // Thresholds start at 1/C.
  EXPECT_FLOAT_EQ((*objective)->thresholds().tau().item<float>(), 0.5f);
}

TEST(FreeMatchObjectiveTest, ReportsItsThresholdMomentum) {
  ObjectiveOptions options;
  options.name = "freematch";
  options.freematch = ToyFreeMatch();
  EXPECT_EQ(ThresholdDescription(options), "self-adaptive, momentum 0.9");
  options.freematch.ema_momentum = 0.999;
  EXPECT_EQ(ThresholdDescription(options), "self-adaptive, momentum 0.999");
}

TEST(FreeMatchObjectiveTest, StepsThroughALearnerMoveTheThresholds) {
  const StepData data = ToyPool();
  FreeMatchObjective* objective = nullptr;
  std::unique_ptr<Learner> learner = MakeLearner(3, &objective);
  ASSERT_NE(learner, nullptr);
  float previous_tau = 0.5f;
  for (int i = 0; i < 5; ++i) {
    auto stats = learner->Step(data);
    ASSERT_THAT(stats, IsOk());
    ASSERT_EQ(stats->scalars.size(), 5u);
    EXPECT_TRUE(std::isfinite(stats->loss.item<double>())) << "step " << i;
    for (const auto& scalar : stats->scalars) {
      EXPECT_TRUE(std::isfinite(scalar.item<double>())) << "step " << i;
    }
    const double mask_rate = stats->scalars[2].item<double>();
    EXPECT_GE(mask_rate, 0.0);
    EXPECT_LE(mask_rate, 1.0);
    EXPECT_LE(stats->scalars[3].item<double>(), 0.0);  // loss_f <= 0
    // The reported tau is the state after this step's update.
    const float tau = stats->scalars[4].item<float>();
    EXPECT_FLOAT_EQ(tau, objective->thresholds().tau().item<float>());
    EXPECT_NE(tau, previous_tau) << "step " << i;
    previous_tau = tau;
  }
  // Mean max probability of 2 classes is > 1/2: tau rises from its start.
  EXPECT_GT(objective->thresholds().tau().item<float>(), 0.5f);
  EXPECT_FLOAT_EQ(objective->thresholds().p_model().sum().item<float>(), 1.0f);
}

TEST(FreeMatchObjectiveTest, GraphContrastTrainsItsHeadThroughALearner) {
  const StepData data = ToyPool();
  FreeMatchOptions options = ToyFreeMatch();
  options.batch.contrast.weight = 1.0;
  auto objective = FreeMatchObjective::Create(options, at::kCPU,
                                              /*embedding_dim=*/16, 2);
  ASSERT_THAT(objective, IsOk());
  EXPECT_THAT((*objective)->metric_names(),
              ElementsAre("loss_x", "loss_u", "mask_rate", "loss_f", "tau",
                          "loss_c", "contrast_neighbours"));
  ASSERT_EQ((*objective)->trained_modules().size(), 1u);
  torch::nn::Module* head = (*objective)->trained_modules()[0];
  const at::Tensor before = head->parameters()[0].detach().clone();
  LearnerOptions learner_options;
  learner_options.total_steps = 10;
  auto learner = Learner::Create(ToyModel(), learner_options,
                                 *std::move(objective), at::kCPU);
  ASSERT_THAT(learner, IsOk());
  for (int i = 0; i < 3; ++i) {
    auto stats = (*learner)->Step(data);
    ASSERT_THAT(stats, IsOk());
    ASSERT_EQ(stats->scalars.size(), 7u);
    EXPECT_TRUE(std::isfinite(stats->scalars[5].item<double>()));
    EXPECT_GT(stats->scalars[5].item<double>(), 0.0);
  }
  // The learner's optimiser moves the head's weights.
  EXPECT_FALSE(at::equal(head->parameters()[0], before));

  // The head is in the checkpoint: another learner loads it back.
  const std::string path = testing::TempDir() + "/freematch_contrast.pt";
  ASSERT_THAT((*learner)->Save(path), IsOk());
  auto other = FreeMatchObjective::Create(options, at::kCPU, 16, /*seed=*/9);
  ASSERT_THAT(other, IsOk());
  torch::nn::Module* other_head = (*other)->trained_modules()[0];
  ASSERT_FALSE(at::equal(other_head->parameters()[0], head->parameters()[0]));
  auto restored = Learner::Create(ToyModel(), learner_options,
                                  *std::move(other), at::kCPU);
  ASSERT_THAT(restored, IsOk());
  ASSERT_THAT((*restored)->Load(path), IsOk());
  EXPECT_TRUE(at::equal(other_head->parameters()[0], head->parameters()[0]));
}

// The classifier's gradient of one FreeMatch step on fixed weights, draws
// and data; one of the first convolution's; the step's labelled and
// unlabelled losses. The model in training mode, or with `train` false in
// eval mode (each row's logits its own image's).
struct StepGradients {
  at::Tensor classifier;
  at::Tensor conv;
  double loss_x = 0.0;
  double loss_u = 0.0;
};
StepGradients OneStepGradients(const FreeMatchOptions& options,
                               bool train = true) {
  ModelOptions model_options = ToyModel();
  model_options.init_seed = 4;
  Classifier model = *MakeModel(model_options);
  Classifier ema = *MakeModel(model_options);
  model->train(train);
  ema->eval();
  at::Generator generator = *MakeGenerator(at::kCPU, 5);
  StepContext context{model, ema, generator, /*channels_last=*/false};
  auto objective = FreeMatchObjective::Create(
      options, at::kCPU, model->embedding_dim(), /*seed=*/3);
  EXPECT_THAT(objective, IsOk());
  if (!objective.ok()) return {};
  ObjectiveLoss loss = (*objective)->Loss(context, ToyPool());
  loss.total.backward();
  StepGradients out;
  out.loss_x = loss.scalars[0].item<double>();
  out.loss_u = loss.scalars[1].item<double>();
  for (const auto& named : model->named_parameters()) {
    if (named.key() == "classifier.weight") {
      out.classifier = named.value().grad();
    }
    if (!out.conv.defined() && named.key().find("conv") != std::string::npos) {
      out.conv = named.value().grad();
    }
  }
  return out;
}

TEST(FreeMatchObjectiveTest, PseudoHeadLeavesTheClassifierToTheLabels) {
  // With DST's pseudo head the unlabelled loss and the fairness term train
  // the head and the backbone: the classifier's gradient is the labelled
  // loss's alone, the same with lambda_u 1 as with 0, while the backbone's
  // changes. Without the head the unlabelled loss reaches the classifier.
  FreeMatchOptions options = ToyFreeMatch();
  for (bool head : {true, false}) {
    options.batch.pseudo_head = head;
    options.batch.lambda_u = 0.0;
    const StepGradients labels_only = OneStepGradients(options);
    options.batch.lambda_u = 1.0;
    const StepGradients both = OneStepGradients(options);
    ASSERT_TRUE(labels_only.classifier.defined() && both.classifier.defined());
    ASSERT_TRUE(labels_only.conv.defined() && both.conv.defined());
    EXPECT_EQ(at::allclose(labels_only.classifier, both.classifier,
                           /*rtol=*/1e-5, /*atol=*/1e-7),
              head)
        << "pseudo head " << head;
    EXPECT_FALSE(at::allclose(labels_only.conv, both.conv)) << head;
  }
}

TEST(FreeMatchObjectiveTest, SoftTargetsTrainTowardsTheDistribution) {
  // The same step with hard and with soft targets: the unlabelled loss
  // differs (soft targets keep the other classes' share of each
  // distribution), so the objective passes the option on.
  FreeMatchOptions options = ToyFreeMatch();
  const double hard = OneStepGradients(options).loss_u;
  options.batch.soft_targets = true;
  const double soft = OneStepGradients(options).loss_u;
  EXPECT_GT(hard, 0.0);
  EXPECT_GT(soft, 0.0);
  EXPECT_GT(std::abs(hard - soft), 1e-6);
}

TEST(FreeMatchObjectiveTest, UnlabelledMixupReachesTheUnlabelledTerm) {
  // The same step in eval mode with labelled mixup alone and with the
  // unlabelled batch mixed too: every other row is the same, and so are the
  // pseudo-labels, the masks and the labelled term; the unlabelled term
  // changes only because its mean now runs over the mixed rows as well: the
  // objective uses PseudoLabelLoss.
  FreeMatchOptions options = ToyFreeMatch();
  options.batch.mixup_alpha = 0.75;
  const StepGradients labelled_only = OneStepGradients(options, false);
  options.batch.mixup_unlabelled = true;
  const StepGradients both = OneStepGradients(options, false);
  EXPECT_NEAR(labelled_only.loss_x, both.loss_x, 1e-6);
  EXPECT_GT(labelled_only.loss_u, 0.0);
  EXPECT_GT(both.loss_u, 0.0);
  EXPECT_GT(std::abs(labelled_only.loss_u - both.loss_u), 1e-6);
  // Without mixup_alpha there is nothing to draw the shares from.
  options.batch.mixup_alpha = 0.0;
  EXPECT_THAT(FreeMatchObjective::Create(options, at::kCPU),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(FreeMatchObjectiveTest, SaveLoadKeepsThresholds) {
  const StepData data = ToyPool();
  FreeMatchObjective* trained = nullptr;
  std::unique_ptr<Learner> a = MakeLearner(5, &trained);
  ASSERT_NE(a, nullptr);
  for (int i = 0; i < 3; ++i) ASSERT_THAT(a->Step(data), IsOk());
  const std::string path = testing::TempDir() + "/freematch_roundtrip.pt";
  ASSERT_THAT(a->Save(path), IsOk());

  FreeMatchObjective* restored = nullptr;
  std::unique_ptr<Learner> b = MakeLearner(6, &restored);
  ASSERT_NE(b, nullptr);
  ASSERT_FALSE(
      at::equal(restored->thresholds().tau(), trained->thresholds().tau()));
  const at::Tensor tau_storage = restored->thresholds().tau();
  ASSERT_THAT(b->Load(path), IsOk());
  EXPECT_TRUE(
      at::equal(restored->thresholds().tau(), trained->thresholds().tau()));
  EXPECT_TRUE(at::equal(restored->thresholds().p_model(),
                        trained->thresholds().p_model()));
  EXPECT_TRUE(at::equal(restored->thresholds().label_hist(),
                        trained->thresholds().label_hist()));
  // Restored in place (a captured CUDA graph keeps reading the same tensor).
  EXPECT_TRUE(restored->thresholds().tau().is_same(tau_storage));
  // Both continue identically.
  auto sa = a->Step(data);
  auto sb = b->Step(data);
  ASSERT_THAT(sa, IsOk());
  ASSERT_THAT(sb, IsOk());
  EXPECT_TRUE(at::equal(sa->loss, sb->loss));
  EXPECT_TRUE(at::equal(sa->scalars[4], sb->scalars[4]));
}

}  // namespace
}  // namespace trainer
