#include "trainer/learn/fixmatch.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <cmath>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "common/status_matchers.h"

namespace trainer {
namespace {

using ::common::IsOk;
using ::common::StatusIs;

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

TEST(CosineLearningRateTest, FollowsSevenSixteenthsCosine) {
  const double pi = std::acos(-1.0);
  EXPECT_DOUBLE_EQ(CosineLearningRate(0.03, 0, 1000), 0.03);
  EXPECT_NEAR(CosineLearningRate(0.03, 500, 1000), 0.03 * std::cos(7 * pi / 32),
              1e-12);
  EXPECT_NEAR(CosineLearningRate(0.03, 1000, 1000),
              0.03 * std::cos(7 * pi / 16), 1e-12);
  EXPECT_DOUBLE_EQ(CosineLearningRate(0.03, 5000, 1000),
                   CosineLearningRate(0.03, 1000, 1000));
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

// Two classes: bright upper half or bright lower half, plus noise. Flips
// and shifts keep the class.
struct ToyData {
  at::Tensor labelled, targets, unlabelled, test, test_targets;
};

ToyData MakeToyData() {
  at::Generator gen = *MakeGenerator(at::kCPU, 123);
  auto make = [&gen](int64_t n) {
    at::Tensor y = at::randint(2, {n}, gen, at::kLong);
    at::Tensor x = 0.2f * at::rand({n, 1, 28, 28}, gen);
    at::Tensor upper = (y == 0).view({n, 1, 1, 1});
    x.narrow(2, 0, 14).add_(0.7f * upper.to(at::kFloat));
    x.narrow(2, 14, 14).add_(0.7f * (~upper).to(at::kFloat));
    return std::make_pair(x, y);
  };
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

FixMatchOptions ToyFixMatch(uint64_t seed) {
  FixMatchOptions options;
  options.batch_size = 8;
  options.mu = 2;
  options.total_steps = 100;
  options.seed = seed;
  options.predict_batch_size = 40;  // exercises chunking
  return options;
}

TEST(FixMatchTrainerTest, CudaGraphIsIgnoredOnCpu) {
  ToyData data = MakeToyData();
  FixMatchOptions options = ToyFixMatch(1);
  options.cuda_graph = true;
  auto trainer = FixMatchTrainer::Create(ToyModel(), options, at::kCPU);
  ASSERT_THAT(trainer, IsOk());
  EXPECT_THAT((*trainer)->Step(data.labelled, data.targets, data.unlabelled),
              IsOk());
}

TEST(FixMatchTrainerTest, CreateRejectsBadOptions) {
  FixMatchOptions zero_batch = ToyFixMatch(1);
  zero_batch.batch_size = 0;
  EXPECT_THAT(FixMatchTrainer::Create(ToyModel(), zero_batch, at::kCPU),
              StatusIs(absl::StatusCode::kInvalidArgument));
  FixMatchOptions bad_threshold = ToyFixMatch(1);
  bad_threshold.threshold = 1.5;
  EXPECT_THAT(FixMatchTrainer::Create(ToyModel(), bad_threshold, at::kCPU),
              StatusIs(absl::StatusCode::kInvalidArgument));
  FixMatchOptions nesterov_without_momentum = ToyFixMatch(1);
  nesterov_without_momentum.momentum = 0.0;
  EXPECT_THAT(
      FixMatchTrainer::Create(ToyModel(), nesterov_without_momentum, at::kCPU),
      StatusIs(absl::StatusCode::kInvalidArgument));
  ModelOptions bad_arch = ToyModel();
  bad_arch.arch = "mlp";
  EXPECT_THAT(FixMatchTrainer::Create(bad_arch, ToyFixMatch(1), at::kCPU),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(FixMatchTrainerTest, EmaStartsEqualToModel) {
  auto trainer = FixMatchTrainer::Create(ToyModel(), ToyFixMatch(1), at::kCPU);
  ASSERT_THAT(trainer, IsOk());
  auto a = (*trainer)->model()->parameters();
  auto b = (*trainer)->ema_model()->parameters();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(at::equal(a[i], b[i]));
  EXPECT_TRUE((*trainer)->model()->is_training());
  EXPECT_FALSE((*trainer)->ema_model()->is_training());
}

TEST(FixMatchTrainerTest, StepValidatesInputs) {
  ToyData data = MakeToyData();
  auto trainer = FixMatchTrainer::Create(ToyModel(), ToyFixMatch(1), at::kCPU);
  ASSERT_THAT(trainer, IsOk());
  EXPECT_THAT((*trainer)->Step(data.labelled, data.targets.to(at::kInt),
                               data.unlabelled),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT((*trainer)->Step(data.labelled, data.targets.narrow(0, 0, 3),
                               data.unlabelled),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT((*trainer)->Step(data.labelled, data.targets,
                               data.unlabelled.narrow(0, 0, 0)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT((*trainer)->Step(data.labelled, data.targets,
                               data.unlabelled.narrow(3, 0, 20)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // A target out of range surfaces as INVALID_ARGUMENT, not a crash.
  EXPECT_THAT(
      (*trainer)->Step(data.labelled, data.targets + 5, data.unlabelled),
      StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ((*trainer)->step(), 0);
}

TEST(FixMatchTrainerTest, TrainingReducesSupervisedLoss) {
  ToyData data = MakeToyData();
  auto trainer = FixMatchTrainer::Create(ToyModel(), ToyFixMatch(7), at::kCPU);
  ASSERT_THAT(trainer, IsOk());
  std::vector<double> losses;
  for (int i = 0; i < 40; ++i) {
    auto stats = (*trainer)->Step(data.labelled, data.targets, data.unlabelled);
    ASSERT_THAT(stats, IsOk());
    EXPECT_EQ(stats->step, i + 1);
    EXPECT_DOUBLE_EQ(stats->lr, CosineLearningRate(0.03, i, 100));
    losses.push_back(stats->loss.supervised.item<double>());
    EXPECT_NEAR(stats->loss.total.item<double>(),
                stats->loss.supervised.item<double>() +
                    stats->loss.unsupervised.item<double>(),
                1e-5);
  }
  EXPECT_EQ((*trainer)->step(), 40);
  const double first = (losses[0] + losses[1] + losses[2] + losses[3]) / 4;
  const double last = (losses[36] + losses[37] + losses[38] + losses[39]) / 4;
  EXPECT_LT(last, 0.5 * first) << "first " << first << " last " << last;

  auto predictions = (*trainer)->Predict(data.test, /*use_ema=*/false);
  ASSERT_THAT(predictions, IsOk());
  const double accuracy = predictions->probs.argmax(1)
                              .eq(data.test_targets)
                              .to(at::kFloat)
                              .mean()
                              .item<double>();
  EXPECT_GE(accuracy, 0.9);
}

TEST(FixMatchTrainerTest, PredictShapesAndModes) {
  ToyData data = MakeToyData();
  auto trainer = FixMatchTrainer::Create(ToyModel(), ToyFixMatch(1), at::kCPU);
  ASSERT_THAT(trainer, IsOk());
  for (bool use_ema : {false, true}) {
    auto predictions = (*trainer)->Predict(data.test, use_ema);
    ASSERT_THAT(predictions, IsOk());
    EXPECT_EQ(predictions->probs.sizes(), (at::IntArrayRef{64, 2}));
    EXPECT_EQ(predictions->embeddings.sizes(), (at::IntArrayRef{64, 16}));
    EXPECT_TRUE(at::allclose(predictions->probs.sum(1), at::ones({64})));
  }
  // Chunked prediction equals one pass in eval mode.
  torch::NoGradGuard no_grad;
  (*trainer)->model()->eval();
  at::Tensor direct =
      at::softmax((*trainer)->model()->forward(data.test).logits, 1);
  (*trainer)->model()->train();
  auto predictions = (*trainer)->Predict(data.test, false);
  ASSERT_THAT(predictions, IsOk());
  EXPECT_TRUE(at::allclose(predictions->probs, direct, 1e-5, 1e-6));
  EXPECT_TRUE((*trainer)->model()->is_training());  // mode restored

  auto empty = (*trainer)->Predict(data.test.narrow(0, 0, 0), true);
  ASSERT_THAT(empty, IsOk());
  EXPECT_EQ(empty->probs.sizes(), (at::IntArrayRef{0, 2}));
  EXPECT_EQ(empty->embeddings.sizes(), (at::IntArrayRef{0, 16}));
  EXPECT_THAT((*trainer)->Predict(data.test.to(at::kDouble), false),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(FixMatchTrainerTest, SameSeedIsBitIdentical) {
  ToyData data = MakeToyData();
  auto a = FixMatchTrainer::Create(ToyModel(), ToyFixMatch(3), at::kCPU);
  auto b = FixMatchTrainer::Create(ToyModel(), ToyFixMatch(3), at::kCPU);
  auto c = FixMatchTrainer::Create(ToyModel(), ToyFixMatch(4), at::kCPU);
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  ASSERT_THAT(c, IsOk());
  for (int i = 0; i < 3; ++i) {
    auto sa = (*a)->Step(data.labelled, data.targets, data.unlabelled);
    auto sb = (*b)->Step(data.labelled, data.targets, data.unlabelled);
    auto sc = (*c)->Step(data.labelled, data.targets, data.unlabelled);
    ASSERT_THAT(sa, IsOk());
    ASSERT_THAT(sb, IsOk());
    ASSERT_THAT(sc, IsOk());
    EXPECT_TRUE(at::equal(sa->loss.total, sb->loss.total));
    EXPECT_FALSE(at::equal(sa->loss.total, sc->loss.total));
  }
  auto pa = (*a)->Predict(data.test, true);
  auto pb = (*b)->Predict(data.test, true);
  ASSERT_THAT(pa, IsOk());
  ASSERT_THAT(pb, IsOk());
  EXPECT_TRUE(at::equal(pa->probs, pb->probs));
  EXPECT_TRUE(at::equal(pa->embeddings, pb->embeddings));
}

TEST(FixMatchTrainerTest, EmaTeacherStepRuns) {
  ToyData data = MakeToyData();
  FixMatchOptions options = ToyFixMatch(1);
  options.use_ema_for_pseudo_labels = true;
  options.threshold = 0.0;  // every pseudo-label counts
  auto trainer = FixMatchTrainer::Create(ToyModel(), options, at::kCPU);
  ASSERT_THAT(trainer, IsOk());
  auto stats = (*trainer)->Step(data.labelled, data.targets, data.unlabelled);
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->loss.mask_rate.item<float>(), 1.0f);
  EXPECT_GT(stats->loss.unsupervised.item<float>(), 0.0f);
}

TEST(FixMatchTrainerTest, SaveLoadRoundTrip) {
  ToyData data = MakeToyData();
  auto a = FixMatchTrainer::Create(ToyModel(), ToyFixMatch(11), at::kCPU);
  auto b = FixMatchTrainer::Create(ToyModel(), ToyFixMatch(99), at::kCPU);
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  for (int i = 0; i < 3; ++i) {
    ASSERT_THAT((*a)->Step(data.labelled, data.targets, data.unlabelled),
                IsOk());
  }
  const std::string path = testing::TempDir() + "/fixmatch_roundtrip.pt";
  ASSERT_THAT((*a)->Save(path), IsOk());
  ASSERT_THAT((*b)->Load(path), IsOk());
  EXPECT_EQ((*b)->step(), 3);
  EXPECT_DOUBLE_EQ((*b)->next_lr(), (*a)->next_lr());
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
  auto sa = (*a)->Step(data.labelled, data.targets, data.unlabelled);
  auto sb = (*b)->Step(data.labelled, data.targets, data.unlabelled);
  ASSERT_THAT(sa, IsOk());
  ASSERT_THAT(sb, IsOk());
  EXPECT_TRUE(at::equal(sa->loss.total, sb->loss.total));
  auto pa = (*a)->Predict(data.test, true);
  auto pb = (*b)->Predict(data.test, true);
  ASSERT_THAT(pa, IsOk());
  ASSERT_THAT(pb, IsOk());
  EXPECT_TRUE(at::equal(pa->probs, pb->probs));
}

TEST(FixMatchTrainerTest, SaveLoadErrors) {
  auto trainer = FixMatchTrainer::Create(ToyModel(), ToyFixMatch(1), at::kCPU);
  ASSERT_THAT(trainer, IsOk());
  EXPECT_THAT((*trainer)->Save(testing::TempDir() + "/no/such/dir/ckpt.pt"),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT((*trainer)->Load(testing::TempDir() + "/no_such_ckpt.pt"),
              StatusIs(absl::StatusCode::kNotFound));

  const std::string garbage = testing::TempDir() + "/garbage.pt";
  std::ofstream(garbage) << "not a checkpoint";
  EXPECT_THAT((*trainer)->Load(garbage), StatusIs(absl::StatusCode::kDataLoss));

  ModelOptions wider = ToyModel();
  wider.width = 8;
  auto other = FixMatchTrainer::Create(wider, ToyFixMatch(1), at::kCPU);
  ASSERT_THAT(other, IsOk());
  const std::string path = testing::TempDir() + "/fixmatch_wider.pt";
  ASSERT_THAT((*other)->Save(path), IsOk());
  std::vector<at::Tensor> before;
  for (const auto& p : (*trainer)->model()->parameters())
    before.push_back(p.clone());
  EXPECT_THAT((*trainer)->Load(path),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  // Unchanged on error.
  auto after = (*trainer)->model()->parameters();
  for (size_t i = 0; i < before.size(); ++i)
    EXPECT_TRUE(at::equal(before[i], after[i]));
}

TEST(FixMatchCudaTest, TrainsPredictsAndRoundTrips) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const at::Device cuda(at::kCUDA, 0);
  ToyData data = MakeToyData();
  at::Tensor labelled = data.labelled.to(cuda), targets = data.targets.to(cuda),
             unlabelled = data.unlabelled.to(cuda), test = data.test.to(cuda);
  FixMatchOptions options = ToyFixMatch(7);  // bf16 autocast, channels_last
  auto trainer = FixMatchTrainer::Create(ToyModel(), options, cuda);
  ASSERT_THAT(trainer, IsOk());
  std::vector<double> losses;
  for (int i = 0; i < 40; ++i) {
    auto stats = (*trainer)->Step(labelled, targets, unlabelled);
    ASSERT_THAT(stats, IsOk());
    EXPECT_EQ(stats->loss.total.device(), cuda);
    losses.push_back(stats->loss.supervised.item<double>());
  }
  EXPECT_LT(losses[36] + losses[37] + losses[38] + losses[39],
            0.5 * (losses[0] + losses[1] + losses[2] + losses[3]));
  for (const auto& p : (*trainer)->model()->parameters()) {
    if (p.dim() == 4 && p.size(1) > 1) {
      EXPECT_TRUE(p.is_contiguous(at::MemoryFormat::ChannelsLast));
    }
  }
  auto predictions = (*trainer)->Predict(test, /*use_ema=*/false);
  ASSERT_THAT(predictions, IsOk());
  EXPECT_EQ(predictions->probs.device(), cuda);
  EXPECT_EQ(predictions->probs.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::allclose(predictions->probs.sum(1).cpu(), at::ones({64}),
                           1e-4, 1e-4));
  const double accuracy = predictions->probs.argmax(1)
                              .cpu()
                              .eq(data.test_targets)
                              .to(at::kFloat)
                              .mean()
                              .item<double>();
  EXPECT_GE(accuracy, 0.9);

  const std::string path = testing::TempDir() + "/fixmatch_cuda.pt";
  ASSERT_THAT((*trainer)->Save(path), IsOk());
  auto restored = FixMatchTrainer::Create(ToyModel(), ToyFixMatch(1), cuda);
  ASSERT_THAT(restored, IsOk());
  ASSERT_THAT((*restored)->Load(path), IsOk());
  EXPECT_EQ((*restored)->step(), 40);
  for (bool use_ema : {false, true}) {
    auto a = (*trainer)->Predict(test, use_ema);
    auto b = (*restored)->Predict(test, use_ema);
    ASSERT_THAT(a, IsOk());
    ASSERT_THAT(b, IsOk());
    EXPECT_TRUE(at::allclose(a->probs, b->probs, 1e-5, 1e-6));
  }
  for (const auto& p : (*restored)->model()->parameters()) {
    EXPECT_EQ(p.device(), cuda);
    if (p.dim() == 4 && p.size(1) > 1) {
      EXPECT_TRUE(p.is_contiguous(at::MemoryFormat::ChannelsLast));
    }
  }
  // The restored trainer keeps training.
  EXPECT_THAT((*restored)->Step(labelled, targets, unlabelled), IsOk());
}

TEST(FixMatchCudaTest, CudaGraphStepsTrainFollowInputsAndRoundTrip) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const at::Device cuda(at::kCUDA, 0);
  ToyData data = MakeToyData();
  at::Tensor labelled = data.labelled.to(cuda), targets = data.targets.to(cuda),
             unlabelled = data.unlabelled.to(cuda), test = data.test.to(cuda);
  FixMatchOptions options = ToyFixMatch(7);
  options.cuda_graph = true;
  auto trainer = FixMatchTrainer::Create(ToyModel(), options, cuda);
  ASSERT_THAT(trainer, IsOk());
  std::vector<double> losses;
  for (int i = 0; i < 40; ++i) {
    auto stats = (*trainer)->Step(labelled, targets, unlabelled);
    ASSERT_THAT(stats, IsOk());
    EXPECT_EQ(stats->step, i + 1);
    EXPECT_DOUBLE_EQ(stats->lr, CosineLearningRate(0.03, i, 100));
    losses.push_back(stats->loss.supervised.item<double>());
  }
  // Replayed steps report their own losses (not one captured value).
  EXPECT_NE(losses[10], losses[11]);
  EXPECT_LT(losses[36] + losses[37] + losses[38] + losses[39],
            0.5 * (losses[0] + losses[1] + losses[2] + losses[3]));
  auto predictions = (*trainer)->Predict(test, /*use_ema=*/false);
  ASSERT_THAT(predictions, IsOk());
  EXPECT_GE(predictions->probs.argmax(1)
                .cpu()
                .eq(data.test_targets)
                .to(at::kFloat)
                .mean()
                .item<double>(),
            0.9);

  // New tensors of the same shapes are copied in; a new shape recaptures.
  at::Tensor unlabelled_copy = unlabelled.clone();
  EXPECT_THAT((*trainer)->Step(labelled, targets, unlabelled_copy), IsOk());
  unlabelled_copy.mul_(0.5f);  // in-place change is seen too
  EXPECT_THAT((*trainer)->Step(labelled, targets, unlabelled_copy), IsOk());
  for (int i = 0; i < 5; ++i) {
    EXPECT_THAT((*trainer)->Step(labelled.narrow(0, 0, 10),
                                 targets.narrow(0, 0, 10), unlabelled),
                IsOk());
  }
  EXPECT_EQ((*trainer)->step(), 47);

  const std::string path = testing::TempDir() + "/fixmatch_cuda_graph.pt";
  ASSERT_THAT((*trainer)->Save(path), IsOk());
  auto restored = FixMatchTrainer::Create(ToyModel(), options, cuda);
  ASSERT_THAT(restored, IsOk());
  ASSERT_THAT((*restored)->Load(path), IsOk());
  auto a = (*trainer)->Predict(test, true);
  auto b = (*restored)->Predict(test, true);
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  EXPECT_TRUE(at::allclose(a->probs, b->probs, 1e-5, 1e-6));
  for (int i = 0; i < 5; ++i) {
    EXPECT_THAT((*restored)->Step(labelled, targets, unlabelled), IsOk());
  }
}

}  // namespace
}  // namespace trainer
