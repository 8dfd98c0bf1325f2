#include "trainer/learn/augment.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <cmath>
#include <set>
#include <utility>
#include <vector>

#include "common/status_matchers.h"

namespace trainer {
namespace {

using ::common::IsOk;
using ::common::StatusIs;
using ::testing::HasSubstr;

at::Generator Gen(uint64_t seed) {
  auto gen = MakeGenerator(at::kCPU, seed);
  EXPECT_THAT(gen, IsOk());
  return *gen;
}

// [n, 1, 28, 28] zeros with a bright 10x6 block, rows 9..18, cols 11..16.
at::Tensor BlockImages(int64_t n) {
  at::Tensor x = at::zeros({n, 1, 28, 28});
  x.narrow(2, 9, 10).narrow(3, 11, 6).fill_(0.8f);
  return x;
}

at::Tensor Magnitude(int64_t n, float m) { return at::full({n}, m); }

// Centre of mass (row, col) of image i of x.
std::pair<double, double> Centroid(const at::Tensor& x, int64_t i) {
  at::Tensor img = x[i][0];
  const double mass = img.sum().item<double>();
  at::Tensor rows = at::arange(img.size(0), img.options()).view({-1, 1});
  at::Tensor cols = at::arange(img.size(1), img.options()).view({1, -1});
  return {(img * rows).sum().item<double>() / mass,
          (img * cols).sum().item<double>() / mass};
}

TEST(MakeGeneratorTest, CpuOkOtherDevicesNot) {
  EXPECT_THAT(MakeGenerator(at::kCPU, 3), IsOk());
  EXPECT_THAT(MakeGenerator(at::Device(at::kMeta), 3),
              StatusIs(absl::StatusCode::kUnimplemented));
}

TEST(WeakAugmentTest, ShapeRangeAndDeterminism) {
  at::Tensor x = at::rand({16, 1, 28, 28}, Gen(1));
  at::Generator g1 = Gen(5), g2 = Gen(5), g3 = Gen(6);
  at::Tensor a = WeakAugment(x, g1);
  at::Tensor b = WeakAugment(x, g2);
  at::Tensor c = WeakAugment(x, g3);
  EXPECT_EQ(a.sizes(), x.sizes());
  EXPECT_TRUE(a.is_contiguous());
  EXPECT_GE(a.min().item<float>(), 0.0f);
  EXPECT_LE(a.max().item<float>(), 1.0f);
  EXPECT_TRUE(at::equal(a, b));
  EXPECT_FALSE(at::equal(a, c));
  // A second call continues the stream: different output.
  EXPECT_FALSE(at::equal(a, WeakAugment(x, g1)));
}

TEST(WeakAugmentTest, NoFlipNoShiftIsIdentity) {
  at::Tensor x = at::rand({4, 2, 28, 28}, Gen(1));
  WeakAugmentOptions options;
  options.flip_probability = 0.0;
  options.max_translate = 0.0;
  at::Generator gen = Gen(2);
  EXPECT_TRUE(at::equal(WeakAugment(x, gen, options), x));
}

TEST(WeakAugmentTest, AlwaysFlipNoShiftIsMirror) {
  at::Tensor x = at::rand({4, 1, 28, 28}, Gen(1));
  WeakAugmentOptions options;
  options.flip_probability = 1.0;
  options.max_translate = 0.0;
  at::Generator gen = Gen(2);
  EXPECT_TRUE(at::equal(WeakAugment(x, gen, options), x.flip({3})));
}

TEST(WeakAugmentTest, ShiftsMoveWholeImageByAtMostFourPixels) {
  const int64_t n = 64;
  at::Tensor x = BlockImages(n);
  WeakAugmentOptions options;
  options.flip_probability = 0.0;
  at::Generator gen = Gen(3);
  at::Tensor out = WeakAugment(x, gen, options);
  std::set<std::pair<int64_t, int64_t>> shifts;
  for (int64_t i = 0; i < n; ++i) {
    // The block stays inside the frame, so mass is exact.
    EXPECT_NEAR(out[i].sum().item<float>(), x[i].sum().item<float>(), 1e-4);
    auto [row, col] = Centroid(out, i);
    const double dy = row - 13.5, dx = col - 13.5;
    EXPECT_NEAR(dy, std::round(dy), 1e-4);
    EXPECT_NEAR(dx, std::round(dx), 1e-4);
    EXPECT_LE(std::abs(dy), 4.0 + 1e-4);
    EXPECT_LE(std::abs(dx), 4.0 + 1e-4);
    shifts.insert({std::lround(dy), std::lround(dx)});
  }
  EXPECT_GT(shifts.size(), 20u);  // of 81 possible
}

TEST(WeakAugmentTest, ShiftedInPixelsAreReflections) {
  // Column j of every row holds j / 27: a right shift by s reflects, so the
  // first column becomes s / 27 and the row stays a permutation of values.
  at::Tensor x = (at::arange(28, at::kFloat) / 27)
                     .view({1, 1, 1, 28})
                     .expand({32, 1, 28, 28})
                     .contiguous();
  WeakAugmentOptions options;
  options.flip_probability = 0.0;
  at::Generator gen = Gen(4);
  at::Tensor out = WeakAugment(x, gen, options);
  for (int64_t i = 0; i < 32; ++i) {
    at::Tensor row = out[i][0][0] * 27;
    const float first = row[0].item<float>();
    const float second = row[1].item<float>();
    // Either increasing from `first` or reflected about column 0.
    EXPECT_NEAR(std::abs(second - first), 1.0f, 1e-4);
    EXPECT_LE(first, 4.0f + 1e-4);
  }
}

TEST(WeakAugmentTest, ZeroFillShiftsInBackground) {
  // An all-ones image: with zero fill, a shift by (dr, dc) leaves exactly
  // |dr| rows and |dc| columns of zeros; reflection keeps every pixel at 1.
  at::Tensor x = at::ones({64, 1, 28, 28});
  WeakAugmentOptions options;
  options.fill = WeakFill::kZeros;
  at::Generator gen = Gen(5);
  at::Tensor out = WeakAugment(x, gen, options);
  at::Generator same = Gen(5);
  WeakAugmentOptions reflect;
  at::Tensor reflected = WeakAugment(x, same, reflect);
  EXPECT_EQ(reflected.min().item<float>(), 1.0f);
  int shifted = 0;
  for (int64_t i = 0; i < 64; ++i) {
    at::Tensor img = out[i][0];
    const int64_t zero_rows = (img.sum(1) == 0).sum().item<int64_t>();
    const int64_t zero_cols = (img.sum(0) == 0).sum().item<int64_t>();
    EXPECT_LE(zero_rows, 4);
    EXPECT_LE(zero_cols, 4);
    // Every pixel is 0 or 1 and the zeros are whole rows and columns.
    EXPECT_EQ(img.sum().item<float>(),
              static_cast<float>((28 - zero_rows) * (28 - zero_cols)));
    shifted += (zero_rows + zero_cols) > 0;
  }
  EXPECT_GT(shifted, 32);
}

TEST(StrongAugmentTest, ShapeRangeAndDeterminism) {
  at::Tensor x = at::rand({32, 1, 28, 28}, Gen(1));
  at::Generator g1 = Gen(9), g2 = Gen(9), g3 = Gen(10);
  at::Tensor a = StrongAugment(x, g1);
  at::Tensor b = StrongAugment(x, g2);
  at::Tensor c = StrongAugment(x, g3);
  EXPECT_EQ(a.sizes(), x.sizes());
  EXPECT_TRUE(a.is_contiguous());
  EXPECT_GE(a.min().item<float>(), 0.0f);
  EXPECT_LE(a.max().item<float>(), 1.0f);
  EXPECT_TRUE(at::equal(a, b));
  EXPECT_FALSE(at::equal(a, c));
  EXPECT_FALSE(at::equal(a, x));
}

TEST(StrongAugmentTest, NoOpsNoCutoutIsIdentity) {
  at::Tensor x = at::rand({8, 1, 28, 28}, Gen(1));
  StrongAugmentOptions options;
  options.num_ops = 0;
  options.cutout_max_fraction = 0.0;
  at::Generator gen = Gen(2);
  EXPECT_TRUE(at::equal(StrongAugment(x, gen, options), x));
}

TEST(StrongAugmentTest, CutoutIsOneFilledRectangleOfAtMostHalfTheSide) {
  const int64_t n = 64;
  StrongAugmentOptions options;
  options.num_ops = 0;
  at::Generator gen = Gen(3);
  at::Tensor out = StrongAugment(at::zeros({n, 1, 28, 28}), gen, options);
  int64_t total = 0;
  for (int64_t i = 0; i < n; ++i) {
    at::Tensor filled = out[i][0] == options.cutout_fill;
    const int64_t count = filled.sum().item<int64_t>();
    ASSERT_GE(count, 1);
    at::Tensor rows = filled.any(1).nonzero();
    at::Tensor cols = filled.any(0).nonzero();
    const int64_t height =
        rows.max().item<int64_t>() - rows.min().item<int64_t>() + 1;
    const int64_t width =
        cols.max().item<int64_t>() - cols.min().item<int64_t>() + 1;
    EXPECT_EQ(height * width, count);  // a solid rectangle
    EXPECT_LE(height, 14);
    EXPECT_LE(width, 14);
    EXPECT_EQ((out[i][0] == 0).sum().item<int64_t>(), 28 * 28 - count);
    total += count;
  }
  // Side uniform in [1, 14]: mean area (clipping aside) about 61.
  EXPECT_GT(total / n, 30);
}

TEST(StrongAugmentTest, ChangesNearlyEveryImage) {
  // Ops are distinct, so at most one of an image's two is the identity; the
  // other leaves a random image unchanged only at a magnitude very near its
  // identity value.
  at::Tensor x = at::rand({256, 1, 28, 28}, Gen(1));
  StrongAugmentOptions options;
  options.cutout_max_fraction = 0.0;
  at::Generator gen = Gen(5);
  at::Tensor out = StrongAugment(x, gen, options);
  const int64_t changed =
      (out - x).abs().flatten(1).amax(1).gt(1e-6).sum().item<int64_t>();
  EXPECT_GT(changed, 240);
}

TEST(StrongAugmentTest, AllOpsListedDrawsLikeTheDefault) {
  at::Tensor x = at::rand({32, 1, 28, 28}, Gen(1));
  StrongAugmentOptions all;
  for (int op = 0; op < kNumStrongOps; ++op) {
    all.ops.push_back(static_cast<StrongOp>(op));
  }
  at::Generator g1 = Gen(4), g2 = Gen(4);
  EXPECT_TRUE(at::equal(StrongAugment(x, g1), StrongAugment(x, g2, all)));
}

TEST(StrongAugmentTest, OpsListRestrictsTheChoice) {
  at::Tensor x = at::rand({32, 1, 28, 28}, Gen(1));
  StrongAugmentOptions options;
  options.cutout_max_fraction = 0.0;
  options.num_ops = 1;
  options.ops = {StrongOp::kIdentity};
  at::Generator gen = Gen(2);
  EXPECT_TRUE(at::equal(StrongAugment(x, gen, options), x));
  // Brightness with a fixed factor of one half, on every image.
  options.ops = {StrongOp::kBrightness};
  options.min_enhance = options.max_enhance = 0.5;
  EXPECT_TRUE(at::allclose(StrongAugment(x, gen, options), x * 0.5f));
  // Two distinct ops out of two: both, in StrongOp order.
  options.num_ops = 2;
  options.ops = {StrongOp::kBrightness, StrongOp::kSolarize};
  at::Tensor out = StrongAugment(x, gen, options);
  EXPECT_LE(out.max().item<float>(), 0.5f + 1e-6f);
}

TEST(StrongAugmentTest, BadOpsListThrows) {
  at::Tensor x = at::rand({2, 1, 28, 28}, Gen(1));
  at::Generator gen = Gen(2);
  StrongAugmentOptions options;
  options.ops = {StrongOp::kContrast};  // fewer ops than num_ops = 2
  EXPECT_THROW(StrongAugment(x, gen, options), c10::Error);
  options.ops = {StrongOp::kContrast, StrongOp::kContrast};
  EXPECT_THROW(StrongAugment(x, gen, options), c10::Error);
  options.ops = {StrongOp::kContrast, static_cast<StrongOp>(kNumStrongOps)};
  EXPECT_THROW(StrongAugment(x, gen, options), c10::Error);
}

TEST(StrongOpListTest, NamesMapToTheirOps) {
  // Every name, in StrongOp order: the list is the ops 0..12.
  auto ops = ParseStrongOpList(
      "identity,autocontrast,equalize,solarize,posterize,contrast,brightness,"
      "sharpness,rotate,shear_x,shear_y,translate_x,translate_y");
  ASSERT_THAT(ops, IsOk());
  ASSERT_EQ(ops->size(), static_cast<size_t>(kNumStrongOps));
  for (int i = 0; i < kNumStrongOps; ++i) {
    EXPECT_EQ(static_cast<int>((*ops)[i]), i);
    EXPECT_EQ(StrongOpName((*ops)[i]),
              StrongOpListText({static_cast<StrongOp>(i)}));
  }
  // Any order is kept as written (StrongAugment applies them in StrongOp
  // order whatever the list's).
  auto written = ParseStrongOpList("translate_y,brightness,identity");
  ASSERT_THAT(written, IsOk());
  EXPECT_EQ(*written,
            (std::vector<StrongOp>{StrongOp::kTranslateY, StrongOp::kBrightness,
                                   StrongOp::kIdentity}));
  EXPECT_EQ(StrongOpListText(*written), "translate_y,brightness,identity");
}

TEST(StrongOpListTest, AllIsTheEmptyList) {
  auto all = ParseStrongOpList("all");
  ASSERT_THAT(all, IsOk());
  EXPECT_TRUE(all->empty());
  EXPECT_EQ(StrongOpListText({}), "all");
}

TEST(StrongOpListTest, RejectsUnknownEmptyAndRepeatedNames) {
  EXPECT_THAT(ParseStrongOpList("rotate,shearx"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unknown RandAugment op 'shearx'")));
  EXPECT_THAT(ParseStrongOpList("rotate,shearx"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("names from identity,autocontrast,")));
  EXPECT_THAT(ParseStrongOpList("rotate,,equalize"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unknown RandAugment op ''")));
  EXPECT_THAT(ParseStrongOpList(""),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseStrongOpList("All"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseStrongOpList("rotate,equalize,rotate"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("'rotate' listed twice")));
}

TEST(ApplyStrongOpTest, Identity) {
  at::Tensor x = at::rand({4, 1, 28, 28}, Gen(1));
  EXPECT_TRUE(
      at::equal(ApplyStrongOp(x, StrongOp::kIdentity, Magnitude(4, 0.7f)), x));
}

TEST(ApplyStrongOpTest, AutocontrastStretchesToFullRange) {
  at::Tensor x = 0.2f + 0.4f * at::rand({3, 1, 28, 28}, Gen(1));
  at::Tensor flat = at::full({1, 1, 28, 28}, 0.3f);
  at::Tensor out = ApplyStrongOp(at::cat({x, flat}), StrongOp::kAutocontrast,
                                 Magnitude(4, 0.5f));
  for (int64_t i = 0; i < 3; ++i) {
    EXPECT_FLOAT_EQ(out[i].min().item<float>(), 0.0f);
    EXPECT_NEAR(out[i].max().item<float>(), 1.0f, 1e-6);
  }
  EXPECT_TRUE(at::equal(out[3], flat[0]));  // constant image unchanged
}

TEST(ApplyStrongOpTest, EqualizeMatchesPil) {
  // Two levels, 392 pixels each: PIL's step is (784 - 392) / 255 = 1, so
  // level 51 maps to 0 and level 204 to min(392, 255) = 255.
  at::Tensor x = at::full({1, 1, 28, 28}, 51.0f / 255);
  x.narrow(2, 14, 14).fill_(204.0f / 255);
  at::Tensor out = ApplyStrongOp(x, StrongOp::kEqualize, Magnitude(1, 0.5f));
  EXPECT_FLOAT_EQ(out[0][0][0][0].item<float>(), 0.0f);
  EXPECT_FLOAT_EQ(out[0][0][27][0].item<float>(), 1.0f);
  // A single level: step 0, unchanged.
  at::Tensor flat = at::full({1, 1, 28, 28}, 0.4f);
  EXPECT_TRUE(at::equal(
      ApplyStrongOp(flat, StrongOp::kEqualize, Magnitude(1, 0.5f)), flat));
}

TEST(ApplyStrongOpTest, SolarizeInvertsAboveThreshold) {
  at::Tensor x = at::tensor({0.3f, 0.6f, 1.0f})
                     .view({1, 1, 1, 3})
                     .expand({3, 1, 1, 3})
                     .contiguous();
  at::Tensor m = at::tensor({0.0f, 0.5f, 1.0f});
  at::Tensor out = ApplyStrongOp(x, StrongOp::kSolarize, m);
  // m = 0: threshold 256/255, nothing inverted.
  EXPECT_TRUE(at::allclose(out[0], x[0]));
  // m = 0.5: threshold 128/255; 0.3 stays, 0.6 -> 0.4, 1 -> 0.
  EXPECT_TRUE(at::allclose(out[1].flatten(), at::tensor({0.3f, 0.4f, 0.0f})));
  // m = 1: everything inverted.
  EXPECT_TRUE(at::allclose(out[2], 1 - x[2]));
}

TEST(ApplyStrongOpTest, PosterizeDropsLowBits) {
  at::Tensor x = (at::tensor({200.0f, 37.0f, 255.0f}) / 255)
                     .view({1, 1, 1, 3})
                     .expand({2, 1, 1, 3})
                     .contiguous();
  at::Tensor out =
      ApplyStrongOp(x, StrongOp::kPosterize, at::tensor({0.0f, 1.0f}));
  EXPECT_TRUE(at::allclose(out[0], x[0]));  // 8 bits kept
  // 4 bits kept: 200 -> 192, 37 -> 32, 255 -> 240.
  EXPECT_TRUE(at::allclose(out[1].flatten(),
                           at::tensor({192.0f, 32.0f, 240.0f}) / 255));
}

TEST(ApplyStrongOpTest, EnhanceOpsBlendWithTheirDegenerateImage) {
  at::Tensor x = at::rand({1, 1, 28, 28}, Gen(1));
  // m = 0.5 is factor 1: unchanged.
  for (StrongOp op :
       {StrongOp::kContrast, StrongOp::kBrightness, StrongOp::kSharpness}) {
    EXPECT_TRUE(
        at::allclose(ApplyStrongOp(x, op, Magnitude(1, 0.5f)), x, 1e-5, 1e-6));
  }
  // m = 0 is factor 0.1.
  EXPECT_TRUE(
      at::allclose(ApplyStrongOp(x, StrongOp::kBrightness, Magnitude(1, 0.0f)),
                   x * 0.1f, 1e-5, 1e-6));
  const float mean = std::round(x.mean().item<float>() * 255) / 255;
  EXPECT_TRUE(
      at::allclose(ApplyStrongOp(x, StrongOp::kContrast, Magnitude(1, 0.0f)),
                   mean + 0.1f * (x - mean), 1e-5, 1e-6));
  // m = 1 is factor 1.9, clamped.
  at::Tensor bright =
      ApplyStrongOp(x, StrongOp::kBrightness, Magnitude(1, 1.0f));
  EXPECT_TRUE(at::allclose(bright, (x * 1.9f).clamp(0, 1), 1e-5, 1e-6));
  // Sharpness keeps the border and a constant image.
  at::Tensor sharp = ApplyStrongOp(x, StrongOp::kSharpness, Magnitude(1, 1.0f));
  EXPECT_TRUE(at::equal(sharp[0][0][0], x[0][0][0]));
  EXPECT_FALSE(at::allclose(sharp, x));
  at::Tensor flat = at::full({1, 1, 28, 28}, 0.25f);
  EXPECT_TRUE(at::allclose(
      ApplyStrongOp(flat, StrongOp::kSharpness, Magnitude(1, 1.0f)), flat));
}

TEST(ApplyStrongOpTest, GeometricOpsAtMidMagnitudeAreIdentity) {
  at::Tensor x = at::rand({2, 1, 28, 28}, Gen(1));
  for (StrongOp op : {StrongOp::kRotate, StrongOp::kShearX, StrongOp::kShearY,
                      StrongOp::kTranslateX, StrongOp::kTranslateY}) {
    EXPECT_TRUE(
        at::allclose(ApplyStrongOp(x, op, Magnitude(2, 0.5f)), x, 1e-4, 1e-5));
  }
}

TEST(ApplyStrongOpTest, TranslateMovesByThirtyPercent) {
  at::Tensor x = BlockImages(1);
  for (StrongOp op : {StrongOp::kTranslateX, StrongOp::kTranslateY}) {
    at::Tensor out = ApplyStrongOp(x, op, Magnitude(1, 1.0f));
    auto [row, col] = Centroid(out, 0);
    const double expected_shift = -0.3 * 28;  // sampling at p + t
    if (op == StrongOp::kTranslateX) {
      EXPECT_NEAR(col - 13.5, expected_shift, 0.05);
      EXPECT_NEAR(row - 13.5, 0.0, 0.05);
    } else {
      EXPECT_NEAR(row - 13.5, expected_shift, 0.05);
      EXPECT_NEAR(col - 13.5, 0.0, 0.05);
    }
    EXPECT_NEAR(out.sum().item<float>(), x.sum().item<float>(), 0.05f);
  }
}

TEST(ApplyStrongOpTest, RotateAndShearKeepCentreAndMass) {
  at::Tensor x = BlockImages(1);
  for (StrongOp op :
       {StrongOp::kRotate, StrongOp::kShearX, StrongOp::kShearY}) {
    at::Tensor out = ApplyStrongOp(x, op, Magnitude(1, 1.0f));
    auto [row, col] = Centroid(out, 0);
    EXPECT_NEAR(row, 13.5, 0.05);
    EXPECT_NEAR(col, 13.5, 0.05);
    EXPECT_NEAR(out.sum().item<float>() / x.sum().item<float>(), 1.0, 0.03);
    EXPECT_FALSE(at::allclose(out, x, 1e-3, 1e-3));
  }
  // A 90-degree-symmetric check of the rotation angle: rotating a row
  // vector by 30 degrees tilts its principal axis by 30 degrees.
  at::Tensor line = at::zeros({1, 1, 28, 28});
  line.narrow(2, 13, 2).narrow(3, 4, 20).fill_(1.0f);
  at::Tensor rotated =
      ApplyStrongOp(line, StrongOp::kRotate, Magnitude(1, 1.0f));
  at::Tensor img = rotated[0][0];
  at::Tensor rows = at::arange(28, at::kFloat).view({-1, 1}) - 13.5;
  at::Tensor cols = at::arange(28, at::kFloat).view({1, -1}) - 13.5;
  const double syy = (img * rows * rows).sum().item<double>();
  const double sxx = (img * cols * cols).sum().item<double>();
  const double sxy = (img * rows * cols).sum().item<double>();
  const double angle = 0.5 * std::atan2(2 * sxy, sxx - syy) * 180 / M_PI;
  EXPECT_NEAR(std::abs(angle), 30.0, 1.5);
}

RandomResizedCropOptions FixedCrop(double scale, double ratio) {
  RandomResizedCropOptions options;
  options.scale_min = options.scale_max = scale;
  options.ratio_min = options.ratio_max = ratio;
  return options;
}

TEST(RandomResizedCropTest, WholeImageSquareCropIsIdentity) {
  at::Tensor x = at::rand({8, 2, 28, 28}, Gen(1));
  at::Generator gen = Gen(2);
  at::Tensor out = RandomResizedCrop(x, gen, FixedCrop(1.0, 1.0));
  EXPECT_TRUE(at::allclose(out, x, 1e-5, 1e-5));
}

TEST(RandomResizedCropTest, ShapeRangeAndDeterminism) {
  at::Tensor x = at::rand({32, 1, 28, 28}, Gen(1));
  at::Generator g1 = Gen(7), g2 = Gen(7), g3 = Gen(8);
  at::Tensor a = RandomResizedCrop(x, g1);
  at::Tensor b = RandomResizedCrop(x, g2);
  at::Tensor c = RandomResizedCrop(x, g3);
  EXPECT_EQ(a.sizes(), x.sizes());
  EXPECT_TRUE(a.is_contiguous());
  EXPECT_GE(a.min().item<float>(), 0.0f);
  EXPECT_LE(a.max().item<float>(), 1.0f);
  EXPECT_TRUE(at::equal(a, b));
  EXPECT_FALSE(at::equal(a, c));
  EXPECT_FALSE(at::equal(a, RandomResizedCrop(x, g1)));
}

TEST(RandomResizedCropTest, CropZoomsIntoACentredSquare) {
  // An 8x8 square at the centre; a crop of 0.5625 of the area has side
  // 0.75 (21 px) and always contains the square, which grows by 1 / 0.75.
  const int64_t n = 16;
  at::Tensor x = at::zeros({n, 1, 28, 28});
  x.narrow(2, 10, 8).narrow(3, 10, 8).fill_(1.0f);
  at::Generator gen = Gen(3);
  at::Tensor out = RandomResizedCrop(x, gen, FixedCrop(0.5625, 1.0));
  for (int64_t i = 0; i < n; ++i) {
    SCOPED_TRACE(i);
    at::Tensor img = out[i][0];
    EXPECT_NEAR(img.sum().item<double>(), 64.0 / 0.5625, 2.0);
    // Pixels inside the grown square are fully bright: at least 9x9 of them.
    EXPECT_GE((img > 0.999f).sum().item<int64_t>(), 81);
    EXPECT_EQ(img.select(0, 0).sum().item<float>(), 0.0f);
  }
}

TEST(RandomResizedCropTest, RatioIsWidthOverHeight) {
  // Ratio 2 at half the area: the box spans the full width and half the
  // height, so an image that varies only across columns is unchanged.
  at::Tensor cols = at::arange(28, at::kFloat).div(27.0f).view({1, 1, 1, 28});
  at::Tensor x = cols.expand({4, 1, 28, 28}).contiguous();
  at::Generator gen = Gen(4);
  at::Tensor out = RandomResizedCrop(x, gen, FixedCrop(0.5, 2.0));
  EXPECT_TRUE(at::allclose(out, x, 1e-5, 1e-5));
  // No ratio-3 box of the whole area fits: torchvision's fallback, the full
  // width at a third of the height (again columns unchanged).
  out = RandomResizedCrop(x, gen, FixedCrop(1.0, 3.0));
  EXPECT_TRUE(at::allclose(out, x, 1e-5, 1e-5));
}

TEST(RandomResizedCropTest, BadOptionsThrow) {
  at::Tensor x = at::rand({2, 1, 28, 28}, Gen(1));
  at::Generator gen = Gen(2);
  EXPECT_THROW(RandomResizedCrop(x, gen, FixedCrop(0.0, 1.0)), c10::Error);
  EXPECT_THROW(RandomResizedCrop(x, gen, FixedCrop(1.5, 1.0)), c10::Error);
  EXPECT_THROW(RandomResizedCrop(x, gen, FixedCrop(0.5, 0.0)), c10::Error);
  RandomResizedCropOptions reversed;
  reversed.ratio_min = 2.0;
  reversed.ratio_max = 1.0;
  EXPECT_THROW(RandomResizedCrop(x, gen, reversed), c10::Error);
}

TEST(ContrastiveAugmentTest, ShapeRangeAndDeterminism) {
  at::Tensor x = at::rand({32, 1, 28, 28}, Gen(1));
  at::Generator g1 = Gen(9), g2 = Gen(9), g3 = Gen(10);
  at::Tensor a = ContrastiveAugment(x, g1);
  at::Tensor b = ContrastiveAugment(x, g2);
  at::Tensor c = ContrastiveAugment(x, g3);
  EXPECT_EQ(a.sizes(), x.sizes());
  EXPECT_TRUE(a.is_contiguous());
  EXPECT_GE(a.min().item<float>(), 0.0f);
  EXPECT_LE(a.max().item<float>(), 1.0f);
  EXPECT_TRUE(at::equal(a, b));
  EXPECT_FALSE(at::equal(a, c));
  // The second view of the same images differs from the first.
  EXPECT_FALSE(at::equal(a, ContrastiveAugment(x, g1)));
}

TEST(ContrastiveAugmentTest, FlipWithoutCropOrOpsIsMirror) {
  at::Tensor x = at::rand({8, 1, 28, 28}, Gen(1));
  ContrastiveAugmentOptions options;
  options.crop = FixedCrop(1.0, 1.0);
  options.strong.num_ops = 0;
  options.flip_probability = 1.0;
  at::Generator gen = Gen(2);
  EXPECT_TRUE(
      at::allclose(ContrastiveAugment(x, gen, options), x.flip(3), 1e-5, 1e-5));
  options.flip_probability = 0.0;
  EXPECT_TRUE(at::allclose(ContrastiveAugment(x, gen, options), x, 1e-5, 1e-5));
}

TEST(ContrastiveAugmentTest, DefaultsUsePixelOpsOnlyWithoutCutout) {
  StrongAugmentOptions strong = ContrastiveAugmentOptions().strong;
  EXPECT_EQ(strong.num_ops, 2);
  EXPECT_EQ(strong.cutout_max_fraction, 0.0);
  for (StrongOp op : strong.ops) {
    EXPECT_LT(static_cast<int>(op), static_cast<int>(StrongOp::kRotate));
  }
  // Neither the crop nor the pixel ops add structure: every view of a blank
  // image is uniform (blank, or inverted by solarize).
  at::Tensor blank = at::zeros({64, 1, 28, 28});
  at::Generator gen = Gen(3);
  at::Tensor out = ContrastiveAugment(blank, gen);
  at::Tensor spread = out.flatten(1).amax(1) - out.flatten(1).amin(1);
  EXPECT_LT(spread.max().item<float>(), 1e-6f);
}

TEST(ContrastiveAugmentTest, OutputSizeMakesSmallerViews) {
  const at::Tensor images = at::rand({5, 1, 28, 28}, Gen(3));
  for (ContrastiveColour colour :
       {ContrastiveColour::kPixelOps, ContrastiveColour::kJitter}) {
    ContrastiveAugmentOptions options;
    options.colour = colour;
    options.output_size = 16;
    at::Generator gen = Gen(11);
    const at::Tensor view = ContrastiveAugment(images, gen, options);
    EXPECT_EQ(view.sizes(), (std::vector<int64_t>{5, 1, 16, 16}));
    EXPECT_TRUE(view.is_contiguous());
    EXPECT_GE(view.min().item<float>(), 0.0f);
    EXPECT_LE(view.max().item<float>(), 1.0f);
  }
  // The whole image, no flip, no ops: a 28 -> 14 bilinear resize, which
  // averages each 2 x 2 block.
  ContrastiveAugmentOptions plain;
  plain.crop = FixedCrop(1.0, 1.0);
  plain.flip_probability = 0.0;
  plain.strong.num_ops = 0;
  plain.output_size = 14;
  at::Generator gen = Gen(12);
  const at::Tensor half = ContrastiveAugment(images, gen, plain);
  const at::Tensor expected = at::avg_pool2d(images, {2, 2});
  EXPECT_TRUE(at::allclose(half, expected, 1e-5, 1e-5))
      << (half - expected).abs().max().item<float>();
  ContrastiveAugmentOptions bad;
  bad.output_size = 3;
  EXPECT_THROW(ContrastiveAugment(images, gen, bad), c10::Error);
  EXPECT_FALSE(ValidateContrastiveAugment(bad, "simclr").ok());
  bad.output_size = 0;
  EXPECT_TRUE(ValidateContrastiveAugment(bad, "simclr").ok());
}

TEST(ContrastiveAugmentTest, ParsesColourNames) {
  auto pixel_ops = ParseContrastiveColour("pixel_ops");
  auto jitter = ParseContrastiveColour("jitter");
  ASSERT_THAT(pixel_ops, IsOk());
  ASSERT_THAT(jitter, IsOk());
  EXPECT_EQ(*pixel_ops, ContrastiveColour::kPixelOps);
  EXPECT_EQ(*jitter, ContrastiveColour::kJitter);
  EXPECT_THAT(ParseContrastiveColour("colour"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("use pixel_ops or jitter")));
  EXPECT_EQ(ContrastiveColourName(ContrastiveColour::kJitter), "jitter");
  EXPECT_EQ(ContrastiveColourName(ContrastiveColour::kPixelOps), "pixel_ops");
}

TEST(ContrastiveAugmentTest, JitterScalesBrightnessAndContrastWithinStrength) {
  ContrastiveAugmentOptions options;
  options.crop = FixedCrop(1.0, 1.0);
  options.flip_probability = 0.0;
  options.colour = ContrastiveColour::kJitter;
  at::Tensor x = 0.25 + 0.5 * at::rand({256, 1, 28, 28}, Gen(1));
  at::Generator gen = Gen(2);

  // Probability 0 or strength 0: the view is the image.
  options.jitter_probability = 0.0;
  EXPECT_TRUE(at::allclose(ContrastiveAugment(x, gen, options), x, 1e-5, 1e-5));
  options.jitter_probability = 1.0;
  options.jitter_strength = 0.0;
  EXPECT_TRUE(at::allclose(ContrastiveAugment(x, gen, options), x, 1e-5, 1e-5));

  // A uniform image keeps its contrast; brightness scales it by [0.6, 1.4].
  options.jitter_strength = 0.4;
  at::Tensor uniform = at::full({256, 1, 28, 28}, 0.5);
  at::Tensor out = ContrastiveAugment(uniform, gen, options);
  at::Tensor flat = out.flatten(1);
  EXPECT_LT((flat.amax(1) - flat.amin(1)).max().item<float>(), 1e-6f);
  EXPECT_GE(flat.min().item<float>(), 0.3f - 1e-6f);
  EXPECT_LE(flat.max().item<float>(), 0.7f + 1e-6f);
  EXPECT_GT(flat.mean(1).std().item<float>(), 0.05f);  // factors vary

  // With probability 0.8 about a fifth of the views are left as they were.
  options.jitter_probability = 0.8;
  at::Tensor views = ContrastiveAugment(x, gen, options);
  const double unchanged =
      ((views - x).flatten(1).abs().amax(1) < 1e-6).to(at::kFloat).mean()
          .item<float>();
  EXPECT_NEAR(unchanged, 0.2, 0.08);
  EXPECT_GE(views.min().item<float>(), 0.0f);
  EXPECT_LE(views.max().item<float>(), 1.0f);
}

TEST(AugmentCudaTest, DeterministicInRangeAndOpsMatchCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const at::Device cuda(at::kCUDA, 0);
  at::Tensor x = at::rand({64, 1, 28, 28}, Gen(1));
  at::Tensor xc = x.to(cuda);
  auto g1 = MakeGenerator(cuda, 5), g2 = MakeGenerator(cuda, 5);
  ASSERT_THAT(g1, IsOk());
  ASSERT_THAT(g2, IsOk());
  at::Tensor weak1 = WeakAugment(xc, *g1), weak2 = WeakAugment(xc, *g2);
  at::Tensor strong1 = StrongAugment(xc, *g1), strong2 = StrongAugment(xc, *g2);
  EXPECT_EQ(weak1.device(), cuda);
  EXPECT_TRUE(at::equal(weak1, weak2));
  EXPECT_TRUE(at::equal(strong1, strong2));
  EXPECT_GE(strong1.min().item<float>(), 0.0f);
  EXPECT_LE(strong1.max().item<float>(), 1.0f);
  at::Tensor view1 = ContrastiveAugment(xc, *g1);
  at::Tensor view2 = ContrastiveAugment(xc, *g2);
  EXPECT_EQ(view1.device(), cuda);
  EXPECT_TRUE(at::equal(view1, view2));
  EXPECT_GE(view1.min().item<float>(), 0.0f);
  EXPECT_LE(view1.max().item<float>(), 1.0f);
  // The ops themselves are deterministic: CUDA and CPU agree.
  at::Tensor m = at::rand({64}, Gen(2));
  for (int op = 0; op < kNumStrongOps; ++op) {
    SCOPED_TRACE(op);
    at::Tensor on_cpu = ApplyStrongOp(x, static_cast<StrongOp>(op), m);
    at::Tensor on_cuda =
        ApplyStrongOp(xc, static_cast<StrongOp>(op), m.to(cuda)).cpu();
    EXPECT_TRUE(at::allclose(on_cpu, on_cuda, 1e-4, 1e-4));
  }
}

}  // namespace
}  // namespace trainer
