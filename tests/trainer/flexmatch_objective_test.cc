#include "trainer/objectives/flexmatch.h"

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
#include "trainer/learn/learner.h"
#include "trainer/learn/model.h"
#include "trainer/objectives/registry.h"

namespace trainer {
namespace {

using ::common::IsOk;
using ::common::StatusIs;
using ::testing::ElementsAre;

constexpr int64_t kPool = 64;

StepData ToyPool() { return ToyStepData(kPool); }

FlexMatchOptions ToyFlexMatch() {
  FlexMatchOptions options;
  options.batch.batch_size = 8;
  options.batch.mu = 4;
  options.num_classes = 2;
  options.threshold = 0.6;  // a toy model gets confident within a few steps
  return options;
}

// A learner training `objective`; `*raw` keeps a view of the objective.
std::unique_ptr<Learner> MakeLearner(uint64_t seed, FlexMatchObjective** raw) {
  return MakeToyLearner(
      FlexMatchObjective::Create(ToyFlexMatch(), kPool, at::kCPU), seed, raw);
}

TEST(FlexMatchObjectiveTest, CreateValidatesOptions) {
  EXPECT_THAT(FlexMatchObjective::Create(ToyFlexMatch(), kPool, at::kCPU),
              IsOk());
  FlexMatchOptions zero_mu = ToyFlexMatch();
  zero_mu.batch.mu = 0;
  EXPECT_THAT(FlexMatchObjective::Create(zero_mu, kPool, at::kCPU),
              StatusIs(absl::StatusCode::kInvalidArgument));
  for (double threshold : {0.0, -0.5, 1.5}) {
    FlexMatchOptions bad = ToyFlexMatch();
    bad.threshold = threshold;
    EXPECT_THAT(FlexMatchObjective::Create(bad, kPool, at::kCPU),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << threshold;
  }
  FlexMatchOptions one_class = ToyFlexMatch();
  one_class.num_classes = 1;
  EXPECT_THAT(FlexMatchObjective::Create(one_class, kPool, at::kCPU),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(FlexMatchObjective::Create(ToyFlexMatch(), 0, at::kCPU),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(FlexMatchObjectiveTest, GraphContrastAddsItsMetricsAndHead) {
  FlexMatchOptions options = ToyFlexMatch();
  options.batch.contrast.weight = 1.0;
  EXPECT_THAT(FlexMatchObjective::Create(options, kPool, at::kCPU),
              StatusIs(absl::StatusCode::kInvalidArgument));
  auto objective = FlexMatchObjective::Create(options, kPool, at::kCPU,
                                              /*embedding_dim=*/16, 0);
  ASSERT_THAT(objective, IsOk());
  EXPECT_THAT((*objective)->metric_names(),
              ElementsAre("loss_x", "loss_u", "mask_rate", "min_threshold",
                          "loss_c", "contrast_neighbours"));
  EXPECT_EQ((*objective)->trained_modules().size(), 1u);
  auto off = FlexMatchObjective::Create(ToyFlexMatch(), kPool, at::kCPU);
  ASSERT_THAT(off, IsOk());
  EXPECT_TRUE((*off)->trained_modules().empty());
}

TEST(FlexMatchObjectiveTest, RegisteredWithThePoolSizeOfItsEnvironment) {
  ObjectiveOptions options;
  options.name = "flexmatch";
  options.flexmatch = ToyFlexMatch();
  ObjectiveEnvironment environment;
  environment.pool_size = kPool;
  auto objective = MakeObjective(options, environment);
  ASSERT_THAT(objective, IsOk());
  EXPECT_EQ((*objective)->name(), "flexmatch");
  EXPECT_TRUE((*objective)->uses_labels());
  EXPECT_THAT((*objective)->metric_names(),
              ElementsAre("loss_x", "loss_u", "mask_rate", "min_threshold"));
  EXPECT_EQ(SemiSupervisedBatch(options), &options.flexmatch.batch);
  EXPECT_EQ(ThresholdDescription(options), "curriculum below 0.6, warm-up");
  environment.pool_size = 0;
  EXPECT_THAT(MakeObjective(options, environment),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(FlexMatchObjectiveTest, StepsRecordConfidentPredictionsOfThePool) {
  const StepData data = ToyPool();
  FlexMatchObjective* objective = nullptr;
  std::unique_ptr<Learner> learner = MakeLearner(3, &objective);
  ASSERT_NE(learner, nullptr);
  // No class learnt yet: every threshold is 0, so every sample passes.
  EXPECT_TRUE(at::equal(objective->thresholds().ClassThresholds(),
                        at::zeros({2})));
  for (int i = 0; i < 8; ++i) {
    auto stats = learner->Step(data);
    ASSERT_THAT(stats, IsOk());
    ASSERT_EQ(stats->scalars.size(), 4u);
    EXPECT_TRUE(std::isfinite(stats->loss.item<double>())) << "step " << i;
    const double mask_rate = stats->scalars[2].item<double>();
    EXPECT_GE(mask_rate, 0.0);
    EXPECT_LE(mask_rate, 1.0);
    // The reported minimum is the state's after this step.
    EXPECT_FLOAT_EQ(
        stats->scalars[3].item<float>(),
        objective->thresholds().ClassThresholds().min().item<float>());
  }
  // Confident predictions of pool images were recorded (labels 0 or 1, the
  // rest -1) and every threshold stays at or below the base threshold.
  const at::Tensor selected = objective->thresholds().selected_label();
  EXPECT_EQ(selected.size(0), kPool);
  EXPECT_GT((selected >= 0).sum().item<int64_t>(), 0);
  EXPECT_TRUE(((selected >= -1) & (selected <= 1)).all().item<bool>());
  EXPECT_TRUE(
      (objective->thresholds().ClassThresholds() <= 0.6f + 1e-6f)
          .all()
          .item<bool>());
}

TEST(FlexMatchObjectiveTest, UnlabelledMixupAddsTheMixedRowsToTheUnlabelledTerm) {
  // Before any class is learnt every threshold is 0 and every image passes,
  // so the first step's unlabelled term is PseudoLabelLoss under a mask of
  // ones on the same forward by hand (same weights, draws and data).
  FlexMatchOptions options = ToyFlexMatch();
  options.batch.mixup_alpha = 0.75;
  options.batch.mixup_unlabelled = true;
  struct FixedStep {
    Classifier model{nullptr};
    Classifier ema{nullptr};
    at::Generator generator = *MakeGenerator(at::kCPU, 5);
    FixedStep() {
      ModelOptions model_options = ToyModel();
      model_options.init_seed = 4;
      model = *MakeModel(model_options);
      ema = *MakeModel(model_options);
      model->train();
      ema->eval();
    }
    StepContext context() {
      return StepContext{model, ema, generator, /*channels_last=*/false};
    }
  };
  FixedStep step;
  auto objective = FlexMatchObjective::Create(options, kPool, at::kCPU);
  ASSERT_THAT(objective, IsOk());
  ObjectiveLoss loss = (*objective)->Loss(step.context(), ToyPool());
  EXPECT_FLOAT_EQ(loss.scalars[2].item<float>(), 1.0f);  // mask rate
  FixedStep again;
  SemiSupervisedLogits logits =
      SemiSupervisedForward(again.context(), ToyPool(), options.batch);
  ASSERT_TRUE(logits.logits_u_mixed.defined());
  at::Tensor probs = at::softmax(logits.logits_u_weak.to(at::kFloat), 1);
  at::Tensor ones = at::ones({probs.size(0)});
  EXPECT_NEAR(loss.scalars[1].item<double>(),
              PseudoLabelLoss(logits, logits.logits_u_strong, probs, ones,
                              false)
                  .item<double>(),
              1e-5);
}

TEST(FlexMatchObjectiveTest, RefusesAPoolOfAnotherSize) {
  StepData data = ToyPool();
  data.unlabelled_images = data.unlabelled_images.narrow(0, 0, kPool - 1);
  FlexMatchObjective* objective = nullptr;
  std::unique_ptr<Learner> learner = MakeLearner(3, &objective);
  ASSERT_NE(learner, nullptr);
  EXPECT_FALSE(learner->Step(data).ok());
}

TEST(FlexMatchObjectiveTest, SaveLoadKeepsTheCurriculum) {
  const StepData data = ToyPool();
  FlexMatchObjective* trained = nullptr;
  std::unique_ptr<Learner> a = MakeLearner(5, &trained);
  ASSERT_NE(a, nullptr);
  for (int i = 0; i < 4; ++i) ASSERT_THAT(a->Step(data), IsOk());
  ASSERT_GT((trained->thresholds().selected_label() >= 0).sum().item<int64_t>(),
            0);
  const std::string path = testing::TempDir() + "/flexmatch_roundtrip.pt";
  ASSERT_THAT(a->Save(path), IsOk());

  FlexMatchObjective* restored = nullptr;
  std::unique_ptr<Learner> b = MakeLearner(6, &restored);
  ASSERT_NE(b, nullptr);
  const at::Tensor beta_storage = restored->thresholds().beta();
  ASSERT_THAT(b->Load(path), IsOk());
  EXPECT_TRUE(at::equal(restored->thresholds().selected_label(),
                        trained->thresholds().selected_label()));
  EXPECT_TRUE(
      at::equal(restored->thresholds().beta(), trained->thresholds().beta()));
  // Restored in place (a captured CUDA graph keeps reading the same tensor).
  EXPECT_TRUE(restored->thresholds().beta().is_same(beta_storage));
  auto sa = a->Step(data);
  auto sb = b->Step(data);
  ASSERT_THAT(sa, IsOk());
  ASSERT_THAT(sb, IsOk());
  EXPECT_TRUE(at::equal(sa->loss, sb->loss));
}

}  // namespace
}  // namespace trainer
