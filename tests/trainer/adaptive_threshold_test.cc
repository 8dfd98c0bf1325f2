#include "trainer/objectives/adaptive_threshold.h"

#include <c10/util/Exception.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <sstream>
#include <vector>

namespace trainer {
namespace {

const torch::Device kCpu(torch::kCPU);

// A [rows, cols] float32 tensor from row-major values.
torch::Tensor Matrix(const std::vector<float>& values, int64_t cols) {
  return torch::tensor(values, torch::kFloat)
      .view({static_cast<int64_t>(values.size()) / cols, cols});
}

std::vector<double> ToVector(const torch::Tensor& t) {
  torch::Tensor flat = t.to(torch::kDouble).contiguous().view({-1});
  return std::vector<double>(flat.data_ptr<double>(),
                             flat.data_ptr<double>() + flat.numel());
}

void ExpectNear(const torch::Tensor& actual,
                const std::vector<double>& expected, double tolerance = 1e-6) {
  std::vector<double> values = ToVector(actual);
  ASSERT_EQ(values.size(), expected.size());
  for (size_t i = 0; i < values.size(); ++i) {
    EXPECT_NEAR(values[i], expected[i], tolerance) << "at " << i;
  }
}

// ---- FreeMatch

FreeMatchThresholds MakeFreeMatch(int64_t num_classes, double momentum) {
  FreeMatchThresholdOptions options;
  options.num_classes = num_classes;
  options.momentum = momentum;
  return FreeMatchThresholds(options, kCpu);
}

TEST(FreeMatchThresholdsTest, StateStartsUniform) {
  FreeMatchThresholds thresholds = MakeFreeMatch(4, 0.999);
  EXPECT_EQ(thresholds.tau().dim(), 0);
  EXPECT_EQ(thresholds.tau().scalar_type(), torch::kFloat);
  ExpectNear(thresholds.tau(), {0.25});
  ExpectNear(thresholds.p_model(), {0.25, 0.25, 0.25, 0.25});
  ExpectNear(thresholds.label_hist(), {0.25, 0.25, 0.25, 0.25});
  ExpectNear(thresholds.ClassThresholds(), {0.25, 0.25, 0.25, 0.25});
}

TEST(FreeMatchThresholdsTest, UpdatesAreClosedFormEmas) {
  const double m = 0.9;
  FreeMatchThresholds thresholds = MakeFreeMatch(3, m);
  // Batch 1: max probs 0.7, 0.5 (mean 0.6); argmax 0, 1.
  thresholds.Update(Matrix({0.7, 0.2, 0.1,  //
                            0.2, 0.5, 0.3},
                           3));
  const double u = 1.0 / 3.0;
  ExpectNear(thresholds.tau(), {m * u + (1 - m) * 0.6});
  ExpectNear(
      thresholds.p_model(),
      {m * u + (1 - m) * 0.45, m * u + (1 - m) * 0.35, m * u + (1 - m) * 0.2});
  ExpectNear(thresholds.label_hist(),
             {m * u + (1 - m) * 0.5, m * u + (1 - m) * 0.5, m * u});

  // Batch 2: max probs 0.8, 0.6, 0.4 (mean 0.6); argmax 2, 2, 0.
  thresholds.Update(Matrix({0.1, 0.1, 0.8,  //
                            0.1, 0.3, 0.6,  //
                            0.4, 0.3, 0.3},
                           3));
  const double m2 = m * m, m1 = m * (1 - m), n = 1 - m;
  ExpectNear(thresholds.tau(), {m2 * u + m1 * 0.6 + n * 0.6});
  ExpectNear(thresholds.p_model(), {m2 * u + m1 * 0.45 + n * 0.6 / 3,
                                    m2 * u + m1 * 0.35 + n * 0.7 / 3,
                                    m2 * u + m1 * 0.2 + n * 1.7 / 3});
  ExpectNear(
      thresholds.label_hist(),
      {m2 * u + m1 * 0.5 + n / 3, m2 * u + m1 * 0.5, m2 * u + n * 2.0 / 3});
}

TEST(FreeMatchThresholdsTest, MaskLowersThresholdOfUnsureClassOnly) {
  // Momentum 0: the state is the last batch's statistics.
  FreeMatchThresholds thresholds = MakeFreeMatch(3, 0.0);
  thresholds.Update(Matrix({0.9, 0.05, 0.05,  //
                            0.9, 0.05, 0.05,  //
                            0.3, 0.6, 0.1,    //
                            0.2, 0.1, 0.7},
                           3));
  const double tau = (0.9 + 0.9 + 0.6 + 0.7) / 4;  // 0.775
  const std::vector<double> p_model = {2.3 / 4, 0.8 / 4, 0.9 / 4};
  ExpectNear(thresholds.tau(), {tau});
  ExpectNear(thresholds.p_model(), p_model);
  // MaxNorm: class 0 (the most expected) keeps tau, class 1 gets the least.
  ExpectNear(thresholds.ClassThresholds(), {tau, tau * p_model[1] / p_model[0],
                                            tau * p_model[2] / p_model[0]});
  ASSERT_LT(tau * p_model[1] / p_model[0], 0.5);

  // Same confidence 0.5 (below tau): passes for class 1, fails for class 0;
  // 0.8 passes for class 0; the threshold itself passes (>=).
  const float at_tau = thresholds.tau().item<float>();
  const torch::Tensor probs = Matrix({0.5, 0.3, 0.2,  //
                                      0.3, 0.5, 0.2,  //
                                      0.8, 0.1, 0.1,  //
                                      at_tau, 0.2, 0.025},
                                     3);
  ExpectNear(thresholds.Mask(probs), {0, 1, 1, 1});
  EXPECT_EQ(thresholds.Mask(probs).scalar_type(), torch::kFloat);
}

TEST(FreeMatchThresholdsTest, StepUpdatesThenMasks) {
  FreeMatchThresholds stepped = MakeFreeMatch(3, 0.0);
  FreeMatchThresholds manual = MakeFreeMatch(3, 0.0);
  const torch::Tensor probs = Matrix({0.9, 0.05, 0.05,  //
                                      0.4, 0.35, 0.25},
                                     3);
  // Before the update tau is 1/3 and both pass; after it tau = 0.65.
  ExpectNear(manual.Mask(probs), {1, 1});
  manual.Update(probs);
  ExpectNear(stepped.Step(probs), {1, 0});
  ExpectNear(manual.Mask(probs), {1, 0});
  EXPECT_TRUE(stepped.tau().equal(manual.tau()));
}

TEST(FreeMatchThresholdsTest, StateKeepsStorageAcrossUpdateAndLoad) {
  FreeMatchThresholds thresholds = MakeFreeMatch(3, 0.99);
  void* tau = thresholds.tau().data_ptr();
  void* p_model = thresholds.p_model().data_ptr();
  void* label_hist = thresholds.label_hist().data_ptr();
  thresholds.Update(Matrix({0.7, 0.2, 0.1}, 3));
  thresholds.Step(Matrix({0.1, 0.2, 0.7}, 3));

  torch::serialize::OutputArchive out;
  MakeFreeMatch(3, 0.5).Save(out, "freematch");
  std::stringstream stream;
  out.save_to(stream);
  torch::serialize::InputArchive in;
  in.load_from(stream);
  thresholds.Load(in, "freematch");

  EXPECT_EQ(thresholds.tau().data_ptr(), tau);
  EXPECT_EQ(thresholds.p_model().data_ptr(), p_model);
  EXPECT_EQ(thresholds.label_hist().data_ptr(), label_hist);
  ExpectNear(thresholds.tau(), {1.0 / 3});
}

// The reference's entropy_loss, by hand: `probs` are the selected samples'
// strong-view probabilities.
double ExpectedFairnessLoss(const std::vector<std::vector<double>>& probs,
                            const std::vector<double>& p_model,
                            const std::vector<double>& label_hist) {
  const size_t c = p_model.size();
  std::vector<double> mean(c, 0.0), hist(c, 0.0);
  for (const auto& row : probs) {
    size_t argmax = 0;
    for (size_t k = 0; k < c; ++k) {
      mean[k] += row[k] / probs.size();
      if (row[k] > row[argmax]) argmax = k;
    }
    hist[argmax] += 1.0 / probs.size();
  }
  std::vector<double> p(c), q(c);
  double p_sum = 0, q_sum = 0;
  for (size_t k = 0; k < c; ++k) {
    p[k] = p_model[k] / label_hist[k];
    q[k] = hist[k] > 0 ? mean[k] / hist[k] : 0.0;
    p_sum += p[k];
    q_sum += q[k];
  }
  double loss = 0;
  for (size_t k = 0; k < c; ++k) {
    loss += (p[k] / p_sum) * std::log(q[k] / q_sum + 1e-12);
  }
  return loss;
}

TEST(FreeMatchThresholdsTest, FairnessLossMatchesReferenceMaths) {
  FreeMatchThresholds thresholds = MakeFreeMatch(3, 0.0);
  thresholds.Update(Matrix({0.6, 0.3, 0.1,  //
                            0.2, 0.7, 0.1,  //
                            0.5, 0.2, 0.3,  //
                            0.1, 0.2, 0.7},
                           3));
  const std::vector<double> p_model = ToVector(thresholds.p_model());
  const std::vector<double> label_hist = ToVector(thresholds.label_hist());
  ExpectNear(thresholds.label_hist(), {0.5, 0.25, 0.25});

  // Logits log(p): softmax gives back p. Row 2 is masked out.
  const std::vector<std::vector<double>> rows = {
      {0.5, 0.3, 0.2}, {0.1, 0.6, 0.3}, {0.2, 0.2, 0.6}, {0.7, 0.2, 0.1}};
  std::vector<float> flat;
  for (const auto& row : rows) flat.insert(flat.end(), row.begin(), row.end());
  torch::Tensor logits = Matrix(flat, 3).log().requires_grad_(true);
  const torch::Tensor mask = torch::tensor({1.0f, 1.0f, 0.0f, 1.0f});

  torch::Tensor loss = thresholds.FairnessLoss(logits, mask);
  EXPECT_EQ(loss.dim(), 0);
  EXPECT_NEAR(
      loss.item<double>(),
      ExpectedFairnessLoss({rows[0], rows[1], rows[3]}, p_model, label_hist),
      1e-5);
  // Class 2 is nobody's argmax among the selected: log(1e-12) dominates.
  EXPECT_LT(loss.item<double>(), -5.0);

  loss.backward();
  ASSERT_TRUE(logits.grad().defined());
  EXPECT_TRUE(torch::isfinite(logits.grad()).all().item<bool>());
  ExpectNear(logits.grad()[2], {0, 0, 0});
  EXPECT_GT(logits.grad().abs().sum().item<double>(), 0.0);
}

// The gradient the fairness term sends into the strong logits, against
// USB's entropy_loss written out with autograd in float64 on the selected
// rows (reciprocals of the histograms detached, 1/0 taken as 0, the mean
// over the selected rows only). Once with every class predicted among the
// selected rows, once with class 2 predicted by none of them.
TEST(FreeMatchThresholdsTest, FairnessLossGradientMatchesReference) {
  FreeMatchThresholds thresholds = MakeFreeMatch(4, 0.0);
  thresholds.Update(Matrix({0.6, 0.2, 0.1, 0.1,  //
                            0.1, 0.5, 0.3, 0.1,  //
                            0.2, 0.2, 0.2, 0.4},
                           4));
  torch::manual_seed(7);
  const torch::Tensor noise = torch::randn({6, 4});
  // Row r leans to class lean[r] by 3 logits.
  const std::vector<int64_t> lean = {0, 1, 2, 3, 0, 1};
  torch::Tensor base = noise.clone();
  for (int64_t r = 0; r < 6; ++r) base[r][lean[r]] += 3.0;
  const std::vector<std::vector<float>> masks = {{1, 1, 1, 1, 0, 1},
                                                 {1, 1, 0, 1, 1, 1}};
  for (const auto& mask_values : masks) {
    const torch::Tensor mask = torch::tensor(mask_values);
    torch::Tensor logits = base.clone().requires_grad_(true);
    thresholds.FairnessLoss(logits, mask).backward();

    torch::Tensor reference_logits =
        base.to(torch::kDouble).clone().requires_grad_(true);
    const torch::Tensor rows = mask.nonzero().view({-1});
    const torch::Tensor prob_s =
        reference_logits.index_select(0, rows).softmax(1);
    torch::Tensor hist_s =
        torch::bincount(prob_s.argmax(1), /*weights=*/{}, 4).to(torch::kDouble);
    hist_s = hist_s / hist_s.sum();
    auto reciprocal = [](const torch::Tensor& t) {
      torch::Tensor r = 1.0 / t;
      return torch::where(torch::isinf(r), torch::zeros_like(r), r).detach();
    };
    torch::Tensor p = thresholds.p_model().to(torch::kDouble) *
                      reciprocal(thresholds.label_hist().to(torch::kDouble));
    p = p / p.sum();
    torch::Tensor q = prob_s.mean(0) * reciprocal(hist_s);
    q = q / q.sum();
    (p * torch::log(q + 1e-12)).sum().backward();

    EXPECT_TRUE(torch::allclose(logits.grad().to(torch::kDouble),
                                reference_logits.grad(), 1e-5, 1e-6))
        << "mask " << mask << "\nours\n"
        << logits.grad() << "\nreference\n"
        << reference_logits.grad();
    EXPECT_GT(logits.grad().abs().sum().item<double>(), 1e-4);
  }
}

TEST(FreeMatchThresholdsTest, FairnessLossWithEveryClassPredicted) {
  FreeMatchThresholds thresholds = MakeFreeMatch(3, 0.5);
  thresholds.Update(Matrix({0.6, 0.3, 0.1,  //
                            0.2, 0.7, 0.1},
                           3));
  const std::vector<std::vector<double>> rows = {
      {0.5, 0.3, 0.2}, {0.1, 0.6, 0.3}, {0.2, 0.2, 0.6}, {0.4, 0.35, 0.25}};
  std::vector<float> flat;
  for (const auto& row : rows) flat.insert(flat.end(), row.begin(), row.end());
  // Mask values > 0 select (the reference casts the mask to bool).
  const torch::Tensor loss = thresholds.FairnessLoss(
      Matrix(flat, 3).log(), torch::tensor({1.0f, 0.5f, 1.0f, 1.0f}));
  EXPECT_NEAR(loss.item<double>(),
              ExpectedFairnessLoss(rows, ToVector(thresholds.p_model()),
                                   ToVector(thresholds.label_hist())),
              1e-5);
}

TEST(FreeMatchThresholdsTest, FairnessLossOfEmptyMaskIsZero) {
  FreeMatchThresholds thresholds = MakeFreeMatch(3, 0.999);
  torch::Tensor logits = torch::randn({4, 3}).requires_grad_(true);
  torch::Tensor loss = thresholds.FairnessLoss(logits, torch::zeros({4}));
  EXPECT_TRUE(std::isfinite(loss.item<double>()));
  EXPECT_EQ(loss.item<double>(), 0.0);
  loss.backward();
  ASSERT_TRUE(logits.grad().defined());
  EXPECT_TRUE(torch::isfinite(logits.grad()).all().item<bool>());
  EXPECT_EQ(logits.grad().abs().sum().item<double>(), 0.0);
}

TEST(FreeMatchThresholdsTest, SaveLoadRoundTrips) {
  FreeMatchThresholds saved = MakeFreeMatch(3, 0.9);
  saved.Update(Matrix({0.7, 0.2, 0.1, 0.1, 0.1, 0.8}, 3));
  torch::serialize::OutputArchive out;
  saved.Save(out, "thresholds");
  std::stringstream stream;
  out.save_to(stream);

  FreeMatchThresholds loaded = MakeFreeMatch(3, 0.9);
  torch::serialize::InputArchive in;
  in.load_from(stream);
  loaded.Load(in, "thresholds");
  EXPECT_TRUE(loaded.tau().equal(saved.tau()));
  EXPECT_TRUE(loaded.p_model().equal(saved.p_model()));
  EXPECT_TRUE(loaded.label_hist().equal(saved.label_hist()));

  EXPECT_THROW(loaded.Load(in, "missing"), c10::Error);
  FreeMatchThresholds other_classes = MakeFreeMatch(4, 0.9);
  EXPECT_THROW(other_classes.Load(in, "thresholds"), c10::Error);
  ExpectNear(other_classes.p_model(), {0.25, 0.25, 0.25, 0.25});
}

TEST(FreeMatchThresholdsTest, RejectsBadShapes) {
  FreeMatchThresholds thresholds = MakeFreeMatch(3, 0.9);
  EXPECT_THROW(thresholds.Update(torch::rand({2, 4})), c10::Error);
  EXPECT_THROW(thresholds.Mask(torch::rand({3})), c10::Error);
  EXPECT_THROW(thresholds.FairnessLoss(torch::rand({2, 3}), torch::ones({3})),
               c10::Error);
  FreeMatchThresholdOptions options;
  options.momentum = 1.0;
  EXPECT_THROW(FreeMatchThresholds(options, kCpu), c10::Error);
}

// ---- SoftMatch

SoftMatchWeights MakeSoftMatch(int64_t num_classes, double momentum,
                               double n_sigma = 2.0) {
  SoftMatchWeightOptions options;
  options.num_classes = num_classes;
  options.momentum = momentum;
  options.n_sigma = n_sigma;
  return SoftMatchWeights(options, kCpu);
}

TEST(SoftMatchWeightsTest, StartsAtUsbsStateAndWeighsNearlyEverythingFully) {
  SoftMatchWeights weights = MakeSoftMatch(4, 0.999);
  EXPECT_EQ(weights.mu().dim(), 0);
  EXPECT_EQ(weights.mu().scalar_type(), torch::kFloat);
  ExpectNear(weights.mu(), {0.25});
  ExpectNear(weights.var(), {1.0});
  // Every max probability is >= 1/C, so nothing is below the mean yet.
  ExpectNear(weights.Weights(Matrix({0.25, 0.25, 0.25, 0.25,  //
                                     0.97, 0.01, 0.01, 0.01},
                                    4)),
             {1.0, 1.0});
}

TEST(SoftMatchWeightsTest, UpdatesAreClosedFormEmasOfMeanAndUnbiasedVariance) {
  const double m = 0.9;
  SoftMatchWeights weights = MakeSoftMatch(2, m);
  // Max probabilities 0.6, 0.8, 0.9: mean 0.7667, unbiased variance 0.02333.
  weights.Update(Matrix({0.6, 0.4, 0.2, 0.8, 0.1, 0.9}, 2));
  const double mean = (0.6 + 0.8 + 0.9) / 3.0;
  const double var =
      ((0.6 - mean) * (0.6 - mean) + (0.8 - mean) * (0.8 - mean) +
       (0.9 - mean) * (0.9 - mean)) /
      2.0;
  const double mu1 = m * 0.5 + (1 - m) * mean;
  const double var1 = m * 1.0 + (1 - m) * var;
  ExpectNear(weights.mu(), {mu1});
  ExpectNear(weights.var(), {var1});
  // One sample: no spread, and no NaN.
  weights.Update(Matrix({0.3, 0.7}, 2));
  ExpectNear(weights.mu(), {m * mu1 + (1 - m) * 0.7});
  ExpectNear(weights.var(), {m * var1});
}

TEST(SoftMatchWeightsTest, WeightIsTheTruncatedGaussianBelowTheMean) {
  const double m = 0.0;  // the state is this batch's mean and variance
  const double n_sigma = 3.0;
  SoftMatchWeights weights = MakeSoftMatch(2, m, n_sigma);
  const torch::Tensor probs = Matrix({0.55, 0.45, 0.3, 0.7, 0.05, 0.95}, 2);
  const double mean = (0.55 + 0.7 + 0.95) / 3.0;
  double var = 0.0;
  for (double p : {0.55, 0.7, 0.95}) var += (p - mean) * (p - mean) / 2.0;
  const double mu = m * 0.5 + (1 - m) * mean;
  const double state_var = m * 1.0 + (1 - m) * var;
  // Step updates first, then weighs with the updated state.
  const torch::Tensor w = weights.Step(probs);
  ASSERT_LT(0.7, mu);
  ASSERT_GT(0.95, mu);
  auto gaussian = [&](double p) {
    return std::exp(-(p - mu) * (p - mu) * n_sigma * n_sigma /
                    (2.0 * state_var));
  };
  ExpectNear(w, {gaussian(0.55), gaussian(0.7), 1.0});
  EXPECT_LT(w[0].item<double>(), w[1].item<double>());
  // Weights() alone reads the state without moving it.
  const torch::Tensor before = weights.mu().clone();
  weights.Weights(probs);
  EXPECT_TRUE(weights.mu().equal(before));
}

TEST(SoftMatchWeightsTest, SaveLoadRoundTripsInPlace) {
  SoftMatchWeights saved = MakeSoftMatch(3, 0.9);
  saved.Update(Matrix({0.7, 0.2, 0.1, 0.1, 0.1, 0.8}, 3));
  torch::serialize::OutputArchive out;
  saved.Save(out, "soft");
  std::stringstream stream;
  out.save_to(stream);

  SoftMatchWeights loaded = MakeSoftMatch(3, 0.9);
  const torch::Tensor mu_storage = loaded.mu();
  torch::serialize::InputArchive in;
  in.load_from(stream);
  loaded.Load(in, "soft");
  EXPECT_TRUE(loaded.mu().equal(saved.mu()));
  EXPECT_TRUE(loaded.var().equal(saved.var()));
  EXPECT_TRUE(loaded.mu().is_same(mu_storage));
  EXPECT_THROW(loaded.Load(in, "missing"), c10::Error);
}

TEST(SoftMatchWeightsTest, RejectsBadOptionsAndShapes) {
  SoftMatchWeights weights = MakeSoftMatch(3, 0.9);
  EXPECT_THROW(weights.Update(torch::rand({2, 4})), c10::Error);
  EXPECT_THROW(weights.Weights(torch::rand({3})), c10::Error);
  EXPECT_THROW(MakeSoftMatch(3, 1.0), c10::Error);
  EXPECT_THROW(MakeSoftMatch(1, 0.9), c10::Error);
  EXPECT_THROW(MakeSoftMatch(3, 0.9, 0.0), c10::Error);
}

// ---- FlexMatch

FlexMatchThresholds MakeFlexMatch(int64_t num_classes, int64_t pool_size,
                                  bool warmup) {
  FlexMatchThresholdOptions options;
  options.num_classes = num_classes;
  options.pool_size = pool_size;
  options.threshold_warmup = warmup;
  return FlexMatchThresholds(options, kCpu);
}

torch::Tensor Indices(const std::vector<int64_t>& indices) {
  return torch::tensor(indices, torch::kLong);
}

TEST(FlexMatchThresholdsTest, EverySamplePassesAtTheStart) {
  FlexMatchThresholds thresholds = MakeFlexMatch(3, 10, true);
  EXPECT_TRUE(thresholds.selected_label().eq(-1).all().item<bool>());
  ExpectNear(thresholds.beta(), {0, 0, 0});
  ExpectNear(thresholds.ClassThresholds(), {0, 0, 0});
  ExpectNear(thresholds.Mask(Matrix({1.0f / 3, 1.0f / 3, 1.0f / 3,  //
                                     0.2, 0.5, 0.3},
                                    3)),
             {1, 1});
}

TEST(FlexMatchThresholdsTest, RecordsOnlyConfidentPredictions) {
  FlexMatchThresholds thresholds = MakeFlexMatch(3, 6, true);
  thresholds.Update(Indices({4, 1, 2}), Matrix({0.96, 0.02, 0.02,  //
                                                0.02, 0.95, 0.03,  //
                                                0.5, 0.4, 0.1},
                                               3));
  ExpectNear(thresholds.selected_label(), {-1, 1, -1, -1, 0, -1});
  // A later unconfident prediction keeps the recorded one; a confident one
  // replaces it.
  thresholds.Update(Indices({4, 1}), Matrix({0.1, 0.5, 0.4,  //
                                             0.02, 0.01, 0.97},
                                            3));
  ExpectNear(thresholds.selected_label(), {-1, 2, -1, -1, 0, -1});
}

TEST(FlexMatchThresholdsTest, WarmupNormalisesByUnusedSamples) {
  FlexMatchThresholds warm = MakeFlexMatch(3, 10, true);
  FlexMatchThresholds plain = MakeFlexMatch(3, 10, false);
  // Samples 0, 1 learnt as class 0, sample 2 as class 1; 7 unused.
  const torch::Tensor indices = Indices({0, 1, 2, 3});
  const torch::Tensor probs = Matrix({0.98, 0.01, 0.01,  //
                                      0.97, 0.02, 0.01,  //
                                      0.01, 0.98, 0.01,  //
                                      0.6, 0.3, 0.1},
                                     3);
  warm.Update(indices, probs);
  plain.Update(indices, probs);
  ExpectNear(warm.beta(), {2.0 / 7, 1.0 / 7, 0});
  ExpectNear(plain.beta(), {1.0, 0.5, 0});
  auto convex = [](double b) { return 0.95 * b / (2 - b); };
  ExpectNear(warm.ClassThresholds(), {convex(2.0 / 7), convex(1.0 / 7), 0.0});
  ExpectNear(plain.ClassThresholds(), {0.95, convex(0.5), 0.0});

  // Once classes outnumber the unused samples, warm-up normalises by the
  // best-learnt class too: 6 samples of class 0, 1 of class 1, 3 unused.
  warm.Update(Indices({3, 4, 5, 6}), Matrix({0.99, 0.0, 0.01,  //
                                             0.99, 0.0, 0.01,  //
                                             0.99, 0.0, 0.01,  //
                                             0.99, 0.0, 0.01},
                                            3));
  ExpectNear(warm.beta(), {1.0, 1.0 / 6, 0});
}

TEST(FlexMatchThresholdsTest, UnderLearntClassGetsLowerThreshold) {
  FlexMatchThresholds thresholds = MakeFlexMatch(3, 10, false);
  thresholds.Update(Indices({0, 1, 2}), Matrix({0.98, 0.01, 0.01,  //
                                                0.97, 0.02, 0.01,  //
                                                0.01, 0.98, 0.01},
                                               3));
  const std::vector<double> per_class = ToVector(thresholds.ClassThresholds());
  EXPECT_LT(per_class[1], per_class[0]);
  EXPECT_LT(per_class[2], per_class[1]);
  // Confidence 0.8 fails for the learnt class 0, passes for class 1.
  ExpectNear(thresholds.Mask(Matrix({0.8, 0.1, 0.1,  //
                                     0.1, 0.8, 0.1},
                                    3)),
             {0, 1});
}

TEST(FlexMatchThresholdsTest, BetaUnchangedWhileOneBucketHoldsThePool) {
  FlexMatchThresholds thresholds = MakeFlexMatch(3, 2, false);
  // Both pool samples learnt as class 0: the reference skips the update.
  thresholds.Update(Indices({0, 1}), Matrix({0.99, 0.0, 0.01,  //
                                             0.99, 0.0, 0.01},
                                            3));
  ExpectNear(thresholds.selected_label(), {0, 0});
  ExpectNear(thresholds.beta(), {0, 0, 0});
  thresholds.Update(Indices({1}), Matrix({0.0, 0.99, 0.01}, 3));
  ExpectNear(thresholds.beta(), {1, 1, 0});
}

TEST(FlexMatchThresholdsTest, StepMasksThenUpdates) {
  FlexMatchThresholds thresholds = MakeFlexMatch(3, 4, false);
  const torch::Tensor probs = Matrix({0.99, 0.0, 0.01,  //
                                      0.6, 0.3, 0.1},
                                     3);
  // Masked with the initial (zero) thresholds, then recorded.
  ExpectNear(thresholds.Step(Indices({0, 1}), probs), {1, 1});
  ExpectNear(thresholds.beta(), {1, 0, 0});
  ExpectNear(thresholds.Mask(probs), {1, 0});
}

TEST(FlexMatchThresholdsTest, StateKeepsStorageAcrossUpdateAndLoad) {
  FlexMatchThresholds thresholds = MakeFlexMatch(3, 5, true);
  void* selected = thresholds.selected_label().data_ptr();
  void* beta = thresholds.beta().data_ptr();
  thresholds.Step(Indices({0, 3}), Matrix({0.99, 0.0, 0.01,  //
                                           0.0, 0.99, 0.01},
                                          3));
  torch::serialize::OutputArchive out;
  MakeFlexMatch(3, 5, true).Save(out, "flexmatch");
  std::stringstream stream;
  out.save_to(stream);
  torch::serialize::InputArchive in;
  in.load_from(stream);
  thresholds.Load(in, "flexmatch");
  EXPECT_EQ(thresholds.selected_label().data_ptr(), selected);
  EXPECT_EQ(thresholds.beta().data_ptr(), beta);
  EXPECT_TRUE(thresholds.selected_label().eq(-1).all().item<bool>());
}

TEST(FlexMatchThresholdsTest, SaveLoadRoundTrips) {
  FlexMatchThresholds saved = MakeFlexMatch(3, 5, true);
  saved.Update(Indices({0, 3, 4}), Matrix({0.99, 0.0, 0.01,  //
                                           0.0, 0.99, 0.01,  //
                                           0.0, 0.98, 0.02},
                                          3));
  torch::serialize::OutputArchive out;
  saved.Save(out, "thresholds");
  std::stringstream stream;
  out.save_to(stream);

  FlexMatchThresholds loaded = MakeFlexMatch(3, 5, true);
  torch::serialize::InputArchive in;
  in.load_from(stream);
  loaded.Load(in, "thresholds");
  EXPECT_TRUE(loaded.selected_label().equal(saved.selected_label()));
  EXPECT_TRUE(loaded.beta().equal(saved.beta()));
  ExpectNear(loaded.beta(), {0.5, 1.0, 0});

  FlexMatchThresholds other_pool = MakeFlexMatch(3, 6, true);
  EXPECT_THROW(other_pool.Load(in, "thresholds"), c10::Error);
  EXPECT_THROW(loaded.Load(in, "missing"), c10::Error);
}

TEST(FlexMatchThresholdsTest, RejectsBadShapes) {
  FlexMatchThresholds thresholds = MakeFlexMatch(3, 5, true);
  EXPECT_THROW(thresholds.Update(Indices({0, 1}), torch::rand({3, 3})),
               c10::Error);
  EXPECT_THROW(thresholds.Update(Indices({0}), torch::rand({1, 4})),
               c10::Error);
  FlexMatchThresholdOptions options;
  options.pool_size = 0;
  EXPECT_THROW(FlexMatchThresholds(options, kCpu), c10::Error);
}

}  // namespace
}  // namespace trainer
