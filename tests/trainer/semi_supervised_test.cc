#include "trainer/objectives/semi_supervised.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <cmath>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "common/status_matchers.h"
#include "tests/trainer/toy_step.h"

namespace trainer {
namespace {

using ::common::IsOk;
using ::common::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(SemiSupervisedForwardTest, BatchShapesAndGradients) {
  ToyContext toy = MakeToyContext();
  SemiSupervisedOptions options;
  options.batch_size = 4;
  options.mu = 3;
  for (WeakViewForward forward :
       {WeakViewForward::kJoint, WeakViewForward::kSeparate,
        WeakViewForward::kEma}) {
    options.weak_forward = forward;
    SemiSupervisedLogits logits =
        SemiSupervisedForward(toy.context(), ToyStepData(), options);
    EXPECT_EQ(logits.logits_x.sizes(), (at::IntArrayRef{4, 3}));
    EXPECT_TRUE(at::equal(logits.targets_x, at::full({4}, 2, at::kLong)));
    EXPECT_EQ(logits.logits_u_weak.sizes(), (at::IntArrayRef{12, 3}));
    EXPECT_EQ(logits.logits_u_strong.sizes(), (at::IntArrayRef{12, 3}));
    EXPECT_FALSE(logits.logits_u_weak.requires_grad())
        << WeakViewForwardName(forward);
    EXPECT_TRUE(logits.logits_u_strong.requires_grad());
    EXPECT_TRUE(logits.logits_x.requires_grad());
    EXPECT_EQ(logits.embedding_x.size(0), 4);
    EXPECT_EQ(logits.embedding_u_weak.size(0), 12);
    EXPECT_EQ(logits.embedding_u_weak.sizes(),
              logits.embedding_u_strong.sizes());
    EXPECT_TRUE(logits.embedding_u_strong.requires_grad());
    EXPECT_EQ(logits.embedding_u_weak.requires_grad(),
              forward == WeakViewForward::kJoint)
        << WeakViewForwardName(forward);
  }
}

TEST(SemiSupervisedForwardTest, SeparateForwardSeesTheSameViews) {
  // With batch norm on running statistics (eval mode) every image's logits
  // are its own, so the joint and the separate forward must agree row by
  // row: same draws, same slicing, only the passes differ.
  SemiSupervisedOptions options;
  options.batch_size = 4;
  options.mu = 3;
  auto run = [&](WeakViewForward forward, bool train) {
    torch::manual_seed(3);  // the same initial weights for every run
    ToyContext toy = MakeToyContext();
    if (!train) toy.model->eval();
    options.weak_forward = forward;
    return SemiSupervisedForward(toy.context(), ToyStepData(), options);
  };
  SemiSupervisedLogits joint = run(WeakViewForward::kJoint, false);
  SemiSupervisedLogits separate = run(WeakViewForward::kSeparate, false);
  EXPECT_TRUE(at::equal(joint.unlabelled_index, separate.unlabelled_index));
  EXPECT_TRUE(at::allclose(joint.logits_x, separate.logits_x, 1e-4, 1e-5));
  EXPECT_TRUE(
      at::allclose(joint.logits_u_weak, separate.logits_u_weak, 1e-4, 1e-5));
  EXPECT_TRUE(at::allclose(joint.logits_u_strong, separate.logits_u_strong,
                           1e-4, 1e-5));
  // In training mode batch statistics differ between the passes: the weak
  // views are really forwarded on their own.
  SemiSupervisedLogits joint_train = run(WeakViewForward::kJoint, true);
  SemiSupervisedLogits separate_train = run(WeakViewForward::kSeparate, true);
  EXPECT_FALSE(at::allclose(joint_train.logits_u_weak,
                            separate_train.logits_u_weak, 1e-4, 1e-5));
}

TEST(SemiSupervisedForwardTest, StrongLabelledViewsJoinTheSupervisedLoss) {
  ToyContext toy = MakeToyContext();
  SemiSupervisedOptions options;
  options.batch_size = 4;
  options.mu = 3;
  for (WeakViewForward forward :
       {WeakViewForward::kJoint, WeakViewForward::kSeparate,
        WeakViewForward::kEma}) {
    options.weak_forward = forward;
    options.strong_labelled = false;
    SemiSupervisedLogits plain =
        SemiSupervisedForward(toy.context(), ToyStepData(), options);
    EXPECT_FALSE(plain.logits_x_strong.defined());
    EXPECT_TRUE(
        at::allclose(SupervisedLoss(plain),
                     at::cross_entropy_loss(plain.logits_x, plain.targets_x)));

    options.strong_labelled = true;
    SemiSupervisedLogits logits =
        SemiSupervisedForward(toy.context(), ToyStepData(), options);
    ASSERT_TRUE(logits.logits_x_strong.defined());
    EXPECT_EQ(logits.logits_x_strong.sizes(), (at::IntArrayRef{4, 3}));
    EXPECT_TRUE(logits.logits_x_strong.requires_grad());
    EXPECT_EQ(logits.logits_x.sizes(), (at::IntArrayRef{4, 3}));
    EXPECT_EQ(logits.logits_u_weak.sizes(), (at::IntArrayRef{12, 3}));
    EXPECT_EQ(logits.logits_u_strong.sizes(), (at::IntArrayRef{12, 3}));
    EXPECT_EQ(logits.embedding_x.size(0), 4);
    EXPECT_EQ(logits.embedding_u_strong.size(0), 12);
    EXPECT_FALSE(at::allclose(logits.logits_x, logits.logits_x_strong))
        << WeakViewForwardName(forward);

    SupervisedRows rows = LabelledRows(logits);
    EXPECT_EQ(rows.logits.size(0), 8);
    EXPECT_TRUE(at::equal(rows.targets, at::full({8}, 2, at::kLong)));
    at::Tensor expected =
        0.5 *
        (at::cross_entropy_loss(logits.logits_x, logits.targets_x) +
         at::cross_entropy_loss(logits.logits_x_strong, logits.targets_x));
    EXPECT_TRUE(at::allclose(SupervisedLoss(logits), expected))
        << WeakViewForwardName(forward);
  }
}

TEST(SemiSupervisedForwardTest, StrongLabelledViewsSliceAlikeInBothForwards) {
  // As SeparateForwardSeesTheSameViews, with the labelled strong views in
  // the batch, and then also the contrast's second strong views: on running
  // statistics the joint forward, which slices weak and strong rows out of
  // one batch, and the separate one, whose weak views have a forward of
  // their own, must give every row the same logits.
  SemiSupervisedOptions options;
  options.batch_size = 4;
  options.mu = 3;
  options.strong_labelled = true;
  options.contrast.weight = 1.0;
  for (bool two_strong : {false, true}) {
    options.contrast.two_strong_views = two_strong;
    auto run = [&](WeakViewForward forward) {
      torch::manual_seed(3);
      ToyContext toy = MakeToyContext();
      toy.model->eval();
      options.weak_forward = forward;
      return SemiSupervisedForward(toy.context(), ToyStepData(), options);
    };
    SemiSupervisedLogits joint = run(WeakViewForward::kJoint);
    SemiSupervisedLogits separate = run(WeakViewForward::kSeparate);
    auto alike = [](const at::Tensor& a, const at::Tensor& b) {
      return at::allclose(a, b, 1e-4, 1e-5);
    };
    EXPECT_TRUE(alike(joint.logits_x, separate.logits_x)) << two_strong;
    EXPECT_TRUE(alike(joint.logits_x_strong, separate.logits_x_strong))
        << two_strong;
    EXPECT_TRUE(alike(joint.logits_u_weak, separate.logits_u_weak))
        << two_strong;
    EXPECT_TRUE(alike(joint.logits_u_strong, separate.logits_u_strong))
        << two_strong;
    EXPECT_FALSE(alike(joint.logits_u_weak, joint.logits_u_strong))
        << two_strong;
    EXPECT_EQ(joint.embedding_u_strong_second.defined(), two_strong);
    if (two_strong) {
      EXPECT_TRUE(alike(joint.embedding_u_strong_second,
                        separate.embedding_u_strong_second));
    }
  }
}

TEST(SemiSupervisedForwardTest, PseudoLabelViewsAverageFreshWeakViews) {
  // With the models on running statistics (eval mode) each view's
  // probabilities are its own, so K views must give the mean of the step's
  // weak view and K - 1 weak augmentations drawn next from the same
  // generator, forwarded by the model (joint, separate) or the EMA model.
  // The step's other draws and rows do not change.
  SemiSupervisedOptions options;
  options.batch_size = 4;
  options.mu = 3;
  const StepData data = ToyStepData();
  for (WeakViewForward forward :
       {WeakViewForward::kJoint, WeakViewForward::kSeparate,
        WeakViewForward::kEma}) {
    options.weak_forward = forward;
    auto make = [] {
      torch::manual_seed(3);  // the same weights on every call
      ToyContext toy = MakeToyContext();
      toy.model->eval();
      return toy;
    };
    ToyContext one_toy = make();
    options.pseudo_label_views = 1;
    SemiSupervisedLogits one =
        SemiSupervisedForward(one_toy.context(), data, options);
    // The views a three-view step draws after its own: continue the
    // generator where the one-view step left it.
    at::Tensor unlabelled =
        data.unlabelled_images.index_select(0, one.unlabelled_index);
    Classifier& teacher =
        forward == WeakViewForward::kEma ? one_toy.ema : one_toy.model;
    at::Tensor expected = at::softmax(one.logits_u_weak, 1);
    {
      torch::NoGradGuard no_grad;
      for (int view = 1; view < 3; ++view) {
        at::Tensor extra =
            WeakAugment(unlabelled, one_toy.generator, options.weak);
        expected += at::softmax(teacher->forward(extra).logits, 1);
      }
    }
    expected /= 3;

    ToyContext three_toy = make();
    options.pseudo_label_views = 3;
    SemiSupervisedLogits three =
        SemiSupervisedForward(three_toy.context(), data, options);
    const std::string name = WeakViewForwardName(forward);
    EXPECT_TRUE(at::equal(one.unlabelled_index, three.unlabelled_index));
    EXPECT_TRUE(at::allclose(one.logits_x, three.logits_x)) << name;
    EXPECT_TRUE(at::allclose(one.logits_u_strong, three.logits_u_strong))
        << name;
    EXPECT_TRUE(at::allclose(one.embedding_u_weak, three.embedding_u_weak))
        << name;
    EXPECT_FALSE(three.logits_u_weak.requires_grad()) << name;
    EXPECT_TRUE(
        at::allclose(at::softmax(three.logits_u_weak, 1), expected, 1e-5, 1e-6))
        << name;
    EXPECT_FALSE(
        at::allclose(three.logits_u_weak, one.logits_u_weak, 1e-3, 1e-4))
        << name;
  }
}

TEST(SemiSupervisedForwardTest, TwoStrongViewsAddASecondStrongEmbedding) {
  // The contrast's two_strong_views adds a second strong view of every
  // unlabelled image to the forward: its embeddings come back, with
  // gradients, in every forward mode; without the contrast's weight the
  // option changes nothing.
  SemiSupervisedOptions options;
  options.batch_size = 4;
  options.mu = 3;
  options.contrast.two_strong_views = true;
  for (WeakViewForward forward :
       {WeakViewForward::kJoint, WeakViewForward::kSeparate,
        WeakViewForward::kEma}) {
    const std::string name = WeakViewForwardName(forward);
    options.weak_forward = forward;
    options.contrast.weight = 0.0;
    ToyContext off_toy = MakeToyContext();
    SemiSupervisedLogits off =
        SemiSupervisedForward(off_toy.context(), ToyStepData(), options);
    EXPECT_FALSE(off.embedding_u_strong_second.defined()) << name;

    options.contrast.weight = 1.0;
    ToyContext toy = MakeToyContext();
    SemiSupervisedLogits logits =
        SemiSupervisedForward(toy.context(), ToyStepData(), options);
    ASSERT_TRUE(logits.embedding_u_strong_second.defined()) << name;
    EXPECT_EQ(logits.embedding_u_strong_second.sizes(),
              logits.embedding_u_strong.sizes());
    EXPECT_EQ(logits.embedding_u_strong.size(0), 12);
    EXPECT_TRUE(logits.embedding_u_strong_second.requires_grad()) << name;
    EXPECT_EQ(logits.logits_x.sizes(), (at::IntArrayRef{4, 3}));
    EXPECT_EQ(logits.logits_u_weak.sizes(), (at::IntArrayRef{12, 3}));
    EXPECT_EQ(logits.logits_u_strong.sizes(), (at::IntArrayRef{12, 3}));
    EXPECT_FALSE(at::allclose(logits.embedding_u_strong,
                              logits.embedding_u_strong_second))
        << name;
  }
}

TEST(SemiSupervisedForwardTest, TwoStrongViewsKeepTheRowsApart) {
  // Where each slice comes from, with labelled strong views in the batch
  // too. Every image is one flat grey (the labelled ones black, each
  // unlabelled one its own level) and the views only flip and shift with
  // reflected borders (no ops, no cutout), so every view of an image is the
  // image itself: on running statistics each row must carry exactly the
  // logits of the image its index names, from the model that forwards it.
  StepData data = ToyStepData();
  data.labelled_images = at::zeros_like(data.labelled_images);
  const int64_t pool = data.unlabelled_images.size(0);
  data.unlabelled_images = (at::arange(1, pool + 1, at::kFloat) / (pool + 1))
                               .view({pool, 1, 1, 1})
                               .expand_as(data.unlabelled_images)
                               .contiguous();
  SemiSupervisedOptions options;
  options.batch_size = 4;
  options.mu = 3;
  options.strong_labelled = true;
  options.weak.fill = WeakFill::kReflect;
  options.strong.num_ops = 0;
  options.strong.cutout_max_fraction = 0.0;
  options.contrast.weight = 1.0;
  options.contrast.two_strong_views = true;
  for (WeakViewForward forward :
       {WeakViewForward::kJoint, WeakViewForward::kSeparate,
        WeakViewForward::kEma}) {
    const std::string name = WeakViewForwardName(forward);
    options.weak_forward = forward;
    torch::manual_seed(3);
    ToyContext toy = MakeToyContext();
    toy.model->eval();
    SemiSupervisedLogits logits =
        SemiSupervisedForward(toy.context(), data, options);
    ModelOutput black;
    ModelOutput unlabelled;
    ModelOutput unlabelled_teacher;
    {
      torch::NoGradGuard no_grad;
      black = toy.model->forward(at::zeros({4, 1, 28, 28}));
      at::Tensor images =
          data.unlabelled_images.index_select(0, logits.unlabelled_index);
      unlabelled = toy.model->forward(images);
      unlabelled_teacher = forward == WeakViewForward::kEma
                               ? toy.ema->forward(images)
                               : unlabelled;
    }
    auto same = [](const at::Tensor& a, const at::Tensor& b) {
      return a.sizes() == b.sizes() && at::allclose(a, b, 1e-4, 1e-5);
    };
    // Rows differ from one another and from the black image, so a slice
    // taken from the wrong rows fails the checks below.
    EXPECT_FALSE(same(unlabelled.logits,
                      unlabelled.logits[0].expand_as(unlabelled.logits)))
        << name;
    EXPECT_FALSE(
        same(unlabelled.logits, black.logits[0].expand_as(unlabelled.logits)))
        << name;
    EXPECT_TRUE(same(logits.logits_x, black.logits)) << name;
    EXPECT_TRUE(same(logits.logits_x_strong, black.logits)) << name;
    EXPECT_TRUE(same(logits.embedding_x, black.embedding)) << name;
    EXPECT_TRUE(same(logits.logits_u_weak, unlabelled_teacher.logits)) << name;
    EXPECT_TRUE(same(logits.embedding_u_weak, unlabelled_teacher.embedding))
        << name;
    EXPECT_TRUE(same(logits.logits_u_strong, unlabelled.logits)) << name;
    EXPECT_TRUE(same(logits.embedding_u_strong, unlabelled.embedding)) << name;
    EXPECT_TRUE(same(logits.embedding_u_strong_second, unlabelled.embedding))
        << name;
  }
}

TEST(SemiSupervisedForwardTest, PseudoLabelViewsAreOneToEight) {
  SemiSupervisedOptions options;
  options.batch_size = 4;
  options.mu = 3;
  for (int views : {1, 2, 8}) {
    options.pseudo_label_views = views;
    EXPECT_THAT(ValidateSemiSupervisedOptions(options), IsOk()) << views;
  }
  for (int views : {0, -1, 9}) {
    options.pseudo_label_views = views;
    EXPECT_THAT(ValidateSemiSupervisedOptions(options),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << views;
  }
}

TEST(SemiSupervisedForwardTest, MixupAddsMixedLabelledRowsAndLeavesTheRest) {
  // On running statistics (eval mode) every row's logits are its own image's:
  // with mixup on, the labelled, weak and strong rows must be those of the
  // same step without it (the mixing is drawn after them), in every forward.
  SemiSupervisedOptions options;
  options.batch_size = 4;
  options.mu = 3;
  for (WeakViewForward forward :
       {WeakViewForward::kJoint, WeakViewForward::kSeparate,
        WeakViewForward::kEma}) {
    options.weak_forward = forward;
    auto run = [&](double alpha) {
      torch::manual_seed(3);
      ToyContext toy = MakeToyContext();
      toy.model->eval();
      options.mixup_alpha = alpha;
      return SemiSupervisedForward(toy.context(), ToyStepData(), options);
    };
    SemiSupervisedLogits plain = run(0.0);
    SemiSupervisedLogits mixed = run(0.75);
    const std::string name = WeakViewForwardName(forward);
    EXPECT_FALSE(plain.logits_x_mixed.defined()) << name;
    ASSERT_TRUE(mixed.logits_x_mixed.defined()) << name;
    EXPECT_EQ(mixed.logits_x_mixed.sizes(), (at::IntArrayRef{4, 3}));
    auto alike = [](const at::Tensor& a, const at::Tensor& b) {
      return at::allclose(a, b, 1e-4, 1e-5);
    };
    EXPECT_TRUE(alike(plain.logits_x, mixed.logits_x)) << name;
    EXPECT_TRUE(alike(plain.logits_u_weak, mixed.logits_u_weak)) << name;
    EXPECT_TRUE(alike(plain.logits_u_strong, mixed.logits_u_strong)) << name;
    EXPECT_TRUE(alike(plain.embedding_x, mixed.embedding_x)) << name;
    EXPECT_TRUE(alike(plain.embedding_u_weak, mixed.embedding_u_weak)) << name;
    // A mixed image is neither its own nor its partner's view.
    EXPECT_FALSE(alike(mixed.logits_x_mixed, mixed.logits_x)) << name;
    EXPECT_TRUE(at::equal(mixed.targets_x_partner, mixed.targets_x.roll(1, 0)));
    EXPECT_TRUE((mixed.mix_own_share >= 0.5).all().item<bool>()) << name;
    EXPECT_TRUE((mixed.mix_own_share <= 1.0).all().item<bool>()) << name;
  }
  // In training mode the mixed rows are in the graph.
  ToyContext toy = MakeToyContext();
  options.weak_forward = WeakViewForward::kJoint;
  options.mixup_alpha = 0.75;
  SemiSupervisedLogits train =
      SemiSupervisedForward(toy.context(), ToyStepData(), options);
  EXPECT_TRUE(train.logits_x_mixed.requires_grad());
}

TEST(SemiSupervisedForwardTest, MixupSharesFollowTheBetaDistribution) {
  // alpha 1: l is uniform on [0, 1], so max(l, 1 - l) is uniform on
  // [0.5, 1] (mean 0.75, sd 0.144; over 400 draws the mean's sd is 0.007).
  ToyContext toy = MakeToyContext();
  SemiSupervisedOptions options;
  options.batch_size = 400;
  options.mu = 1;
  options.mixup_alpha = 1.0;
  at::Tensor share =
      SemiSupervisedForward(toy.context(), ToyStepData(), options)
          .mix_own_share;
  ASSERT_EQ(share.size(0), 400);
  EXPECT_NEAR(share.mean().item<double>(), 0.75, 0.03);
  // Its outer quarters hold a quarter each (sd of a fraction 0.022).
  EXPECT_NEAR((share > 0.875).to(at::kFloat).mean().item<double>(), 0.25, 0.08);
  EXPECT_NEAR((share < 0.625).to(at::kFloat).mean().item<double>(), 0.25, 0.08);
  EXPECT_GE(share.min().item<double>(), 0.5);
  // A large alpha concentrates l at 1/2.
  options.mixup_alpha = 1000.0;
  share = SemiSupervisedForward(toy.context(), ToyStepData(), options)
              .mix_own_share;
  EXPECT_LT(share.max().item<double>(), 0.6);
}

TEST(SemiSupervisedForwardTest, MixedRowsLossWeighsBothTargetsByTheirShare) {
  // By hand: 2 labelled rows and 2 mixed rows over 3 classes.
  SemiSupervisedLogits logits;
  logits.logits_x =
      at::tensor({2.0f, 0.0f, -1.0f, 0.5f, 1.5f, 0.0f}).view({2, 3});
  logits.targets_x = at::tensor({0L, 2L});
  logits.logits_x_mixed =
      at::tensor({1.0f, 1.0f, 0.0f, -1.0f, 0.0f, 2.0f}).view({2, 3});
  logits.targets_x_partner = at::tensor({2L, 0L});
  logits.mix_own_share = at::tensor({0.75f, 0.5f});
  auto ce = [](const at::Tensor& row, int64_t target) {
    return -at::log_softmax(row, 0)[target].item<double>();
  };
  const at::Tensor& x = logits.logits_x;
  const at::Tensor& m = logits.logits_x_mixed;
  const double expected =
      (ce(x[0], 0) + ce(x[1], 2) + 0.75 * ce(m[0], 0) + 0.25 * ce(m[0], 2) +
       0.5 * ce(m[1], 2) + 0.5 * ce(m[1], 0)) /
      4.0;
  EXPECT_NEAR(SupervisedLoss(logits).item<double>(), expected, 1e-5);
}

TEST(SemiSupervisedForwardTest, MixupAlphaMustBeFiniteAndNonNegative) {
  SemiSupervisedOptions options;
  for (double alpha : {0.0, 0.2, 4.0}) {
    options.mixup_alpha = alpha;
    EXPECT_THAT(ValidateSemiSupervisedOptions(options), IsOk()) << alpha;
  }
  for (double alpha : {-0.5, std::nan(""), HUGE_VAL}) {
    options.mixup_alpha = alpha;
    EXPECT_THAT(ValidateSemiSupervisedOptions(options),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << alpha;
  }
}

TEST(SemiSupervisedForwardTest, UnlabelledMixupAddsMixedRowsAndLeavesTheRest) {
  // Eval mode, as above: with unlabelled mixup on, every other row is that
  // of the same step with labelled mixup alone (its draws come last), in
  // every forward; without a weak shift or flip the weak views are the
  // images themselves, so each mixed row must be the model's logits of
  // share * image_i + (1 - share) * image_{i-1}.
  SemiSupervisedOptions options;
  options.batch_size = 4;
  options.mu = 3;
  options.mixup_alpha = 0.75;
  options.weak.flip_probability = 0.0;
  options.weak.max_translate = 0.0;
  auto alike = [](const at::Tensor& a, const at::Tensor& b) {
    return at::allclose(a, b, 1e-4, 1e-5);
  };
  for (WeakViewForward forward :
       {WeakViewForward::kJoint, WeakViewForward::kSeparate,
        WeakViewForward::kEma}) {
    options.weak_forward = forward;
    ToyContext toy;
    auto run = [&](bool unlabelled) {
      torch::manual_seed(3);
      toy = MakeToyContext();
      toy.model->eval();
      options.mixup_unlabelled = unlabelled;
      return SemiSupervisedForward(toy.context(), ToyStepData(), options);
    };
    SemiSupervisedLogits plain = run(false);
    SemiSupervisedLogits mixed = run(true);
    const std::string name = WeakViewForwardName(forward);
    EXPECT_FALSE(plain.logits_u_mixed.defined()) << name;
    ASSERT_TRUE(mixed.logits_u_mixed.defined()) << name;
    EXPECT_EQ(mixed.logits_u_mixed.sizes(), (at::IntArrayRef{12, 3}));
    EXPECT_TRUE(alike(plain.logits_x, mixed.logits_x)) << name;
    EXPECT_TRUE(alike(plain.logits_x_mixed, mixed.logits_x_mixed)) << name;
    EXPECT_TRUE(at::equal(plain.mix_own_share, mixed.mix_own_share)) << name;
    EXPECT_TRUE(alike(plain.logits_u_weak, mixed.logits_u_weak)) << name;
    EXPECT_TRUE(alike(plain.logits_u_strong, mixed.logits_u_strong)) << name;
    EXPECT_TRUE(alike(plain.embedding_u_strong, mixed.embedding_u_strong))
        << name;
    const at::Tensor& share = mixed.mix_u_own_share;
    ASSERT_EQ(share.size(0), 12);
    EXPECT_TRUE((share >= 0.5).all().item<bool>()) << name;
    EXPECT_TRUE((share <= 1.0).all().item<bool>()) << name;
    at::Tensor images =
        ToyStepData().unlabelled_images.index_select(0, mixed.unlabelled_index);
    at::Tensor s = share.view({12, 1, 1, 1});
    at::Tensor by_hand = s * images + (1.0 - s) * images.roll(1, 0);
    torch::NoGradGuard no_grad;
    EXPECT_TRUE(alike(toy.model->forward(by_hand).logits,
                      mixed.logits_u_mixed))
        << name;
  }
  // In training mode the mixed unlabelled rows are in the graph.
  ToyContext toy = MakeToyContext();
  options.weak_forward = WeakViewForward::kJoint;
  options.mixup_unlabelled = true;
  SemiSupervisedLogits train =
      SemiSupervisedForward(toy.context(), ToyStepData(), options);
  EXPECT_TRUE(train.logits_u_mixed.requires_grad());
}

TEST(SemiSupervisedForwardTest, PseudoLabelLossWeighsMixedRowsByShareAndMask) {
  // By hand: 2 strong views and 2 mixed unlabelled rows over 3 classes,
  // hard pseudo-labels 1 and 0, the second image masked out.
  SemiSupervisedLogits logits;
  at::Tensor strong =
      at::tensor({2.0f, 0.0f, -1.0f, 0.5f, 1.5f, 0.0f}).view({2, 3});
  at::Tensor probs = at::tensor({0.2f, 0.7f, 0.1f, 0.6f, 0.3f, 0.1f}).view({2, 3});
  at::Tensor mask = at::tensor({1.0f, 0.0f});
  auto ce = [](const at::Tensor& row, int64_t target) {
    return -at::log_softmax(row, 0)[target].item<double>();
  };
  // Without mixed rows: the masked mean over the strong views.
  EXPECT_NEAR(PseudoLabelLoss(logits, strong, probs, mask, false).item<double>(),
              ce(strong[0], 1) / 2.0, 1e-5);
  logits.logits_u_mixed =
      at::tensor({1.0f, 1.0f, 0.0f, -1.0f, 0.0f, 2.0f}).view({2, 3});
  logits.mix_u_own_share = at::tensor({0.75f, 0.6f});
  const at::Tensor& m = logits.logits_u_mixed;
  // Row 0's partner is image 1 (masked), row 1's is image 0.
  const double expected =
      (ce(strong[0], 1) + 0.75 * ce(m[0], 1) + 0.4 * ce(m[1], 1)) / 4.0;
  EXPECT_NEAR(PseudoLabelLoss(logits, strong, probs, mask, false).item<double>(),
              expected, 1e-5);
  // Soft targets: the cross-entropy against each distribution.
  auto soft = [&](const at::Tensor& row, int64_t image) {
    return -(probs[image] * at::log_softmax(row, 0)).sum().item<double>();
  };
  const double expected_soft =
      (soft(strong[0], 0) + 0.75 * soft(m[0], 0) + 0.4 * soft(m[1], 0)) / 4.0;
  EXPECT_NEAR(PseudoLabelLoss(logits, strong, probs, mask, true).item<double>(),
              expected_soft, 1e-5);
}

TEST(SemiSupervisedForwardTest, UnlabelledMixupNeedsAlphaAndNoPseudoHead) {
  SemiSupervisedOptions options;
  options.mixup_unlabelled = true;
  EXPECT_THAT(ValidateSemiSupervisedOptions(options),
              StatusIs(absl::StatusCode::kInvalidArgument));
  options.mixup_alpha = 0.75;
  EXPECT_THAT(ValidateSemiSupervisedOptions(options), IsOk());
  options.pseudo_head = true;
  EXPECT_THAT(ValidateSemiSupervisedOptions(options),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(SemiSupervisedForwardTest, EnhanceFactorsMustBeAnOrderedFiniteRange) {
  SemiSupervisedOptions options;
  options.strong.min_enhance = 0.05;
  options.strong.max_enhance = 0.95;  // the FixMatch paper's range
  EXPECT_THAT(ValidateSemiSupervisedOptions(options), IsOk());
  options.strong.min_enhance = options.strong.max_enhance = 1.0;  // identity
  EXPECT_THAT(ValidateSemiSupervisedOptions(options), IsOk());
  for (const auto& [low, high] : std::vector<std::pair<double, double>>{
           {1.2, 0.8}, {-0.1, 1.0}, {0.1, INFINITY}, {NAN, 1.0}, {0.1, NAN}}) {
    options.strong.min_enhance = low;
    options.strong.max_enhance = high;
    EXPECT_THAT(ValidateSemiSupervisedOptions(options),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("enhance factors")))
        << low << " " << high;
  }
}

TEST(SemiSupervisedForwardTest, NumOpsMustFitTheOpsListed) {
  SemiSupervisedOptions options;
  options.strong.num_ops = 2;
  options.strong.ops = {StrongOp::kRotate, StrongOp::kEqualize};
  EXPECT_THAT(ValidateSemiSupervisedOptions(options), IsOk());
  options.strong.num_ops = 3;
  EXPECT_THAT(ValidateSemiSupervisedOptions(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("must be in [0, 2] (the ops it chooses "
                                 "among: rotate,equalize)")));
  options.strong.ops.clear();  // all 13
  options.strong.num_ops = kNumStrongOps;
  EXPECT_THAT(ValidateSemiSupervisedOptions(options), IsOk());
  options.strong.num_ops = kNumStrongOps + 1;
  EXPECT_THAT(ValidateSemiSupervisedOptions(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("must be in [0, 13]")));
  options.strong.num_ops = 1;
  options.strong.ops = {StrongOp::kRotate, StrongOp::kRotate};
  EXPECT_THAT(
      ValidateSemiSupervisedOptions(options),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at most once")));
  options.strong.ops = {static_cast<StrongOp>(kNumStrongOps)};
  EXPECT_THAT(
      ValidateSemiSupervisedOptions(options),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("known ops")));
}

TEST(SemiSupervisedForwardTest, ParsesWeakViewForwardNames) {
  for (WeakViewForward forward :
       {WeakViewForward::kJoint, WeakViewForward::kSeparate,
        WeakViewForward::kEma}) {
    auto parsed = ParseWeakViewForward(WeakViewForwardName(forward));
    ASSERT_THAT(parsed, IsOk());
    EXPECT_EQ(*parsed, forward);
  }
  EXPECT_THAT(ParseWeakViewForward("student"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

SemiSupervisedOptions SmallBatch() {
  SemiSupervisedOptions options;
  options.batch_size = 4;
  options.mu = 2;
  return options;
}

TEST(PseudoLabellingTest, ValidatesTheContrastAndItsMemory) {
  SemiSupervisedOptions options = SmallBatch();
  EXPECT_THAT(PseudoLabelling::Create(options, 3, at::kCPU, 0, 0), IsOk());
  EXPECT_THAT(PseudoLabelling::Create(options, 1, at::kCPU, 0, 0),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // A memory needs the contrast's head.
  options.contrast.memory_size = 64;
  EXPECT_THAT(PseudoLabelling::Create(options, 3, at::kCPU, 16, 0),
              StatusIs(absl::StatusCode::kInvalidArgument));
  options.contrast.weight = 1.0;
  EXPECT_THAT(PseudoLabelling::Create(options, 3, at::kCPU, 16, 0), IsOk());
  // The contrast needs the embedding size.
  EXPECT_THAT(PseudoLabelling::Create(options, 3, at::kCPU, 0, 0),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // One step is 4 labelled + 8 unlabelled images: 11 entries cannot hold it.
  options.contrast.memory_size = 11;
  EXPECT_THAT(PseudoLabelling::Create(options, 3, at::kCPU, 16, 0),
              StatusIs(absl::StatusCode::kInvalidArgument));
  options.contrast.memory_size = 12;
  EXPECT_THAT(PseudoLabelling::Create(options, 3, at::kCPU, 16, 0), IsOk());
  options.contrast.smoothing_alpha = 1.5;
  EXPECT_THAT(PseudoLabelling::Create(options, 3, at::kCPU, 16, 0),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // Two strong views are the contrast's: not without it.
  SemiSupervisedOptions views = SmallBatch();
  views.contrast.two_strong_views = true;
  EXPECT_THAT(PseudoLabelling::Create(views, 3, at::kCPU, 16, 0),
              StatusIs(absl::StatusCode::kInvalidArgument));
  views.contrast.weight = 1.0;
  EXPECT_THAT(PseudoLabelling::Create(views, 3, at::kCPU, 16, 0), IsOk());
}

TEST(SemiSupervisedForwardTest, ValidatesTheStrongAugmentation) {
  SemiSupervisedOptions options = SmallBatch();
  options.strong.cutout_max_fraction = 0.0;
  EXPECT_THAT(ValidateSemiSupervisedOptions(options), IsOk());
  options.strong.cutout_max_fraction = 1.0;
  EXPECT_THAT(ValidateSemiSupervisedOptions(options), IsOk());
  for (double bad : {-0.1, 1.5, std::nan("")}) {
    options.strong.cutout_max_fraction = bad;
    EXPECT_THAT(ValidateSemiSupervisedOptions(options),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << bad;
  }
  options.strong.cutout_max_fraction = 0.5;
  options.strong.num_ops = kNumStrongOps + 1;
  EXPECT_THAT(ValidateSemiSupervisedOptions(options),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(PseudoLabellingTest, WithoutContrastLabelsAreTheWeakViewsSoftmax) {
  ToyContext toy = MakeToyContext();
  auto labelling = PseudoLabelling::Create(SmallBatch(), 3, at::kCPU, 0, 0);
  ASSERT_THAT(labelling, IsOk());
  SemiSupervisedLogits logits =
      SemiSupervisedForward(toy.context(), ToyStepData(), SmallBatch());
  PseudoLabels labels = (*labelling)->Label(logits);
  EXPECT_TRUE(at::allclose(labels.probs, at::softmax(logits.logits_u_weak, 1)));
  EXPECT_FALSE(labels.projections.weak.defined());
  ObjectiveLoss loss{at::ones({}), {}};
  (*labelling)->AddTerms(labels, loss);
  EXPECT_EQ(loss.total.item<float>(), 1.0f);
  EXPECT_TRUE(loss.scalars.empty());
  EXPECT_THAT((*labelling)->MetricNames({"loss_x"}), ElementsAre("loss_x"));
  EXPECT_TRUE((*labelling)->TrainedModules().empty());
  EXPECT_EQ((*labelling)->contrast(), nullptr);
}

TEST(PseudoLabellingTest, BlendsInTheTeachersProbabilitiesOfTheSameImages) {
  ToyContext toy = MakeToyContext();
  StepData data = ToyStepData();
  // Each pool image's teacher distribution is one-hot on its row mod 3.
  data.teacher_probs = at::one_hot(at::arange(20) % 3, 3).to(at::kFloat);
  for (double weight : {1.0, 0.25, 0.0}) {
    SemiSupervisedOptions options = SmallBatch();
    options.teacher_weight = weight;
    auto labelling = PseudoLabelling::Create(options, 3, at::kCPU, 0, 0);
    ASSERT_THAT(labelling, IsOk());
    SemiSupervisedLogits logits =
        SemiSupervisedForward(toy.context(), data, options);
    // The teacher rows are those of the sampled pool images.
    ASSERT_TRUE(logits.teacher_probs.defined());
    EXPECT_TRUE(at::equal(logits.teacher_probs.argmax(1),
                          logits.unlabelled_index % 3));
    PseudoLabels labels = (*labelling)->Label(logits);
    at::Tensor own = at::softmax(logits.logits_u_weak, 1);
    EXPECT_TRUE(at::allclose(
        labels.probs, (1 - weight) * own + weight * logits.teacher_probs))
        << weight;
  }
  // Without a teacher the weight changes nothing.
  SemiSupervisedOptions options = SmallBatch();
  options.teacher_weight = 1.0;
  auto labelling = PseudoLabelling::Create(options, 3, at::kCPU, 0, 0);
  ASSERT_THAT(labelling, IsOk());
  SemiSupervisedLogits logits =
      SemiSupervisedForward(toy.context(), ToyStepData(), options);
  EXPECT_FALSE(logits.teacher_probs.defined());
  EXPECT_TRUE(at::allclose((*labelling)->Label(logits).probs,
                           at::softmax(logits.logits_u_weak, 1)));
}

TEST(PseudoLabellingTest, TeacherWeightMustBeAFraction) {
  SemiSupervisedOptions options = SmallBatch();
  for (double bad : {-0.1, 1.5, std::nan("")}) {
    options.teacher_weight = bad;
    EXPECT_THAT(ValidateSemiSupervisedOptions(options),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << bad;
  }
  options.teacher_weight = 0.0;
  EXPECT_THAT(ValidateSemiSupervisedOptions(options), IsOk());
}

TEST(PseudoLabellingTest, MemorySmoothsFromTheSecondStepOn) {
  ToyContext toy = MakeToyContext();
  SemiSupervisedOptions options = SmallBatch();
  options.contrast.weight = 0.5;
  options.contrast.memory_size = 30;
  options.contrast.smoothing_alpha = 0.5;
  auto labelling = PseudoLabelling::Create(options, 3, at::kCPU,
                                           toy.model->embedding_dim(), 1);
  ASSERT_THAT(labelling, IsOk());
  const PseudoLabelMemory* memory = (*labelling)->contrast()->memory();
  ASSERT_NE(memory, nullptr);

  // First step: the memory is empty, so the labels are the softmax; then it
  // holds the step's 8 weak views and 4 labelled images (class 2, one-hot).
  SemiSupervisedLogits first =
      SemiSupervisedForward(toy.context(), ToyStepData(), options);
  PseudoLabels first_labels = (*labelling)->Label(first);
  EXPECT_TRUE(
      at::allclose(first_labels.probs, at::softmax(first.logits_u_weak, 1)));
  EXPECT_EQ(memory->valid().sum().item<int64_t>(), 12);
  EXPECT_TRUE(
      at::equal(memory->key_probs().narrow(0, 8, 4),
                at::one_hot(at::full({4}, 2, at::kLong), 3).to(at::kFloat)));
  EXPECT_TRUE(
      at::allclose(memory->key_probs().narrow(0, 0, 8), first_labels.probs));
  // Keys are unit vectors.
  EXPECT_TRUE(at::allclose(memory->keys().narrow(0, 0, 12).norm(2, {1}),
                           at::ones({12}), 1e-4, 1e-5));

  // Second step: half its own softmax, half its neighbours', which include
  // the labelled class-2 images, so class 2 gains on average.
  SemiSupervisedLogits second =
      SemiSupervisedForward(toy.context(), ToyStepData(), options);
  PseudoLabels second_labels = (*labelling)->Label(second);
  at::Tensor own = at::softmax(second.logits_u_weak, 1);
  EXPECT_FALSE(at::allclose(second_labels.probs, own));
  EXPECT_TRUE(at::allclose(second_labels.probs.sum(1), at::ones({8})));
  EXPECT_EQ(memory->valid().sum().item<int64_t>(), 24);
  // As in CoMatch, the memory keeps each weak view's own distribution, not
  // the smoothed one (smoothing of smoothed labels would compound).
  EXPECT_TRUE(at::allclose(memory->key_probs().narrow(0, 12, 8), own));
  EXPECT_FALSE(
      at::allclose(memory->key_probs().narrow(0, 12, 8), second_labels.probs));

  // The term uses the smoothed labels' graph and trains the head.
  ObjectiveLoss loss{at::zeros({}), {}};
  (*labelling)->AddTerms(second_labels, loss);
  ASSERT_EQ(loss.scalars.size(), 2u);
  EXPECT_NEAR(loss.total.item<double>(), 0.5 * loss.scalars[0].item<double>(),
              1e-6);
  EXPECT_THAT((*labelling)->MetricNames({}),
              ElementsAre("loss_c", "contrast_neighbours"));
  ASSERT_EQ((*labelling)->TrainedModules().size(), 1u);
}

TEST(PseudoLabellingTest, TwoStrongViewsContrastTheSecondViewNotTheWeak) {
  // With two strong views the term's others are the second strong views'
  // projections, while the memory still takes the weak views' (and the
  // labelled images').
  ToyContext toy = MakeToyContext();
  SemiSupervisedOptions options = SmallBatch();
  options.contrast.weight = 0.5;
  options.contrast.memory_size = 30;
  options.contrast.two_strong_views = true;
  auto labelling = PseudoLabelling::Create(options, 3, at::kCPU,
                                           toy.model->embedding_dim(), 1);
  ASSERT_THAT(labelling, IsOk());
  SemiSupervisedLogits logits =
      SemiSupervisedForward(toy.context(), ToyStepData(), options);
  PseudoLabels labels = (*labelling)->Label(logits);
  const ContrastProjections& projections = labels.projections;
  ASSERT_TRUE(projections.strong_second.defined());
  EXPECT_EQ(projections.strong_second.sizes(), projections.strong.sizes());
  const PseudoLabelMemory* memory = (*labelling)->contrast()->memory();
  ASSERT_NE(memory, nullptr);
  EXPECT_EQ(memory->valid().sum().item<int64_t>(), 12);
  at::Tensor weak = projections.weak.detach();
  EXPECT_TRUE(at::allclose(memory->keys().narrow(0, 0, 8),
                           weak / weak.norm(2, {1}, true), 1e-4, 1e-5));

  ObjectiveLoss loss{at::zeros({}), {}};
  (*labelling)->AddTerms(labels, loss);
  ASSERT_EQ(loss.scalars.size(), 2u);
  const double with_second =
      ComputeGraphContrastLoss(projections.strong, projections.strong_second,
                               labels.probs, options.contrast.temperature,
                               options.contrast.graph_threshold)
          .loss.item<double>();
  const double with_weak =
      ComputeGraphContrastLoss(projections.strong, projections.weak,
                               labels.probs, options.contrast.temperature,
                               options.contrast.graph_threshold)
          .loss.item<double>();
  EXPECT_NEAR(loss.scalars[0].item<double>(), with_second, 1e-5);
  EXPECT_GT(std::abs(with_second - with_weak), 1e-4);
  EXPECT_NEAR(loss.total.item<double>(), 0.5 * with_second, 1e-5);
}

TEST(PseudoLabelCrossEntropyTest,
     HardAgainstTheArgmaxSoftAgainstTheDistribution) {
  // Two images, three classes; uniform logits give log softmax = -log 3 for
  // every class, so both forms are log 3 whatever the targets.
  const at::Tensor probs =
      at::tensor({0.7f, 0.2f, 0.1f, 0.1f, 0.3f, 0.6f}).reshape({2, 3});
  const at::Tensor uniform = at::zeros({2, 3});
  for (bool soft : {false, true}) {
    at::Tensor loss = PseudoLabelCrossEntropy(uniform, probs, soft);
    ASSERT_EQ(loss.sizes(), (at::IntArrayRef{2}));
    EXPECT_NEAR(loss[0].item<double>(), std::log(3.0), 1e-6) << soft;
  }
  // Logits log(0.5), log(0.25), log(0.25): log softmax is exactly those.
  const at::Tensor logits =
      at::log(at::tensor({0.5f, 0.25f, 0.25f, 0.5f, 0.25f, 0.25f}))
          .reshape({2, 3})
          .requires_grad_();
  at::Tensor hard = PseudoLabelCrossEntropy(logits, probs, false);
  EXPECT_NEAR(hard[0].item<double>(), -std::log(0.5), 1e-6);   // class 0
  EXPECT_NEAR(hard[1].item<double>(), -std::log(0.25), 1e-6);  // class 2
  at::Tensor soft = PseudoLabelCrossEntropy(logits, probs, true);
  EXPECT_NEAR(soft[0].item<double>(),
              -(0.7 * std::log(0.5) + 0.3 * std::log(0.25)), 1e-6);
  EXPECT_NEAR(soft[1].item<double>(),
              -(0.1 * std::log(0.5) + 0.9 * std::log(0.25)), 1e-6);
  // The gradient of the soft form is softmax - targets, and none reaches
  // the targets.
  at::Tensor target_probs = probs.clone().requires_grad_();
  PseudoLabelCrossEntropy(logits, target_probs, true).sum().backward();
  EXPECT_TRUE(
      at::allclose(logits.grad(), at::softmax(logits, 1) - probs, 1e-5, 1e-6));
  EXPECT_FALSE(target_probs.grad().defined());
  EXPECT_THROW(PseudoLabelCrossEntropy(at::zeros({2, 4}), probs, true),
               c10::Error);
}

TEST(PseudoLabellingTest, PseudoHeadNeedsTheEmbeddingSize) {
  SemiSupervisedOptions options = SmallBatch();
  options.pseudo_head = true;
  EXPECT_THAT(PseudoLabelling::Create(options, 3, at::kCPU, 0, 0),
              StatusIs(absl::StatusCode::kInvalidArgument));
  auto labelling = PseudoLabelling::Create(options, 3, at::kCPU, 16, 0);
  ASSERT_THAT(labelling, IsOk());
  ASSERT_EQ((*labelling)->TrainedModules().size(), 1u);
  EXPECT_EQ((*labelling)->pseudo_head()->options().hidden_dim, 32);
  EXPECT_EQ((*labelling)->pseudo_head()->options().output_dim, 3);
  // With the contrast on as well, both heads train, with their own weights.
  options.contrast.weight = 1.0;
  labelling = PseudoLabelling::Create(options, 3, at::kCPU, 16, 0);
  ASSERT_THAT(labelling, IsOk());
  ASSERT_EQ((*labelling)->TrainedModules().size(), 2u);
  const at::Tensor contrast_first =
      (*labelling)->TrainedModules()[0]->parameters()[0];
  const at::Tensor pseudo_first =
      (*labelling)->TrainedModules()[1]->parameters()[0];
  ASSERT_EQ(contrast_first.sizes(), (at::IntArrayRef{16, 16}));
  ASSERT_EQ(pseudo_first.sizes(), (at::IntArrayRef{32, 16}));
  EXPECT_FALSE(at::allclose(contrast_first, pseudo_first.narrow(0, 0, 16)));
}

TEST(PseudoLabellingTest, StrongLogitsComeFromThePseudoHeadWhenItIsOn) {
  ToyContext toy = MakeToyContext();
  SemiSupervisedOptions options = SmallBatch();
  const int64_t e = toy.model->embedding_dim();
  auto plain = PseudoLabelling::Create(options, 3, at::kCPU, e, 0);
  ASSERT_THAT(plain, IsOk());
  SemiSupervisedLogits logits =
      SemiSupervisedForward(toy.context(), ToyStepData(), options);
  // Off: the model's own strong logits, the very tensor.
  EXPECT_TRUE((*plain)->StrongLogits(logits).is_same(logits.logits_u_strong));

  options.pseudo_head = true;
  auto decoupled = PseudoLabelling::Create(options, 3, at::kCPU, e, 0);
  ASSERT_THAT(decoupled, IsOk());
  at::Tensor strong = (*decoupled)->StrongLogits(logits);
  ASSERT_EQ(strong.sizes(), logits.logits_u_strong.sizes());
  EXPECT_EQ(strong.scalar_type(), at::kFloat);
  EXPECT_FALSE(at::allclose(strong, logits.logits_u_strong));
  // The head's output on the strong views' embeddings (train-mode batch
  // norm: the same batch gives the same output).
  ProjectionHead head = (*decoupled)->pseudo_head();  // shares the module
  at::Tensor again = head->forward(logits.embedding_u_strong);
  EXPECT_TRUE(at::allclose(strong, again));
  // Its gradient reaches the backbone (through the embedding) and the head,
  // not the model's classifier.
  strong.sum().backward();
  for (const auto& named : toy.model->named_parameters()) {
    const at::Tensor& grad = named.value().grad();
    const bool classifier = named.key().rfind("classifier", 0) == 0;
    if (classifier) {
      EXPECT_TRUE(!grad.defined() || grad.abs().max().item<double>() == 0.0)
          << named.key();
    } else if (named.key().find("conv") != std::string::npos) {
      ASSERT_TRUE(grad.defined()) << named.key();
      EXPECT_GT(grad.abs().max().item<double>(), 0.0) << named.key();
    }
  }
  const at::Tensor head_grad =
      (*decoupled)->TrainedModules()[0]->parameters()[0].grad();
  ASSERT_TRUE(head_grad.defined());
  EXPECT_GT(head_grad.abs().max().item<double>(), 0.0);
}

TEST(PseudoLabellingTest, SaveLoadKeepsTheHeadAndTheMemory) {
  ToyContext toy = MakeToyContext();
  SemiSupervisedOptions options = SmallBatch();
  options.contrast.weight = 1.0;
  options.contrast.memory_size = 24;
  const int64_t e = toy.model->embedding_dim();
  auto trained = PseudoLabelling::Create(options, 3, at::kCPU, e, 1);
  auto fresh = PseudoLabelling::Create(options, 3, at::kCPU, e, 2);
  ASSERT_THAT(trained, IsOk());
  ASSERT_THAT(fresh, IsOk());
  (*trained)->Label(
      SemiSupervisedForward(toy.context(), ToyStepData(), options));

  torch::serialize::OutputArchive out;
  (*trained)->Save(out);
  std::stringstream buffer;
  out.save_to(buffer);
  torch::serialize::InputArchive in;
  in.load_from(buffer);
  for (const char* key : {"contrast_head", "contrast_memory"}) {
    torch::serialize::InputArchive part;
    EXPECT_TRUE(in.try_read(key, part)) << key;
  }
  (*fresh)->Load(in);
  EXPECT_TRUE(at::equal((*fresh)->contrast()->memory()->keys(),
                        (*trained)->contrast()->memory()->keys()));
  EXPECT_TRUE(at::equal((*fresh)->TrainedModules()[0]->parameters()[0],
                        (*trained)->TrainedModules()[0]->parameters()[0]));

  // An archive without the memory (written with it off) is refused.
  SemiSupervisedOptions no_memory = options;
  no_memory.contrast.memory_size = 0;
  auto without = PseudoLabelling::Create(no_memory, 3, at::kCPU, e, 1);
  ASSERT_THAT(without, IsOk());
  torch::serialize::OutputArchive head_only;
  (*without)->Save(head_only);
  std::stringstream head_buffer;
  head_only.save_to(head_buffer);
  torch::serialize::InputArchive head_in;
  head_in.load_from(head_buffer);
  EXPECT_THROW((*fresh)->Load(head_in), c10::Error);
}

TEST(PseudoLabellingTest, SaveLoadKeepsThePseudoHead) {
  SemiSupervisedOptions options = SmallBatch();
  options.pseudo_head = true;
  auto trained = PseudoLabelling::Create(options, 3, at::kCPU, 16, 1);
  auto fresh = PseudoLabelling::Create(options, 3, at::kCPU, 16, 2);
  ASSERT_THAT(trained, IsOk());
  ASSERT_THAT(fresh, IsOk());
  const at::Tensor fresh_first = (*fresh)->TrainedModules()[0]->parameters()[0];
  const at::Tensor trained_first =
      (*trained)->TrainedModules()[0]->parameters()[0];
  ASSERT_FALSE(at::equal(fresh_first, trained_first));
  // The archive reads its stream lazily: the stream must outlive it.
  auto archive_of = [](const PseudoLabelling& labelling,
                       std::stringstream& buffer) {
    torch::serialize::OutputArchive out;
    labelling.Save(out);
    out.save_to(buffer);
    auto in = std::make_unique<torch::serialize::InputArchive>();
    in->load_from(buffer);
    return in;
  };
  std::stringstream buffer;
  auto in = archive_of(**trained, buffer);
  torch::serialize::InputArchive part;
  EXPECT_TRUE(in->try_read("pseudo_head", part));
  (*fresh)->Load(*in);
  EXPECT_TRUE(at::equal(fresh_first, trained_first));

  // A checkpoint written without the head is refused.
  auto without = PseudoLabelling::Create(SmallBatch(), 3, at::kCPU, 16, 1);
  ASSERT_THAT(without, IsOk());
  std::stringstream bare_buffer;
  auto bare = archive_of(**without, bare_buffer);
  EXPECT_THROW((*fresh)->Load(*bare), c10::Error);
}

}  // namespace
}  // namespace trainer
