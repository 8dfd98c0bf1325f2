#include "trainer/learn/learner.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/serialize/output-archive.h>

#include <cmath>
#include <fstream>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "common/status_matchers.h"
#include "tests/trainer/two_halves_images.h"
#include "trainer/learn/augment.h"
#include "trainer/learn/model.h"
#include "trainer/objectives/fixmatch.h"
#include "trainer/objectives/simclr.h"

namespace trainer {
namespace {

using ::common::IsOk;
using ::common::StatusIs;
using ::testing::HasSubstr;

TEST(CosineLearningRateTest, FollowsSevenSixteenthsCosine) {
  const double pi = std::acos(-1.0);
  EXPECT_DOUBLE_EQ(CosineLearningRate(0.03, 0, 1000), 0.03);
  EXPECT_NEAR(CosineLearningRate(0.03, 500, 1000), 0.03 * std::cos(7 * pi / 32),
              1e-12);
  EXPECT_NEAR(CosineLearningRate(0.03, 1000, 1000),
              0.03 * std::cos(7 * pi / 16), 1e-12);
  EXPECT_DOUBLE_EQ(CosineLearningRate(0.03, 5000, 1000),
                   CosineLearningRate(0.03, 1000, 1000));
  EXPECT_DOUBLE_EQ(CosineLearningRate(0.03, -5, 1000), 0.03);
}

TEST(CosineLearningRateTest, HalfSpanDecaysToZero) {
  const double pi = std::acos(-1.0);
  EXPECT_DOUBLE_EQ(CosineLearningRate(0.1, 0, 200, 0.5), 0.1);
  EXPECT_NEAR(CosineLearningRate(0.1, 100, 200, 0.5), 0.1 * std::cos(pi / 4),
              1e-12);
  EXPECT_NEAR(CosineLearningRate(0.1, 200, 200, 0.5), 0.0, 1e-12);
}

TEST(UpdateEmaTest, AveragesParametersAndCopiesBuffers) {
  ModelOptions options;
  options.width = 2;
  options.init_seed = 1;
  auto model = MakeModel(options);
  options.init_seed = 2;
  auto ema = MakeModel(options);
  ASSERT_THAT(model, IsOk());
  ASSERT_THAT(ema, IsOk());
  // Move the model's BN statistics away from their initial values.
  (*model)->train();
  (*model)->forward(at::rand({4, 1, 28, 28}));
  std::vector<at::Tensor> before;
  for (const auto& p : (*ema)->parameters()) before.push_back(p.clone());
  UpdateEma(**ema, **model, 0.9);
  auto ema_params = (*ema)->parameters();
  auto params = (*model)->parameters();
  ASSERT_EQ(ema_params.size(), params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_TRUE(at::allclose(ema_params[i], 0.9 * before[i] + 0.1 * params[i],
                             1e-6, 1e-7))
        << "parameter " << i;
  }
  auto ema_buffers = (*ema)->buffers();
  auto buffers = (*model)->buffers();
  ASSERT_EQ(ema_buffers.size(), buffers.size());
  for (size_t i = 0; i < buffers.size(); ++i) {
    EXPECT_TRUE(at::equal(ema_buffers[i], buffers[i])) << "buffer " << i;
  }
  // decay 0 copies exactly.
  UpdateEma(**ema, **model, 0.0);
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_TRUE(at::equal(ema_params[i], params[i]));
  }
}

TEST(UpdateEmaTest, MismatchedModelsThrow) {
  ModelOptions narrow;
  narrow.width = 2;
  ModelOptions wrn;
  wrn.arch = "wrn28_2";
  auto a = MakeModel(narrow);
  auto b = MakeModel(wrn);
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  EXPECT_THROW(UpdateEma(**a, **b, 0.5), c10::Error);
}

// Two-halves toy images (two_halves_images.h).
struct ToyData {
  at::Tensor labelled, targets, unlabelled, test, test_targets;

  StepData step_data() const { return StepData{labelled, targets, unlabelled}; }
};

ToyData MakeToyData() {
  at::Generator gen = *MakeGenerator(at::kCPU, 123);
  auto make = [&gen](int64_t n) { return MakeTwoHalvesImages(n, gen); };
  ToyData data;
  std::tie(data.labelled, data.targets) = make(16);
  data.unlabelled = make(64).first;
  std::tie(data.test, data.test_targets) = make(64);
  return data;
}

ModelOptions ToyModel() {
  ModelOptions options;
  options.width = 4;
  options.num_classes = 2;
  return options;
}

LearnerOptions ToyLearner(uint64_t seed) {
  LearnerOptions options;
  options.total_steps = 100;
  options.seed = seed;
  options.predict_batch_size = 40;  // exercises chunking
  return options;
}

FixMatchOptions ToyFixMatch() {
  FixMatchOptions options;
  options.batch.batch_size = 8;
  options.batch.mu = 2;
  return options;
}

absl::StatusOr<std::unique_ptr<Learner>> MakeFixMatchLearner(
    const LearnerOptions& options,
    const FixMatchOptions& fixmatch = ToyFixMatch(),
    const ModelOptions& model = ToyModel()) {
  auto objective = FixMatchObjective::Create(fixmatch);
  if (!objective.ok()) return objective.status();
  return Learner::Create(model, options, *std::move(objective), at::kCPU);
}

absl::StatusOr<std::unique_ptr<Learner>> MakeSimClrLearner(
    const LearnerOptions& options, const ModelOptions& model = ToyModel()) {
  SimClrOptions simclr;
  simclr.batch_size = 8;
  simclr.projection_dim = 8;
  auto classifier = MakeModel(model);
  if (!classifier.ok()) return classifier.status();
  auto objective = SimClrObjective::Create(
      simclr, (*classifier)->embedding_dim(), at::kCPU, options.seed);
  if (!objective.ok()) return objective.status();
  return Learner::Create(model, options, *std::move(objective), at::kCPU);
}

std::vector<at::Tensor> Clone(const std::vector<at::Tensor>& tensors) {
  std::vector<at::Tensor> copies;
  for (const auto& t : tensors) copies.push_back(t.detach().clone());
  return copies;
}

bool AllEqual(const std::vector<at::Tensor>& a,
              const std::vector<at::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!at::equal(a[i], b[i])) return false;
  }
  return true;
}

TEST(LearnerTest, CreateRejectsBadOptions) {
  EXPECT_THAT(Learner::Create(ToyModel(), ToyLearner(1), nullptr, at::kCPU),
              StatusIs(absl::StatusCode::kInvalidArgument));
  LearnerOptions zero_steps = ToyLearner(1);
  zero_steps.total_steps = 0;
  EXPECT_THAT(MakeFixMatchLearner(zero_steps),
              StatusIs(absl::StatusCode::kInvalidArgument));
  LearnerOptions zero_predict_batch = ToyLearner(1);
  zero_predict_batch.predict_batch_size = 0;
  EXPECT_THAT(MakeFixMatchLearner(zero_predict_batch),
              StatusIs(absl::StatusCode::kInvalidArgument));
  LearnerOptions bad_decay = ToyLearner(1);
  bad_decay.ema_decay = 1.5;
  EXPECT_THAT(MakeFixMatchLearner(bad_decay),
              StatusIs(absl::StatusCode::kInvalidArgument));
  LearnerOptions nesterov_without_momentum = ToyLearner(1);
  nesterov_without_momentum.momentum = 0.0;
  EXPECT_THAT(MakeFixMatchLearner(nesterov_without_momentum),
              StatusIs(absl::StatusCode::kInvalidArgument));
  LearnerOptions negative_lr = ToyLearner(1);
  negative_lr.lr = -0.1;
  EXPECT_THAT(MakeFixMatchLearner(negative_lr),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ModelOptions bad_arch = ToyModel();
  bad_arch.arch = "mlp";
  EXPECT_THAT(MakeFixMatchLearner(ToyLearner(1), ToyFixMatch(), bad_arch),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(LearnerTest, EmaStartsEqualToModel) {
  auto learner = MakeFixMatchLearner(ToyLearner(1));
  ASSERT_THAT(learner, IsOk());
  EXPECT_TRUE(AllEqual((*learner)->model()->parameters(),
                       (*learner)->ema_model()->parameters()));
  EXPECT_TRUE((*learner)->model()->is_training());
  EXPECT_FALSE((*learner)->ema_model()->is_training());
  EXPECT_EQ((*learner)->step(), 0);
  EXPECT_EQ((*learner)->objective().name(), "fixmatch");
  EXPECT_DOUBLE_EQ((*learner)->next_lr(), 0.03);
}

TEST(LearnerTest, CudaGraphIsIgnoredOnCpu) {
  ToyData data = MakeToyData();
  LearnerOptions options = ToyLearner(1);
  options.cuda_graph = true;
  auto learner = MakeFixMatchLearner(options);
  ASSERT_THAT(learner, IsOk());
  EXPECT_THAT((*learner)->Step(data.step_data()), IsOk());
}

TEST(LearnerTest, StepChangesWeightsAndAveragesEma) {
  ToyData data = MakeToyData();
  LearnerOptions options = ToyLearner(2);
  options.ema_decay = 0.75;
  auto learner = MakeFixMatchLearner(options);
  ASSERT_THAT(learner, IsOk());
  const std::vector<at::Tensor> initial =
      Clone((*learner)->model()->parameters());
  auto stats = (*learner)->Step(data.step_data());
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->step, 1);
  EXPECT_DOUBLE_EQ(stats->lr, 0.03);
  ASSERT_EQ(stats->scalars.size(), 3u);
  EXPECT_FALSE(stats->loss.requires_grad());

  const auto params = (*learner)->model()->parameters();
  const auto ema_params = (*learner)->ema_model()->parameters();
  ASSERT_EQ(params.size(), initial.size());
  int changed = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    if (!at::equal(params[i], initial[i])) ++changed;
    EXPECT_TRUE(at::allclose(ema_params[i],
                             0.75 * initial[i] + 0.25 * params[i], 1e-5, 1e-6))
        << "parameter " << i;
  }
  EXPECT_EQ(changed, static_cast<int>(params.size()));
  // BN statistics are copied, not averaged.
  EXPECT_TRUE(AllEqual((*learner)->model()->buffers(),
                       (*learner)->ema_model()->buffers()));
  EXPECT_FALSE(AllEqual((*learner)->model()->parameters(),
                        (*learner)->ema_model()->parameters()));
}

// USB's and FixMatch's practice: weight decay on the convolution and
// linear weights only, none on batch norm's scale and shift or on biases.
// Two learners with the same seed see the same draws and gradients in
// their first step, so their weights differ by the decay alone: with
// momentum 0.9, Nesterov and an empty momentum buffer the step is
// -lr * 1.9 * (g + wd * w), a difference of -lr * 1.9 * wd * w.
TEST(LearnerTest, WeightDecayOnlyOnWeightMatrices) {
  ToyData data = MakeToyData();
  LearnerOptions options = ToyLearner(3);
  options.weight_decay = 0.1;
  LearnerOptions no_decay = options;
  no_decay.weight_decay = 0.0;
  auto decayed = MakeFixMatchLearner(options);
  auto plain = MakeFixMatchLearner(no_decay);
  ASSERT_THAT(decayed, IsOk());
  ASSERT_THAT(plain, IsOk());
  const std::vector<at::Tensor> initial =
      Clone((*decayed)->model()->parameters());
  ASSERT_THAT((*decayed)->Step(data.step_data()), IsOk());
  ASSERT_THAT((*plain)->Step(data.step_data()), IsOk());
  const auto with = (*decayed)->model()->parameters();
  const auto without = (*plain)->model()->parameters();
  ASSERT_EQ(with.size(), initial.size());
  int matrices = 0, vectors = 0;
  for (size_t i = 0; i < initial.size(); ++i) {
    if (initial[i].dim() > 1) {
      ++matrices;
      EXPECT_TRUE(at::allclose(with[i] - without[i],
                               -options.lr * 1.9 * 0.1 * initial[i], 1e-4,
                               1e-6))
          << "parameter " << i << " of shape " << initial[i].sizes();
    } else {
      ++vectors;
      EXPECT_TRUE(at::equal(with[i], without[i]))
          << "parameter " << i << " of shape " << initial[i].sizes();
    }
  }
  EXPECT_GT(matrices, 0);
  EXPECT_GT(vectors, 0);
}

TEST(LearnerTest, TrainingReducesSupervisedLoss) {
  ToyData data = MakeToyData();
  auto learner = MakeFixMatchLearner(ToyLearner(7));
  ASSERT_THAT(learner, IsOk());
  std::vector<double> losses;
  for (int i = 0; i < 40; ++i) {
    auto stats = (*learner)->Step(data.step_data());
    ASSERT_THAT(stats, IsOk());
    EXPECT_EQ(stats->step, i + 1);
    EXPECT_DOUBLE_EQ(stats->lr, CosineLearningRate(0.03, i, 100));
    ASSERT_EQ(stats->scalars.size(), 3u);
    const double loss_x = stats->scalars[0].item<double>();
    const double loss_u = stats->scalars[1].item<double>();
    const double mask_rate = stats->scalars[2].item<double>();
    EXPECT_GE(mask_rate, 0.0);
    EXPECT_LE(mask_rate, 1.0);
    losses.push_back(loss_x);
    EXPECT_NEAR(stats->loss.item<double>(), loss_x + loss_u, 1e-5);
  }
  EXPECT_EQ((*learner)->step(), 40);
  const double first = (losses[0] + losses[1] + losses[2] + losses[3]) / 4;
  const double last = (losses[36] + losses[37] + losses[38] + losses[39]) / 4;
  EXPECT_LT(last, 0.5 * first) << "first " << first << " last " << last;

  auto predictions = (*learner)->Predict(data.test, /*use_ema=*/false);
  ASSERT_THAT(predictions, IsOk());
  const double accuracy = predictions->probs.argmax(1)
                              .eq(data.test_targets)
                              .to(at::kFloat)
                              .mean()
                              .item<double>();
  EXPECT_GE(accuracy, 0.9);
}

TEST(LearnerTest, StepValidatesInputs) {
  ToyData data = MakeToyData();
  auto learner = MakeFixMatchLearner(ToyLearner(1));
  ASSERT_THAT(learner, IsOk());
  auto step = [&](at::Tensor labelled, at::Tensor targets,
                  at::Tensor unlabelled) {
    return (*learner)->Step(StepData{labelled, targets, unlabelled});
  };
  EXPECT_THAT(step(data.labelled, data.targets.to(at::kInt), data.unlabelled),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(
      step(data.labelled, data.targets.narrow(0, 0, 3), data.unlabelled),
      StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(
      step(data.labelled, data.targets, data.unlabelled.narrow(0, 0, 0)),
      StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(
      step(data.labelled, data.targets, data.unlabelled.narrow(3, 0, 20)),
      StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(
      step(data.labelled, data.targets, data.unlabelled.to(at::kDouble)),
      StatusIs(absl::StatusCode::kInvalidArgument));
  // FixMatch needs labels.
  EXPECT_THAT(step(at::Tensor(), at::Tensor(), data.unlabelled),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(step(data.labelled.narrow(0, 0, 0), data.targets.narrow(0, 0, 0),
                   data.unlabelled),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // A target out of range surfaces as INVALID_ARGUMENT, not a crash.
  EXPECT_THAT(step(data.labelled, data.targets + 5, data.unlabelled),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // A teacher's probabilities need one float row per pool image.
  const int64_t pool = data.unlabelled.size(0);
  const int64_t classes = 2;  // the toy model's
  auto with_teacher = [&](at::Tensor teacher) {
    return (*learner)->Step(
        StepData{data.labelled, data.targets, data.unlabelled, teacher});
  };
  EXPECT_THAT(with_teacher(at::full({pool - 1, classes}, 1.0 / classes)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(with_teacher(at::full({pool, classes + 1}, 1.0 / classes)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(with_teacher(at::full({pool}, 1.0 / classes)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(with_teacher(at::full({pool, classes}, 1.0 / classes,
                                    at::TensorOptions().dtype(at::kDouble))),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ((*learner)->step(), 0);
  EXPECT_THAT(with_teacher(at::full({pool, classes}, 1.0 / classes)), IsOk());
  EXPECT_EQ((*learner)->step(), 1);
}

TEST(LearnerTest, SetScheduleRestartsTheCosine) {
  ToyData data = MakeToyData();
  LearnerOptions options = ToyLearner(3);
  options.lr = 0.05;
  FixMatchOptions tiny = ToyFixMatch();
  tiny.batch.batch_size = 2;
  tiny.batch.mu = 1;
  auto learner = MakeFixMatchLearner(options, tiny);
  ASSERT_THAT(learner, IsOk());
  (*learner)->SetSchedule(/*start_step=*/100, /*total_steps=*/50);
  (*learner)->set_step(100);
  EXPECT_EQ((*learner)->step(), 100);
  EXPECT_EQ((*learner)->next_lr(), 0.05);
  for (int i = 0; i < 50; ++i) {
    auto stats = (*learner)->Step(data.step_data());
    ASSERT_THAT(stats, IsOk());
    if (i == 0) EXPECT_EQ(stats->lr, 0.05) << "peak on the first step";
    EXPECT_DOUBLE_EQ(stats->lr, CosineLearningRate(0.05, i, 50)) << i;
    EXPECT_EQ(stats->step, 101 + i);
  }
  EXPECT_EQ((*learner)->step(), 150);
  const double end = 0.05 * std::cos(7.0 / 16.0 * std::acos(-1.0));
  EXPECT_NEAR((*learner)->next_lr(), end, 1e-12);
  auto after = (*learner)->Step(data.step_data());
  ASSERT_THAT(after, IsOk());
  EXPECT_NEAR(after->lr, end, 1e-12);
  // Steps before the schedule's start use the peak; far past it, the end.
  (*learner)->set_step(90);
  EXPECT_EQ((*learner)->next_lr(), 0.05);
  (*learner)->set_step(1000);
  EXPECT_NEAR((*learner)->next_lr(), end, 1e-12);
}

TEST(LearnerTest, FitScheduleEndKeepsTheRateAndEndsTheCosine) {
  LearnerOptions options = ToyLearner(3);
  options.lr = 0.05;
  options.total_steps = 100;
  auto learner = MakeFixMatchLearner(options);
  ASSERT_THAT(learner, IsOk());
  const double span = 7.0 / 16.0 * std::acos(-1.0);
  auto lr_at = [&](double progress) {
    return 0.05 * std::cos(span * progress);
  };
  (*learner)->set_step(40);
  EXPECT_NEAR((*learner)->next_lr(), lr_at(0.4), 1e-12);
  // Squeezed: the rate at step 40 stays, the rest of the cosine (from 0.4
  // to 1 of its span) now spans steps 40 to 60.
  (*learner)->FitScheduleEnd(60);
  EXPECT_EQ((*learner)->schedule_end(), 60);
  EXPECT_NEAR((*learner)->next_lr(), lr_at(0.4), 1e-12);
  (*learner)->set_step(50);
  EXPECT_NEAR((*learner)->next_lr(), lr_at(0.7), 1e-12);
  (*learner)->set_step(60);
  EXPECT_NEAR((*learner)->next_lr(), lr_at(1.0), 1e-12);
  (*learner)->set_step(500);
  EXPECT_NEAR((*learner)->next_lr(), lr_at(1.0), 1e-12);
  // Stretched again from step 50: 0.7 -> 1 over steps 50 to 110.
  (*learner)->set_step(50);
  (*learner)->FitScheduleEnd(110);
  EXPECT_NEAR((*learner)->next_lr(), lr_at(0.7), 1e-12);
  (*learner)->set_step(80);
  EXPECT_NEAR((*learner)->next_lr(), lr_at(0.85), 1e-12);
  // An end at or before the current step becomes the next step.
  (*learner)->FitScheduleEnd(10);
  EXPECT_EQ((*learner)->schedule_end(), 81);
  EXPECT_NEAR((*learner)->next_lr(), lr_at(0.85), 1e-12);
  (*learner)->set_step(81);
  EXPECT_NEAR((*learner)->next_lr(), lr_at(1.0), 1e-12);
  // SetSchedule starts a fresh cosine.
  (*learner)->SetSchedule(81, 19);
  EXPECT_EQ((*learner)->schedule_end(), 100);
  EXPECT_EQ((*learner)->next_lr(), 0.05);
}

TEST(LearnerTest, CosineSpanOption) {
  LearnerOptions options = ToyLearner(1);
  options.cosine_span = 0.5;
  auto learner = MakeFixMatchLearner(options);
  ASSERT_THAT(learner, IsOk());
  (*learner)->set_step(100);
  EXPECT_NEAR((*learner)->next_lr(), 0.0, 1e-12);
  (*learner)->set_step(50);
  EXPECT_NEAR((*learner)->next_lr(), 0.03 * std::cos(std::acos(-1.0) / 4),
              1e-12);
}

TEST(LearnerTest, PredictShapesAndModes) {
  ToyData data = MakeToyData();
  auto learner = MakeFixMatchLearner(ToyLearner(1));
  ASSERT_THAT(learner, IsOk());
  for (bool use_ema : {false, true}) {
    auto predictions = (*learner)->Predict(data.test, use_ema);
    ASSERT_THAT(predictions, IsOk());
    EXPECT_EQ(predictions->probs.sizes(), (at::IntArrayRef{64, 2}));
    EXPECT_EQ(predictions->embeddings.sizes(), (at::IntArrayRef{64, 16}));
    EXPECT_TRUE(at::allclose(predictions->probs.sum(1), at::ones({64})));
  }
  // Chunked prediction equals one pass in eval mode.
  {
    torch::NoGradGuard no_grad;
    (*learner)->model()->eval();
    at::Tensor direct =
        at::softmax((*learner)->model()->forward(data.test).logits, 1);
    (*learner)->model()->train();
    auto predictions = (*learner)->Predict(data.test, false);
    ASSERT_THAT(predictions, IsOk());
    EXPECT_TRUE(at::allclose(predictions->probs, direct, 1e-5, 1e-6));
  }
  EXPECT_TRUE((*learner)->model()->is_training());  // mode restored
  EXPECT_FALSE((*learner)->ema_model()->is_training());

  auto empty = (*learner)->Predict(data.test.narrow(0, 0, 0), true);
  ASSERT_THAT(empty, IsOk());
  EXPECT_EQ(empty->probs.sizes(), (at::IntArrayRef{0, 2}));
  EXPECT_EQ(empty->embeddings.sizes(), (at::IntArrayRef{0, 16}));
  EXPECT_THAT((*learner)->Predict(data.test.to(at::kDouble), false),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT((*learner)->Predict(data.test.view({64, 28, 28}), false),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT((*learner)->Predict(at::Tensor(), false),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(LearnerTest, SameSeedIsBitIdentical) {
  ToyData data = MakeToyData();
  auto a = MakeFixMatchLearner(ToyLearner(3));
  auto b = MakeFixMatchLearner(ToyLearner(3));
  auto c = MakeFixMatchLearner(ToyLearner(4));
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  ASSERT_THAT(c, IsOk());
  for (int i = 0; i < 3; ++i) {
    auto sa = (*a)->Step(data.step_data());
    auto sb = (*b)->Step(data.step_data());
    auto sc = (*c)->Step(data.step_data());
    ASSERT_THAT(sa, IsOk());
    ASSERT_THAT(sb, IsOk());
    ASSERT_THAT(sc, IsOk());
    EXPECT_TRUE(at::equal(sa->loss, sb->loss));
    EXPECT_FALSE(at::equal(sa->loss, sc->loss));
  }
  auto pa = (*a)->Predict(data.test, true);
  auto pb = (*b)->Predict(data.test, true);
  ASSERT_THAT(pa, IsOk());
  ASSERT_THAT(pb, IsOk());
  EXPECT_TRUE(at::equal(pa->probs, pb->probs));
  EXPECT_TRUE(at::equal(pa->embeddings, pb->embeddings));
}

TEST(LearnerTest, SeparateAndEmaWeakForwardStepsRun) {
  ToyData data = MakeToyData();
  for (WeakViewForward forward :
       {WeakViewForward::kSeparate, WeakViewForward::kEma}) {
    FixMatchOptions fixmatch = ToyFixMatch();
    fixmatch.batch.weak_forward = forward;
    fixmatch.threshold = 0.0;  // every pseudo-label counts
    auto learner = MakeFixMatchLearner(ToyLearner(1), fixmatch);
    ASSERT_THAT(learner, IsOk());
    auto stats = (*learner)->Step(data.step_data());
    ASSERT_THAT(stats, IsOk());
    ASSERT_EQ(stats->scalars.size(), 3u);
    EXPECT_EQ(stats->scalars[2].item<float>(), 1.0f);
    EXPECT_GT(stats->scalars[1].item<float>(), 0.0f)
        << WeakViewForwardName(forward);
  }
}

TEST(LearnerTest, SaveLoadRoundTrip) {
  ToyData data = MakeToyData();
  auto a = MakeFixMatchLearner(ToyLearner(11));
  auto b = MakeFixMatchLearner(ToyLearner(99));
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  for (int i = 0; i < 3; ++i) {
    ASSERT_THAT((*a)->Step(data.step_data()), IsOk());
  }
  const std::string path = testing::TempDir() + "/learner_roundtrip.pt";
  ASSERT_THAT((*a)->Save(path), IsOk());
  ASSERT_THAT((*b)->Load(path), IsOk());
  EXPECT_EQ((*b)->step(), 3);
  EXPECT_DOUBLE_EQ((*b)->next_lr(), (*a)->next_lr());
  EXPECT_TRUE(AllEqual((*a)->model()->buffers(), (*b)->model()->buffers()));
  for (bool use_ema : {false, true}) {
    auto pa = (*a)->Predict(data.test, use_ema);
    auto pb = (*b)->Predict(data.test, use_ema);
    ASSERT_THAT(pa, IsOk());
    ASSERT_THAT(pb, IsOk());
    EXPECT_TRUE(at::equal(pa->probs, pb->probs)) << "use_ema " << use_ema;
    EXPECT_TRUE(at::equal(pa->embeddings, pb->embeddings));
  }
  // Optimizer momentum and generator state came along: the next step is
  // identical too.
  auto sa = (*a)->Step(data.step_data());
  auto sb = (*b)->Step(data.step_data());
  ASSERT_THAT(sa, IsOk());
  ASSERT_THAT(sb, IsOk());
  EXPECT_TRUE(at::equal(sa->loss, sb->loss));
  EXPECT_TRUE(
      AllEqual((*a)->model()->parameters(), (*b)->model()->parameters()));
  EXPECT_TRUE(AllEqual((*a)->ema_model()->parameters(),
                       (*b)->ema_model()->parameters()));
}

TEST(LearnerTest, SaveLoadKeepsAFittedSchedule) {
  // A schedule squeezed by FitScheduleEnd (a run fitted to a time limit)
  // comes back from the checkpoint: the rate goes on where it was.
  ToyData data = MakeToyData();
  auto a = MakeFixMatchLearner(ToyLearner(11));
  auto b = MakeFixMatchLearner(ToyLearner(11));
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  for (int i = 0; i < 3; ++i) {
    ASSERT_THAT((*a)->Step(data.step_data()), IsOk());
  }
  (*a)->FitScheduleEnd(8);
  ASSERT_THAT((*a)->Step(data.step_data()), IsOk());
  const std::string path = testing::TempDir() + "/learner_fitted.pt";
  ASSERT_THAT((*a)->Save(path), IsOk());
  ASSERT_NE((*b)->next_lr(), (*a)->next_lr());
  ASSERT_THAT((*b)->Load(path), IsOk());
  EXPECT_EQ((*b)->schedule_end(), 8);
  for (int64_t step = 4; step <= 8; ++step) {
    (*a)->set_step(step);
    (*b)->set_step(step);
    EXPECT_DOUBLE_EQ((*b)->next_lr(), (*a)->next_lr()) << "step " << step;
  }
}

TEST(LearnerTest, SaveLoadErrors) {
  auto learner = MakeFixMatchLearner(ToyLearner(1));
  ASSERT_THAT(learner, IsOk());
  EXPECT_THAT((*learner)->Save(testing::TempDir() + "/no/such/dir/ckpt.pt"),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT((*learner)->Load(testing::TempDir() + "/no_such_ckpt.pt"),
              StatusIs(absl::StatusCode::kNotFound));

  const std::string garbage = testing::TempDir() + "/learner_garbage.pt";
  std::ofstream(garbage) << "not a checkpoint";
  EXPECT_THAT((*learner)->Load(garbage), StatusIs(absl::StatusCode::kDataLoss));

  ModelOptions wider = ToyModel();
  wider.width = 8;
  auto other = MakeFixMatchLearner(ToyLearner(1), ToyFixMatch(), wider);
  ASSERT_THAT(other, IsOk());
  const std::string path = testing::TempDir() + "/learner_wider.pt";
  ASSERT_THAT((*other)->Save(path), IsOk());
  const std::vector<at::Tensor> before =
      Clone((*learner)->model()->parameters());
  EXPECT_THAT((*learner)->Load(path),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  // Unchanged on error.
  EXPECT_TRUE(AllEqual(before, (*learner)->model()->parameters()));
}

TEST(LearnerTest, RefusesVersionOneCheckpoint) {
  // What trainers before the engine/objective split wrote: the same kind of
  // archive with format "fewlabels-fixmatch-v1".
  const std::string path = testing::TempDir() + "/fixmatch_v1.pt";
  {
    torch::serialize::OutputArchive archive;
    archive.write("format", c10::IValue(std::string("fewlabels-fixmatch-v1")));
    archive.write("step", at::scalar_tensor(7, at::kLong));
    archive.save_to(path);
  }
  auto learner = MakeFixMatchLearner(ToyLearner(1));
  ASSERT_THAT(learner, IsOk());
  const std::vector<at::Tensor> before =
      Clone((*learner)->model()->parameters());
  EXPECT_THAT((*learner)->Load(path),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("older trainer")));
  EXPECT_THAT((*learner)->InitializeFrom(path),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("older trainer")));
  EXPECT_EQ((*learner)->step(), 0);
  EXPECT_TRUE(AllEqual(before, (*learner)->model()->parameters()));
}

TEST(LearnerTest, RefusesAnotherObjectivesCheckpoint) {
  auto simclr = MakeSimClrLearner(ToyLearner(1));
  ASSERT_THAT(simclr, IsOk());
  const std::string path = testing::TempDir() + "/learner_simclr.pt";
  ASSERT_THAT((*simclr)->Save(path), IsOk());
  auto fixmatch = MakeFixMatchLearner(ToyLearner(2));
  ASSERT_THAT(fixmatch, IsOk());
  const std::vector<at::Tensor> before =
      Clone((*fixmatch)->model()->parameters());
  EXPECT_THAT(
      (*fixmatch)->Load(path),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("simclr")));
  EXPECT_TRUE(AllEqual(before, (*fixmatch)->model()->parameters()));
}

TEST(LearnerTest, InitializeFromCopiesWeightsIntoModelAndEma) {
  ToyData data = MakeToyData();
  // A pretraining stage: SimCLR steps on the unlabelled images.
  auto pretrain = MakeSimClrLearner(ToyLearner(5));
  ASSERT_THAT(pretrain, IsOk());
  for (int i = 0; i < 3; ++i) {
    ASSERT_THAT((*pretrain)->Step(StepData{{}, {}, data.unlabelled}), IsOk());
  }
  const std::string path = testing::TempDir() + "/learner_pretrained.pt";
  ASSERT_THAT((*pretrain)->Save(path), IsOk());

  ModelOptions other_init = ToyModel();
  other_init.init_seed = 17;
  auto learner = MakeFixMatchLearner(ToyLearner(6), ToyFixMatch(), other_init);
  ASSERT_THAT(learner, IsOk());
  ASSERT_THAT((*learner)->Step(data.step_data()), IsOk());
  (*learner)->set_step(42);
  ASSERT_FALSE(AllEqual((*learner)->model()->parameters(),
                        (*pretrain)->model()->parameters()));

  ASSERT_THAT((*learner)->InitializeFrom(path), IsOk());
  EXPECT_EQ((*learner)->step(), 42);
  EXPECT_TRUE(AllEqual((*learner)->model()->parameters(),
                       (*pretrain)->model()->parameters()));
  EXPECT_TRUE(AllEqual((*learner)->model()->buffers(),
                       (*pretrain)->model()->buffers()));
  // The EMA copy starts from the pretrained model (not its EMA).
  EXPECT_TRUE(AllEqual((*learner)->ema_model()->parameters(),
                       (*pretrain)->model()->parameters()));
  EXPECT_TRUE(AllEqual((*learner)->ema_model()->buffers(),
                       (*pretrain)->model()->buffers()));
  // Training continues from there.
  auto stats = (*learner)->Step(data.step_data());
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->step, 43);

  EXPECT_THAT((*learner)->InitializeFrom(testing::TempDir() + "/nope.pt"),
              StatusIs(absl::StatusCode::kNotFound));
  ModelOptions wider = ToyModel();
  wider.width = 8;
  auto wide = MakeFixMatchLearner(ToyLearner(1), ToyFixMatch(), wider);
  ASSERT_THAT(wide, IsOk());
  EXPECT_THAT((*wide)->InitializeFrom(path),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST(LearnerTest, SetClassifierLayerSetsModelAndEmaOnly) {
  ToyData data = MakeToyData();
  auto learner = MakeFixMatchLearner(ToyLearner(7));
  ASSERT_THAT(learner, IsOk());
  const int64_t dim = (*learner)->model()->embedding_dim();
  const std::vector<at::Tensor> features_before =
      Clone((*learner)->model()->parameters());
  at::Tensor weight = torch::arange(2 * dim, torch::kFloat).reshape({2, dim});
  at::Tensor bias = torch::tensor({0.5f, -0.5f});

  // Wrong shapes are refused and change nothing.
  EXPECT_THAT((*learner)->SetClassifierLayer(weight.t(), bias),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT((*learner)->SetClassifierLayer(weight, bias.narrow(0, 0, 1)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT((*learner)->SetClassifierLayer(weight, at::Tensor()),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_TRUE(AllEqual((*learner)->model()->parameters(), features_before));

  ASSERT_THAT((*learner)->SetClassifierLayer(weight, bias), IsOk());
  for (Classifier* net : {&(*learner)->model(), &(*learner)->ema_model()}) {
    EXPECT_TRUE(torch::equal((*net)->classifier()->weight, weight));
    EXPECT_TRUE(torch::equal((*net)->classifier()->bias, bias));
  }
  // Every other parameter is as it was; the logits are the new layer's.
  const std::vector<at::Tensor> after = (*learner)->model()->parameters();
  int changed = 0;
  for (size_t i = 0; i < after.size(); ++i) {
    changed += !torch::equal(after[i], features_before[i]);
  }
  EXPECT_EQ(changed, 2);
  auto predictions = (*learner)->Predict(data.test, /*use_ema=*/true);
  ASSERT_THAT(predictions, IsOk());
  EXPECT_TRUE(torch::allclose(
      predictions->probs,
      torch::softmax(predictions->embeddings.matmul(weight.t()) + bias, 1),
      1e-4, 1e-5));
  // And it trains on from there.
  ASSERT_THAT((*learner)->Step(data.step_data()), IsOk());
  EXPECT_FALSE(torch::equal((*learner)->model()->classifier()->weight, weight));
}

// The first Conv2d and BatchNorm2d of a "cnn" classifier (its first block).
std::pair<torch::nn::Conv2dImpl*, torch::nn::BatchNorm2dImpl*> FirstConvAndBn(
    Classifier& net) {
  torch::nn::Conv2dImpl* conv = nullptr;
  torch::nn::BatchNorm2dImpl* bn = nullptr;
  for (const auto& module : net->modules(/*include_self=*/false)) {
    if (conv == nullptr) conv = module->as<torch::nn::Conv2d>();
    if (bn == nullptr) bn = module->as<torch::nn::BatchNorm2d>();
  }
  return {conv, bn};
}

TEST(LearnerTest, RecalibrateBatchNormUsesTheImagesStatistics) {
  ToyData data = MakeToyData();
  LearnerOptions options = ToyLearner(8);
  options.predict_batch_size = 7;  // several uneven chunks
  auto learner = MakeFixMatchLearner(options);
  ASSERT_THAT(learner, IsOk());
  for (int i = 0; i < 3; ++i) {
    ASSERT_THAT((*learner)->Step(data.step_data()), IsOk());
  }
  const std::vector<at::Tensor> model_buffers =
      Clone((*learner)->model()->buffers());

  // 20 copies of one constant image: every chunk has the same statistics.
  const at::Tensor constant = at::full({20, 1, 28, 28}, 0.6f);
  ASSERT_THAT((*learner)->RecalibrateBatchNorm(constant, /*use_ema=*/true),
              IsOk());
  auto [conv, bn] = FirstConvAndBn((*learner)->ema_model());
  ASSERT_NE(conv, nullptr);
  ASSERT_NE(bn, nullptr);
  at::Tensor conv_out;
  {
    torch::NoGradGuard no_grad;
    const ModelOptions& m = (*learner)->model_options();
    conv_out = conv->forward((constant - m.input_mean) / m.input_std);
  }
  const at::Tensor mean = conv_out.mean({0, 2, 3});
  const at::Tensor var = conv_out.var({0, 2, 3}, /*unbiased=*/true);
  EXPECT_TRUE(at::allclose(bn->running_mean, mean, 1e-4, 1e-5))
      << bn->running_mean << " vs " << mean;
  EXPECT_TRUE(at::allclose(bn->running_var, var, 1e-3, 1e-5))
      << bn->running_var << " vs " << var;
  // The module's momentum and modes are restored; the model is untouched.
  ASSERT_TRUE(bn->options.momentum().has_value());
  EXPECT_DOUBLE_EQ(*bn->options.momentum(), ToyModel().bn_momentum);
  EXPECT_FALSE((*learner)->ema_model()->is_training());
  EXPECT_TRUE((*learner)->model()->is_training());
  EXPECT_TRUE(AllEqual(model_buffers, (*learner)->model()->buffers()));

  // On the model: its statistics change, the EMA's stay.
  const std::vector<at::Tensor> ema_buffers =
      Clone((*learner)->ema_model()->buffers());
  ASSERT_THAT((*learner)->RecalibrateBatchNorm(data.test, /*use_ema=*/false),
              IsOk());
  EXPECT_FALSE(AllEqual(model_buffers, (*learner)->model()->buffers()));
  EXPECT_TRUE(AllEqual(ema_buffers, (*learner)->ema_model()->buffers()));
  EXPECT_TRUE((*learner)->model()->is_training());

  EXPECT_THAT((*learner)->RecalibrateBatchNorm(data.test.narrow(0, 0, 0), true),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT((*learner)->RecalibrateBatchNorm(data.test.to(at::kDouble), true),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(LearnerTest, LabelFreeObjectiveStepsOnUnlabelledImagesOnly) {
  ToyData data = MakeToyData();
  auto learner = MakeSimClrLearner(ToyLearner(4));
  ASSERT_THAT(learner, IsOk());
  EXPECT_FALSE((*learner)->objective().uses_labels());
  const std::vector<at::Tensor> initial =
      Clone((*learner)->model()->parameters());
  for (int i = 0; i < 2; ++i) {
    auto stats = (*learner)->Step(StepData{{}, {}, data.unlabelled});
    ASSERT_THAT(stats, IsOk());
    EXPECT_EQ(stats->step, i + 1);
    EXPECT_TRUE(std::isfinite(stats->loss.item<double>()));
    ASSERT_EQ(stats->scalars.size(), 1u);  // positive_accuracy
  }
  EXPECT_FALSE(AllEqual(initial, (*learner)->model()->parameters()));
  // Labelled tensors, even malformed ones, are ignored.
  EXPECT_THAT((*learner)->Step(StepData{
                  data.labelled, data.targets.to(at::kInt), data.unlabelled}),
              IsOk());
  // The unlabelled images are still required.
  EXPECT_THAT((*learner)->Step(StepData{data.labelled, data.targets, {}}),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(LearnerCudaTest, TrainsPredictsAndRoundTrips) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const at::Device cuda(at::kCUDA, 0);
  ToyData data = MakeToyData();
  const StepData step_data{data.labelled.to(cuda), data.targets.to(cuda),
                           data.unlabelled.to(cuda)};
  const at::Tensor test = data.test.to(cuda);
  auto make = [&](uint64_t seed, bool cuda_graph) {
    LearnerOptions options = ToyLearner(seed);  // bf16 autocast, channels_last
    options.cuda_graph = cuda_graph;
    auto objective = FixMatchObjective::Create(ToyFixMatch());
    EXPECT_THAT(objective, IsOk());
    return Learner::Create(ToyModel(), options, *std::move(objective), cuda);
  };
  for (bool cuda_graph : {false, true}) {
    auto learner = make(7, cuda_graph);
    ASSERT_THAT(learner, IsOk());
    std::vector<double> losses;
    for (int i = 0; i < 40; ++i) {
      auto stats = (*learner)->Step(step_data);
      ASSERT_THAT(stats, IsOk());
      EXPECT_EQ(stats->loss.device(), cuda);
      EXPECT_DOUBLE_EQ(stats->lr, CosineLearningRate(0.03, i, 100));
      losses.push_back(stats->scalars[0].item<double>());
    }
    EXPECT_NE(losses[10], losses[11]);
    EXPECT_LT(losses[36] + losses[37] + losses[38] + losses[39],
              0.5 * (losses[0] + losses[1] + losses[2] + losses[3]))
        << "cuda_graph " << cuda_graph;
    auto predictions = (*learner)->Predict(test, /*use_ema=*/false);
    ASSERT_THAT(predictions, IsOk());
    EXPECT_EQ(predictions->probs.device(), cuda);
    EXPECT_GE(predictions->probs.argmax(1)
                  .cpu()
                  .eq(data.test_targets)
                  .to(at::kFloat)
                  .mean()
                  .item<double>(),
              0.9);
    const std::string path = testing::TempDir() + "/learner_cuda.pt";
    ASSERT_THAT((*learner)->Save(path), IsOk());
    auto restored = make(1, cuda_graph);
    ASSERT_THAT(restored, IsOk());
    ASSERT_THAT((*restored)->Load(path), IsOk());
    EXPECT_EQ((*restored)->step(), 40);
    auto a = (*learner)->Predict(test, true);
    auto b = (*restored)->Predict(test, true);
    ASSERT_THAT(a, IsOk());
    ASSERT_THAT(b, IsOk());
    EXPECT_TRUE(at::allclose(a->probs, b->probs, 1e-5, 1e-6));
    EXPECT_THAT((*restored)->Step(step_data), IsOk());
  }
}

}  // namespace
}  // namespace trainer
