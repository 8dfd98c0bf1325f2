#include "trainer/objectives/byol.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "common/status_matchers.h"
#include "trainer/learn/augment.h"
#include "trainer/learn/learner.h"
#include "trainer/learn/model.h"
#include "tests/trainer/pattern_pool.h"

namespace trainer {
namespace {

using ::common::IsOk;
using ::common::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr int kWidth = 8;

ModelOptions ToyModel() {
  ModelOptions options;
  options.width = kWidth;
  return options;
}

int64_t EmbeddingDim() { return (*MakeModel(ToyModel()))->embedding_dim(); }

ByolOptions ToyByol() {
  ByolOptions options;
  options.batch_size = 8;
  options.hidden_dim = 32;
  options.projection_dim = 16;
  options.augment.strong.num_ops = 0;
  return options;
}

struct ByolLearner {
  std::unique_ptr<Learner> learner;
  ByolObjective* objective = nullptr;  // owned by learner
};

// A learner whose EMA copy is the target network, as the pretraining stage
// sets it up.
ByolLearner MakeLearner(uint64_t seed, const ByolOptions& byol = ToyByol()) {
  ByolLearner made;
  auto objective = ByolObjective::Create(byol, EmbeddingDim(), at::kCPU, seed);
  EXPECT_THAT(objective, IsOk());
  if (!objective.ok()) return made;
  made.objective = objective->get();
  LearnerOptions options;
  options.lr = 0.05;
  options.cosine_span = 0.5;
  options.total_steps = 40;
  options.ema_decay = byol.target_decay;
  options.seed = seed;
  auto learner =
      Learner::Create(ToyModel(), options, *std::move(objective), at::kCPU);
  EXPECT_THAT(learner, IsOk());
  if (learner.ok()) made.learner = *std::move(learner);
  return made;
}

std::vector<at::Tensor> State(torch::nn::Module& module) {
  std::vector<at::Tensor> state;
  for (const auto& p : module.parameters()) state.push_back(p.detach().clone());
  for (const auto& b : module.buffers()) state.push_back(b.clone());
  return state;
}

std::vector<at::Tensor> Parameters(torch::nn::Module& module) {
  std::vector<at::Tensor> params;
  for (const auto& p : module.parameters()) {
    params.push_back(p.detach().clone());
  }
  return params;
}

TEST(ByolObjectiveTest, CreateValidatesOptions) {
  EXPECT_THAT(ByolObjective::Create(ToyByol(), 32, at::kCPU, 0), IsOk());
  ByolOptions one_image = ToyByol();
  one_image.batch_size = 1;
  EXPECT_THAT(ByolObjective::Create(one_image, 32, at::kCPU, 0),
              StatusIs(absl::StatusCode::kInvalidArgument));
  for (double decay : {-0.1, 1.0, 1.5, std::nan("")}) {
    ByolOptions options = ToyByol();
    options.target_decay = decay;
    EXPECT_THAT(ByolObjective::Create(options, 32, at::kCPU, 0),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("target decay")))
        << decay;
  }
  ByolOptions zero_decay = ToyByol();
  zero_decay.target_decay = 0.0;
  EXPECT_THAT(ByolObjective::Create(zero_decay, 32, at::kCPU, 0), IsOk());
  EXPECT_THAT(ByolObjective::Create(ToyByol(), 0, at::kCPU, 0),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ByolOptions zero_hidden = ToyByol();
  zero_hidden.hidden_dim = 0;
  EXPECT_THAT(ByolObjective::Create(zero_hidden, 32, at::kCPU, 0),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ByolOptions zero_projection = ToyByol();
  zero_projection.projection_dim = 0;
  EXPECT_THAT(ByolObjective::Create(zero_projection, 32, at::kCPU, 0),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ByolOptions bad_crop = ToyByol();
  bad_crop.augment.crop.scale_min = 0.0;
  EXPECT_THAT(ByolObjective::Create(bad_crop, 32, at::kCPU, 0),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("byol crop")));
}

TEST(ByolObjectiveTest, NameLabelsMetricsAndHeads) {
  auto objective = ByolObjective::Create(ToyByol(), 32, at::kCPU, 0);
  ASSERT_THAT(objective, IsOk());
  EXPECT_EQ((*objective)->name(), "byol");
  EXPECT_FALSE((*objective)->uses_labels());
  EXPECT_THAT((*objective)->metric_names(), ElementsAre("target_cosine"));
  const std::vector<torch::nn::Module*> trained =
      (*objective)->trained_modules();
  ASSERT_EQ(trained.size(), 2u);  // projector and predictor
  // The target projector starts as a copy of the projector, is not trained
  // and takes no gradients.
  const std::vector<at::Tensor> projector = State(*trained[0]);
  const std::vector<at::Tensor> target =
      State(*(*objective)->target_projector());
  ASSERT_EQ(projector.size(), target.size());
  for (size_t i = 0; i < target.size(); ++i) {
    EXPECT_TRUE(at::equal(projector[i], target[i])) << i;
  }
  for (const auto& p : (*objective)->target_projector()->parameters()) {
    EXPECT_FALSE(p.requires_grad());
  }
  // The predictor maps the projection to its own size and differs from it.
  EXPECT_FALSE(at::equal(Parameters(*trained[0])[0].narrow(0, 0, 1),
                         Parameters(*trained[1])[0].narrow(0, 0, 1)));
  // Equal seeds give equal heads.
  auto again = ByolObjective::Create(ToyByol(), 32, at::kCPU, 0);
  ASSERT_THAT(again, IsOk());
  for (size_t m = 0; m < trained.size(); ++m) {
    const std::vector<at::Tensor> a = State(*trained[m]);
    const std::vector<at::Tensor> b = State(*(*again)->trained_modules()[m]);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(at::equal(a[i], b[i]));
  }
}

TEST(ByolObjectiveTest, TargetProjectorFollowsTheProjectorByItsDecay) {
  const at::Tensor pool = PatternPool(/*copies=*/2);
  ByolOptions options = ToyByol();
  options.target_decay = 0.9;
  ByolLearner made = MakeLearner(4, options);
  ASSERT_NE(made.learner, nullptr);
  for (int i = 0; i < 3; ++i) {
    ASSERT_THAT(made.learner->Step(StepData{{}, {}, pool}), IsOk());
  }
  torch::nn::Module& projector = *made.objective->trained_modules()[0];
  const std::vector<at::Tensor> online = Parameters(projector);
  const std::vector<at::Tensor> before =
      Parameters(*made.objective->target_projector());
  bool differs = false;
  for (size_t i = 0; i < online.size(); ++i) {
    differs |= !at::allclose(online[i], before[i]);
  }
  ASSERT_TRUE(differs) << "three steps move the projector off its target";

  at::Generator gen = *MakeGenerator(at::kCPU, 5);
  StepContext context{made.learner->model(), made.learner->ema_model(), gen,
                      /*channels_last=*/false};
  ObjectiveLoss loss = made.objective->Loss(context, StepData{{}, {}, pool});
  ASSERT_TRUE(std::isfinite(loss.total.item<double>()));
  const std::vector<at::Tensor> after =
      Parameters(*made.objective->target_projector());
  for (size_t i = 0; i < after.size(); ++i) {
    EXPECT_TRUE(at::allclose(after[i], 0.9 * before[i] + 0.1 * online[i],
                             /*rtol=*/1e-5, /*atol=*/1e-6))
        << i;
  }
  // The target model is put back in eval mode; the loss is 4 - 4 cos.
  EXPECT_FALSE(made.learner->ema_model()->is_training());
  ASSERT_EQ(loss.scalars.size(), 1u);
  EXPECT_NEAR(loss.total.item<double>(),
              4.0 - 4.0 * loss.scalars[0].item<double>(), 1e-5);
  // Only the online side takes gradients.
  loss.total.backward();
  bool model_grad = false;
  for (const auto& p : made.learner->model()->parameters()) {
    model_grad |= p.grad().defined() && p.grad().abs().sum().item<double>() > 0;
  }
  EXPECT_TRUE(model_grad);
  for (const auto& p : made.learner->ema_model()->parameters()) {
    EXPECT_FALSE(p.grad().defined() && p.grad().abs().sum().item<double>() > 0);
  }
}

// The objective's mean target_cosine on `pool` for 8 fixed draws of batches
// and views, without gradients. Each Loss call also moves the target
// projector one EMA step, so the number is only for comparisons within a
// test.
double FixedDrawCosine(Learner& learner, ByolObjective& objective,
                       const at::Tensor& pool) {
  torch::NoGradGuard no_grad;
  at::Generator gen = *MakeGenerator(at::kCPU, 2024);
  StepContext context{learner.model(), learner.ema_model(), gen,
                      /*channels_last=*/false};
  double sum = 0;
  for (int i = 0; i < 8; ++i) {
    sum += objective.Loss(context, StepData{{}, {}, pool})
               .scalars[0]
               .item<double>();
  }
  return sum / 8;
}

TEST(ByolObjectiveTest, LearnsToPredictTheTargetWithoutCollapsing) {
  const at::Tensor pool = PatternPool(/*copies=*/4);
  ByolLearner made = MakeLearner(1);
  ASSERT_NE(made.learner, nullptr);
  const double before = FixedDrawCosine(*made.learner, *made.objective, pool);
  for (int i = 0; i < 40; ++i) {
    auto stats = made.learner->Step(StepData{{}, {}, pool});
    ASSERT_THAT(stats, IsOk());
    ASSERT_TRUE(std::isfinite(stats->loss.item<double>())) << "step " << i;
  }
  const double after = FixedDrawCosine(*made.learner, *made.objective, pool);
  EXPECT_GT(after, before + 0.1) << "before " << before << " after " << after;
  // The embeddings of the 8 patterns stay apart: not all one vector.
  auto predictions = made.learner->Predict(pool.narrow(0, 0, 8), false);
  ASSERT_THAT(predictions, IsOk());
  const at::Tensor e = predictions->embeddings;
  const at::Tensor z = e / e.norm(2, {1}, /*keepdim=*/true).clamp_min(1e-12);
  const at::Tensor similarity = z.matmul(z.t());
  const double off_diagonal =
      ((similarity.sum() - similarity.diagonal().sum()) / (8 * 7))
          .item<double>();
  EXPECT_LT(off_diagonal, 0.95) << "collapsed embeddings";
}

TEST(ByolObjectiveTest, SaveLoadRoundTripsTheHeads) {
  const at::Tensor pool = PatternPool(/*copies=*/2);
  ByolLearner a = MakeLearner(2);
  ByolLearner b = MakeLearner(3);
  ASSERT_NE(a.learner, nullptr);
  ASSERT_NE(b.learner, nullptr);
  for (int i = 0; i < 3; ++i) {
    ASSERT_THAT(a.learner->Step(StepData{{}, {}, pool}), IsOk());
  }
  const std::string path = testing::TempDir() + "/byol_roundtrip.pt";
  ASSERT_THAT(a.learner->Save(path), IsOk());
  ASSERT_THAT(b.learner->Load(path), IsOk());
  std::vector<torch::nn::Module*> modules_a = a.objective->trained_modules();
  std::vector<torch::nn::Module*> modules_b = b.objective->trained_modules();
  modules_a.push_back(a.objective->target_projector().ptr().get());
  modules_b.push_back(b.objective->target_projector().ptr().get());
  for (size_t m = 0; m < modules_a.size(); ++m) {
    const std::vector<at::Tensor> sa = State(*modules_a[m]);
    const std::vector<at::Tensor> sb = State(*modules_b[m]);
    ASSERT_EQ(sa.size(), sb.size());
    for (size_t i = 0; i < sa.size(); ++i) {
      EXPECT_TRUE(at::equal(sa[i], sb[i])) << "module " << m << " tensor " << i;
    }
  }
  // Both learners then take the same next step.
  auto step_a = a.learner->Step(StepData{{}, {}, pool});
  auto step_b = b.learner->Step(StepData{{}, {}, pool});
  ASSERT_THAT(step_a, IsOk());
  ASSERT_THAT(step_b, IsOk());
  EXPECT_TRUE(at::equal(step_a->loss, step_b->loss));
}

}  // namespace
}  // namespace trainer
