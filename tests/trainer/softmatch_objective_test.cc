#include "trainer/objectives/softmatch.h"

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
using ::testing::HasSubstr;

StepData ToyPool() { return ToyStepData(); }

SoftMatchOptions ToySoftMatch() {
  SoftMatchOptions options;
  options.batch.batch_size = 8;
  options.batch.mu = 2;
  options.num_classes = 2;
  options.ema_momentum = 0.9;  // the state moves visibly in a few steps
  return options;
}

// A learner training SoftMatch with `soft`; `*raw` keeps a view of it.
std::unique_ptr<Learner> MakeLearner(const SoftMatchOptions& soft,
                                     uint64_t seed, SoftMatchObjective** raw) {
  return MakeToyLearner(SoftMatchObjective::Create(soft, at::kCPU), seed, raw);
}

// One step's loss from a fixed model (in training mode, or with `train`
// false in eval mode), generator and data.
ObjectiveLoss OneStep(const SoftMatchOptions& options, bool train = true) {
  ModelOptions model_options = ToyModel();
  model_options.init_seed = 4;
  Classifier model = *MakeModel(model_options);
  Classifier ema = *MakeModel(model_options);
  model->train(train);
  ema->eval();
  at::Generator generator = *MakeGenerator(at::kCPU, 5);
  StepContext context{model, ema, generator, /*channels_last=*/false};
  auto objective = SoftMatchObjective::Create(options, at::kCPU);
  EXPECT_THAT(objective, IsOk());
  if (!objective.ok()) return {};
  return (*objective)->Loss(context, ToyPool());
}

TEST(SoftMatchObjectiveTest, CreateValidatesOptions) {
  EXPECT_THAT(SoftMatchObjective::Create(ToySoftMatch(), at::kCPU), IsOk());
  SoftMatchOptions zero_batch = ToySoftMatch();
  zero_batch.batch.batch_size = 0;
  EXPECT_THAT(SoftMatchObjective::Create(zero_batch, at::kCPU),
              StatusIs(absl::StatusCode::kInvalidArgument));
  SoftMatchOptions momentum_one = ToySoftMatch();
  momentum_one.ema_momentum = 1.0;
  EXPECT_THAT(SoftMatchObjective::Create(momentum_one, at::kCPU),
              StatusIs(absl::StatusCode::kInvalidArgument));
  SoftMatchOptions no_sigma = ToySoftMatch();
  no_sigma.n_sigma = 0.0;
  EXPECT_THAT(
      SoftMatchObjective::Create(no_sigma, at::kCPU),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("n_sigma")));
  SoftMatchOptions one_class = ToySoftMatch();
  one_class.num_classes = 1;
  EXPECT_THAT(SoftMatchObjective::Create(one_class, at::kCPU),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(SoftMatchObjectiveTest, RegisteredWithNameMetricsAndDescription) {
  ObjectiveOptions options;
  options.name = "softmatch";
  options.softmatch = ToySoftMatch();
  ObjectiveEnvironment environment;
  auto objective = MakeObjective(options, environment);
  ASSERT_THAT(objective, IsOk());
  EXPECT_EQ((*objective)->name(), "softmatch");
  EXPECT_TRUE((*objective)->uses_labels());
  EXPECT_THAT((*objective)->metric_names(),
              ElementsAre("loss_x", "loss_u", "mask_rate", "weight_mu"));
  EXPECT_EQ(SemiSupervisedBatch(options), &options.softmatch.batch);
  EXPECT_EQ(ThresholdDescription(options),
            "soft (truncated Gaussian, 2 sigma, momentum 0.9, uniform "
            "alignment)");
  options.softmatch.uniform_alignment = false;
  EXPECT_EQ(ThresholdDescription(options),
            "soft (truncated Gaussian, 2 sigma, momentum 0.9)");
}

TEST(SoftMatchObjectiveTest, StepsThroughALearnerMoveTheWeights) {
  const StepData data = ToyPool();
  SoftMatchObjective* objective = nullptr;
  std::unique_ptr<Learner> learner = MakeLearner(ToySoftMatch(), 3, &objective);
  ASSERT_NE(learner, nullptr);
  float previous_mu = 0.5f;
  for (int i = 0; i < 5; ++i) {
    auto stats = learner->Step(data);
    ASSERT_THAT(stats, IsOk());
    ASSERT_EQ(stats->scalars.size(), 4u);
    EXPECT_TRUE(std::isfinite(stats->loss.item<double>())) << "step " << i;
    const double mean_weight = stats->scalars[2].item<double>();
    EXPECT_GT(mean_weight, 0.0);
    EXPECT_LE(mean_weight, 1.0);
    // The reported mean is the state after this step's update.
    const float mu = stats->scalars[3].item<float>();
    EXPECT_FLOAT_EQ(mu, objective->weights().mu().item<float>());
    EXPECT_NE(mu, previous_mu) << "step " << i;
    previous_mu = mu;
  }
  // Mean max probability of 2 classes is > 1/2; the variance falls from 1.
  EXPECT_GT(objective->weights().mu().item<float>(), 0.5f);
  EXPECT_LT(objective->weights().var().item<float>(), 1.0f);
  EXPECT_FLOAT_EQ(objective->uniform_alignment().p_model().sum().item<float>(),
                  1.0f);
}

TEST(SoftMatchObjectiveTest, NothingIsDroppedWhileTheVarianceStartsWide) {
  // At the first step the Gaussian is wide (variance ~1): every image keeps
  // nearly its full weight, where a hard threshold of 0.95 would drop the
  // untrained model's unsure images. The unlabelled loss is therefore close
  // to the plain mean cross-entropy against the pseudo-labels.
  ObjectiveLoss loss = OneStep(ToySoftMatch());
  ASSERT_EQ(loss.scalars.size(), 4u);
  EXPECT_GT(loss.scalars[2].item<double>(), 0.95);
  EXPECT_GT(loss.scalars[1].item<double>(), 0.0);
}

TEST(SoftMatchObjectiveTest, UniformAlignmentChangesTheWeightsNotTheTargets) {
  // With a vanishing n_sigma the Gaussian is so wide that every weight is 1:
  // the unlabelled loss is then the plain cross-entropy against the targets,
  // and equal with and without alignment only if alignment leaves the
  // targets alone. The weights' mean confidence (momentum 0: this batch's)
  // reads the aligned probabilities, so it differs.
  SoftMatchOptions aligned = ToySoftMatch();
  aligned.ema_momentum = 0.0;
  aligned.n_sigma = 1e-6;
  SoftMatchOptions plain = aligned;
  plain.uniform_alignment = false;
  const ObjectiveLoss a = OneStep(aligned);
  const ObjectiveLoss p = OneStep(plain);
  ASSERT_EQ(a.scalars.size(), 4u);
  ASSERT_EQ(p.scalars.size(), 4u);
  EXPECT_DOUBLE_EQ(a.scalars[2].item<double>(), 1.0);
  EXPECT_DOUBLE_EQ(p.scalars[2].item<double>(), 1.0);
  EXPECT_TRUE(at::equal(a.scalars[0], p.scalars[0]));
  EXPECT_TRUE(at::equal(a.scalars[1], p.scalars[1]))
      << "alignment changed the pseudo-labels";
  EXPECT_FALSE(at::allclose(a.scalars[3], p.scalars[3]))
      << "the weights' mean confidence ignores the alignment";
}

TEST(SoftMatchObjectiveTest, UnlabelledMixupReachesTheUnlabelledTerm) {
  // The same step in eval mode with labelled mixup alone and with the
  // unlabelled batch mixed too: every other row and so the weights and the
  // labelled term are the same, and the weighted unlabelled term changes
  // only because its mean runs over the mixed rows as well: the objective
  // uses PseudoLabelLoss.
  SoftMatchOptions options = ToySoftMatch();
  options.batch.mixup_alpha = 0.75;
  const ObjectiveLoss first = OneStep(options, false);
  options.batch.mixup_unlabelled = true;
  const ObjectiveLoss second = OneStep(options, false);
  EXPECT_NEAR(first.scalars[0].item<double>(), second.scalars[0].item<double>(),
              1e-6);
  const double labelled_only = first.scalars[1].item<double>();
  const double both = second.scalars[1].item<double>();
  EXPECT_GT(labelled_only, 0.0);
  EXPECT_GT(both, 0.0);
  EXPECT_GT(std::abs(labelled_only - both), 1e-6);
}

TEST(SoftMatchObjectiveTest, SaveLoadKeepsTheWeightsState) {
  const StepData data = ToyPool();
  SoftMatchObjective* trained = nullptr;
  std::unique_ptr<Learner> a = MakeLearner(ToySoftMatch(), 5, &trained);
  ASSERT_NE(a, nullptr);
  for (int i = 0; i < 3; ++i) ASSERT_THAT(a->Step(data), IsOk());
  const std::string path = testing::TempDir() + "/softmatch_roundtrip.pt";
  ASSERT_THAT(a->Save(path), IsOk());

  SoftMatchObjective* restored = nullptr;
  std::unique_ptr<Learner> b = MakeLearner(ToySoftMatch(), 6, &restored);
  ASSERT_NE(b, nullptr);
  ASSERT_FALSE(at::equal(restored->weights().mu(), trained->weights().mu()));
  ASSERT_THAT(b->Load(path), IsOk());
  EXPECT_TRUE(at::equal(restored->weights().mu(), trained->weights().mu()));
  EXPECT_TRUE(at::equal(restored->weights().var(), trained->weights().var()));
  EXPECT_TRUE(at::equal(restored->uniform_alignment().p_model(),
                        trained->uniform_alignment().p_model()));
  auto sa = a->Step(data);
  auto sb = b->Step(data);
  ASSERT_THAT(sa, IsOk());
  ASSERT_THAT(sb, IsOk());
  EXPECT_TRUE(at::equal(sa->loss, sb->loss));
}

}  // namespace
}  // namespace trainer
