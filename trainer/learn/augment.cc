#include "trainer/learn/augment.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <c10/util/Exception.h>
#include <torch/version.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace trainer {
namespace {

using at::Tensor;

constexpr double kPi = 3.14159265358979323846;

// [N] -> [N, 1, 1, 1], for per-image scalars.
Tensor PerImage(const Tensor& v) { return v.view({-1, 1, 1, 1}); }

void CheckImages(const Tensor& images) {
  TORCH_CHECK(images.dim() == 4, "images must be [N, C, H, W], got ",
              images.sizes());
  TORCH_CHECK(images.scalar_type() == at::kFloat, "images must be float32");
}

// Maps indices in [-(n-1), 2(n-1)] into [0, n-1] by reflection about the
// first and last pixel (numpy/PyTorch "reflect" padding).
Tensor Reflect(const Tensor& index, int64_t n) {
  return (n - 1) - ((n - 1) - index.abs()).abs();
}

// Whole-pixel shift in [-pad, pad] drawn from u in [0, 1).
Tensor Shift(const Tensor& u, int64_t pad) {
  return (u * (2 * pad + 1)).floor().clamp_max(2 * pad).to(at::kLong) - pad;
}

Tensor Autocontrast(const Tensor& x) {
  Tensor flat = x.flatten(2);
  auto [lo, hi] = at::aminmax(flat, /*dim=*/2, /*keepdim=*/true);
  Tensor range = hi - lo;
  Tensor stretched = (flat - lo) / range.clamp_min(1e-12);
  return at::where(range > 0, stretched, flat).view_as(x);
}

// PIL ImageOps.equalize, per image and channel, on the 8-bit quantised image.
Tensor Equalize(const Tensor& x) {
  const int64_t pixels = x.size(2) * x.size(3);
  Tensor flat = x.reshape({-1, pixels});
  Tensor q = flat.mul(255.0f).round_().clamp_(0, 255).to(at::kLong);
  Tensor hist = at::zeros({flat.size(0), 256}, q.options())
                    .scatter_add_(1, q, at::ones_like(q));
  Tensor last_count = hist.gather(1, q.amax(1, /*keepdim=*/true));
  Tensor step = (pixels - last_count).div(255, "floor");
  Tensor before = hist.cumsum(1) - hist;
  Tensor lut = (before + step.div(2, "floor")).div(step.clamp_min(1), "floor");
  Tensor equalized = lut.clamp_max_(255).gather(1, q).to(at::kFloat) / 255.0f;
  return at::where(step > 0, equalized, flat).view_as(x);
}

// Inverts pixels >= (1 - m) * 256 / 255 (PIL's threshold 256 - 256 m).
Tensor Solarize(const Tensor& x, const Tensor& m) {
  Tensor threshold = PerImage((1 - m) * (256.0f / 255.0f));
  return at::where(x >= threshold, 1 - x, x);
}

// Keeps 8 - floor(m * (9 - min_bits)) (at least min_bits) high bits.
Tensor Posterize(const Tensor& x, const Tensor& m, int min_bits) {
  const int max_drop = 8 - min_bits;
  Tensor drop = (m * (max_drop + 1)).floor().clamp_max(max_drop);
  Tensor bucket = PerImage(at::exp2(drop));
  return (x * 255.0f).round().div(bucket).floor().mul(bucket).div(255.0f);
}

Tensor EnhanceFactor(const Tensor& m, const StrongAugmentOptions& options) {
  return PerImage(options.min_enhance +
                  m * (options.max_enhance - options.min_enhance));
}

// PIL ImageEnhance: blend of `degenerate` and `x` with `factor` (1 = x).
Tensor Blend(const Tensor& degenerate, const Tensor& x, const Tensor& factor) {
  return (degenerate + factor * (x - degenerate)).clamp_(0, 1);
}

Tensor Contrast(const Tensor& x, const Tensor& factor) {
  Tensor mean =
      x.mean({1, 2, 3}, /*keepdim=*/true).mul(255.0f).round().div(255.0f);
  return Blend(mean, x, factor);
}

Tensor Brightness(const Tensor& x, const Tensor& factor) {
  return (x * factor).clamp_(0, 1);
}

// PIL's SMOOTH filter ([[1,1,1],[1,5,1],[1,1,1]] / 13) on the interior,
// border pixels unchanged, as ImageEnhance.Sharpness's degenerate image.
Tensor Sharpness(const Tensor& x, const Tensor& factor) {
  const int64_t h = x.size(2), w = x.size(3);
  if (h < 3 || w < 3) return x;
  Tensor kernel = at::full({1, 1, 3, 3}, 1.0f / 13.0f, x.options());
  kernel.select(2, 1).select(2, 1).fill_(5.0f / 13.0f);
  Tensor planes = x.reshape({-1, 1, h, w});
  Tensor degenerate = planes.clone();
  degenerate.narrow(2, 1, h - 2)
      .narrow(3, 1, w - 2)
      .copy_(at::conv2d(planes, kernel));
  return Blend(degenerate.view_as(x), x, factor);
}

Tensor ApplyPixelOp(const Tensor& x, StrongOp op, const Tensor& m,
                    const StrongAugmentOptions& options) {
  switch (op) {
    case StrongOp::kAutocontrast:
      return Autocontrast(x);
    case StrongOp::kEqualize:
      return Equalize(x);
    case StrongOp::kSolarize:
      return Solarize(x, m);
    case StrongOp::kPosterize:
      return Posterize(x, m, options.min_posterize_bits);
    case StrongOp::kContrast:
      return Contrast(x, EnhanceFactor(m, options));
    case StrongOp::kBrightness:
      return Brightness(x, EnhanceFactor(m, options));
    case StrongOp::kSharpness:
      return Sharpness(x, EnhanceFactor(m, options));
    default:
      return x;
  }
}

bool IsPixelOp(StrongOp op) {
  return op >= StrongOp::kAutocontrast && op <= StrongOp::kSharpness;
}

bool IsGeometricOp(StrongOp op) { return op >= StrongOp::kRotate; }

// Which ops StrongAugment may choose: options.ops, or all when empty.
std::array<bool, kNumStrongOps> AllowedOps(
    const StrongAugmentOptions& options) {
  std::array<bool, kNumStrongOps> allowed;
  allowed.fill(options.ops.empty());
  for (StrongOp op : options.ops) {
    const int index = static_cast<int>(op);
    TORCH_CHECK(index >= 0 && index < kNumStrongOps, "unknown StrongOp ",
                index);
    TORCH_CHECK(!allowed[index], "StrongOp ", index, " listed twice");
    allowed[index] = true;
  }
  return allowed;
}

// Sampling matrices (output -> input, affine_grid's normalised coordinates)
// for op choices `ops` ([K, N] int64) with magnitudes `m` ([K, N]); an image
// whose op at round k is not geometric gets the identity there. Returns the
// per-image composition over the K rounds, [N, 2, 3].
Tensor AffineFromOps(const Tensor& ops, const Tensor& m,
                     const StrongAugmentOptions& options) {
  auto is = [&ops](StrongOp op) { return ops == static_cast<int>(op); };
  Tensor g = 2 * m - 1;
  Tensor angle = g * (options.max_rotate_degrees * kPi / 180.0);
  Tensor cos = angle.cos(), sin = angle.sin();
  Tensor zero = at::zeros_like(g), one = at::ones_like(g);
  Tensor shear = g * options.max_shear;
  Tensor shift = g * (2.0 * options.max_translate);
  Tensor rotate = is(StrongOp::kRotate);
  Tensor a00 = at::where(rotate, cos, one);
  Tensor a01 =
      at::where(rotate, -sin, at::where(is(StrongOp::kShearX), shear, zero));
  Tensor a10 =
      at::where(rotate, sin, at::where(is(StrongOp::kShearY), shear, zero));
  Tensor a02 = at::where(is(StrongOp::kTranslateX), shift, zero);
  Tensor a12 = at::where(is(StrongOp::kTranslateY), shift, zero);
  Tensor matrices =
      at::stack({a00, a01, a02, a10, a00, a12, zero, zero, one}, -1)
          .view({ops.size(0), ops.size(1), 3, 3});
  Tensor theta = matrices[0];
  for (int64_t k = 1; k < ops.size(0); ++k) theta = at::bmm(theta, matrices[k]);
  return theta.narrow(1, 0, 2);
}

// Bilinear warp of x by sampling matrices theta ([N, 2, 3]); pixels sampled
// from outside the image read `fill`.
Tensor WarpAffine(const Tensor& x, const Tensor& theta, float fill) {
  Tensor grid =
      at::affine_grid_generator(theta, x.sizes(), /*align_corners=*/false);
  Tensor shifted = fill == 0.0f ? x : x - fill;
  Tensor out = at::grid_sampler(shifted, grid, /*interpolation_mode=*/0,
                                /*padding_mode=*/0, /*align_corners=*/false);
  return fill == 0.0f ? out : out + fill;
}

// Sets a square of side in [1, max_side] at a uniform centre to `fill`;
// u is [3, N] uniform in [0, 1).
Tensor Cutout(const Tensor& x, const Tensor& u, double max_fraction,
              float fill) {
  const int64_t h = x.size(2), w = x.size(3);
  const int64_t max_side =
      std::max<int64_t>(1, std::lround(max_fraction * std::min(h, w)));
  Tensor side = (u[0] * max_side).floor().clamp_max(max_side - 1) + 1;
  Tensor top = (u[1] * h).floor() - (side / 2).floor();
  Tensor left = (u[2] * w).floor() - (side / 2).floor();
  Tensor rows = at::arange(h, x.options()).view({1, h});
  Tensor cols = at::arange(w, x.options()).view({1, w});
  Tensor in_rows =
      (rows >= top.view({-1, 1})) & (rows < (top + side).view({-1, 1}));
  Tensor in_cols =
      (cols >= left.view({-1, 1})) & (cols < (left + side).view({-1, 1}));
  Tensor mask = (in_rows.unsqueeze(2) & in_cols.unsqueeze(1)).unsqueeze(1);
  return x.masked_fill(mask, fill);
}

constexpr int kCropAttempts = 10;

// Bilinear resampling of x at the boxes of theta ([N, 2, 3]), which lie
// inside the image, to `size` x `size` pixels (0: x's own H x W): samples in
// the half-pixel rim outside the outermost pixel centres read the edge
// pixel, like a resize of the cropped box.
Tensor ResampleBoxes(const Tensor& x, const Tensor& theta, int64_t size = 0) {
  std::vector<int64_t> out(x.sizes().begin(), x.sizes().end());
  if (size > 0) out[2] = out[3] = size;
  Tensor grid = at::affine_grid_generator(theta, out, /*align_corners=*/false);
  return at::grid_sampler(x, grid, /*interpolation_mode=*/0,
                          /*padding_mode=*/1, /*align_corners=*/false);
}

void CheckCropOptions(const RandomResizedCropOptions& options) {
  TORCH_CHECK(options.scale_min > 0 && options.scale_min <= options.scale_max &&
                  options.scale_max <= 1,
              "crop scale range must satisfy 0 < min <= max <= 1, got [",
              options.scale_min, ", ", options.scale_max, "]");
  TORCH_CHECK(options.ratio_min > 0 && options.ratio_min <= options.ratio_max,
              "crop ratio range must satisfy 0 < min <= max, got [",
              options.ratio_min, ", ", options.ratio_max, "]");
}

// Sampling matrices [N, 2, 3] (output -> input, affine_grid's normalised
// coordinates) of random resized crops of [N, ?, h, w] images, from u
// ([N, 2 * kCropAttempts + 2] uniform in [0, 1): per attempt an area
// fraction and a log ratio, then the box position), mirrored horizontally
// where `flip` ([N] bool) is set when it is defined.
Tensor CropTheta(const Tensor& u, int64_t h, int64_t w,
                 const RandomResizedCropOptions& options, const Tensor& flip) {
  const int64_t t = kCropAttempts;
  Tensor scale = options.scale_min +
                 u.narrow(1, 0, t) * (options.scale_max - options.scale_min);
  const double log_min = std::log(options.ratio_min);
  const double log_max = std::log(options.ratio_max);
  Tensor ratio = at::exp(log_min + u.narrow(1, t, t) * (log_max - log_min));
  // Box sides as fractions of the image's: area s * h * w, width / height r.
  const double aspect = static_cast<double>(h) / static_cast<double>(w);
  Tensor fw = at::sqrt(scale * ratio * aspect);
  Tensor fh = at::sqrt(scale / ratio / aspect);
  Tensor fits = (fw <= 1) & (fh <= 1);
  Tensor first = fits.to(at::kByte).argmax(1, /*keepdim=*/true);
  // torchvision's fallback: the whole image, cut to the nearest allowed
  // ratio when its own is outside the range.
  const double image_ratio = static_cast<double>(w) / static_cast<double>(h);
  double fallback_w = 1.0, fallback_h = 1.0;
  if (image_ratio < options.ratio_min)
    fallback_h = image_ratio / options.ratio_min;
  if (image_ratio > options.ratio_max)
    fallback_w = options.ratio_max / image_ratio;
  Tensor any_fits = fits.any(1);
  Tensor sx = at::where(any_fits, fw.gather(1, first).squeeze(1),
                        at::full_like(any_fits, fallback_w, u.options()));
  Tensor sy = at::where(any_fits, fh.gather(1, first).squeeze(1),
                        at::full_like(any_fits, fallback_h, u.options()));
  // Box centre uniform over the positions that keep it inside the image.
  Tensor cx = (2 * u.select(1, 2 * t) - 1) * (1 - sx);
  Tensor cy = (2 * u.select(1, 2 * t + 1) - 1) * (1 - sy);
  Tensor ax = flip.defined() ? at::where(flip, -sx, sx) : sx;
  Tensor zero = at::zeros_like(sx);
  return at::stack({ax, zero, cx, zero, sy, cy}, 1).view({-1, 2, 3});
}

}  // namespace

absl::StatusOr<at::Generator> MakeGenerator(c10::Device device, uint64_t seed) {
  if (device.is_cpu()) return at::detail::createCPUGenerator(seed);
  if (device.is_cuda()) {
#if TORCH_VERSION_MAJOR >= 2
    try {
      at::Generator gen = at::detail::getCUDAHooks().getNewGenerator(
          device.has_index() ? device.index() : 0);
      gen.set_current_seed(seed);
      return gen;
    } catch (const c10::Error& e) {
      return absl::UnavailableError(absl::StrCat(
          "cannot create a CUDA generator: ", e.what_without_backtrace()));
    }
#endif
  }
  return absl::UnimplementedError(
      absl::StrCat("no independent generator for device ", device.str()));
}

at::Tensor WeakAugment(const at::Tensor& images, at::Generator& gen,
                       const WeakAugmentOptions& options) {
  CheckImages(images);
  const int64_t n = images.size(0), c = images.size(1), h = images.size(2),
                w = images.size(3);
  const int64_t pad_h =
      std::clamp<int64_t>(std::lround(options.max_translate * h), 0, h - 1);
  const int64_t pad_w =
      std::clamp<int64_t>(std::lround(options.max_translate * w), 0, w - 1);
  Tensor u = at::rand({3, n}, gen, images.options());
  Tensor flip = (u[0] < options.flip_probability).view({n, 1});
  auto long_options = images.options().dtype(at::kLong);
  Tensor rows = at::arange(h, long_options).view({1, h});
  Tensor cols = at::arange(w, long_options).view({1, w});
  Tensor shifted_rows = rows + Shift(u[1], pad_h).view({n, 1});
  Tensor shifted_cols =
      at::where(flip, (w - 1) - cols, cols) + Shift(u[2], pad_w).view({n, 1});
  Tensor src_rows = Reflect(shifted_rows, h);
  Tensor src_cols = Reflect(shifted_cols, w);
  Tensor index = (src_rows.unsqueeze(2) * w + src_cols.unsqueeze(1))
                     .view({n, 1, h * w})
                     .expand({n, c, h * w});
  Tensor out = images.reshape({n, c, h * w}).gather(2, index).view({n, c, h, w});
  if (options.fill == WeakFill::kZeros) {
    // Pixels shifted in from outside the image become background.
    Tensor inside_rows = (shifted_rows >= 0) & (shifted_rows < h);
    Tensor inside_cols = (shifted_cols >= 0) & (shifted_cols < w);
    Tensor inside = (inside_rows.unsqueeze(2) & inside_cols.unsqueeze(1))
                        .view({n, 1, h, w});
    out = out * inside.to(out.scalar_type());
  }
  return out;
}

at::Tensor StrongAugment(const at::Tensor& images, at::Generator& gen,
                         const StrongAugmentOptions& options) {
  CheckImages(images);
  const std::array<bool, kNumStrongOps> allowed = AllowedOps(options);
  const int num_allowed =
      static_cast<int>(std::count(allowed.begin(), allowed.end(), true));
  TORCH_CHECK(options.num_ops >= 0 && options.num_ops <= num_allowed,
              "num_ops must be in [0, ", num_allowed, "]");
  const bool any_geometric = [&allowed] {
    for (int op = 0; op < kNumStrongOps; ++op) {
      if (allowed[op] && IsGeometricOp(static_cast<StrongOp>(op))) return true;
    }
    return false;
  }();
  const int64_t n = images.size(0);
  const int64_t k = options.num_ops;
  // One draw: op ranking scores, magnitudes, cutout parameters.
  Tensor u = at::rand({n, kNumStrongOps + k + 3}, gen, images.options());
  Tensor x = images.contiguous();
  if (k > 0) {
    // Ops are the k lowest scores; scores of ops not allowed are pushed
    // above every allowed one's (scores are in [0, 1)).
    Tensor scores = u.narrow(1, 0, kNumStrongOps);
    if (num_allowed < kNumStrongOps) {
      scores = scores.clone();
      for (int op = 0; op < kNumStrongOps; ++op) {
        if (!allowed[op]) scores.select(1, op).add_(2.0);
      }
    }
    Tensor ops =
        scores.argsort(int64_t{1}, /*descending=*/false).narrow(1, 0, k).t();
    Tensor m = u.narrow(1, kNumStrongOps, k).t();
    Tensor chosen =
        ops.unsqueeze(0) ==
        at::arange(kNumStrongOps, ops.options()).view({kNumStrongOps, 1, 1});
    Tensor selected = chosen.any(1);                      // [ops, N]
    Tensor magnitude = (chosen * m.unsqueeze(0)).sum(1);  // [ops, N]
    for (int op = 0; op < kNumStrongOps; ++op) {
      const auto strong_op = static_cast<StrongOp>(op);
      if (!IsPixelOp(strong_op) || !allowed[op]) continue;
      Tensor y = ApplyPixelOp(x, strong_op, magnitude[op], options);
      x = at::where(PerImage(selected[op]), y, x);
    }
    if (any_geometric) {
      x = WarpAffine(x, AffineFromOps(ops, m, options), options.geometric_fill);
    }
  }
  if (options.cutout_max_fraction > 0) {
    x = Cutout(x, u.narrow(1, kNumStrongOps + k, 3).t(),
               options.cutout_max_fraction, options.cutout_fill);
  }
  return x.clamp(0, 1);
}

at::Tensor ApplyStrongOp(const at::Tensor& images, StrongOp op,
                         const at::Tensor& magnitude,
                         const StrongAugmentOptions& options) {
  CheckImages(images);
  Tensor x = images.contiguous();
  if (IsPixelOp(op)) return ApplyPixelOp(x, op, magnitude, options).clamp(0, 1);
  if (op == StrongOp::kIdentity) return x.clone();
  Tensor ops = at::full({1, images.size(0)}, static_cast<int64_t>(op),
                        images.options().dtype(at::kLong));
  Tensor theta = AffineFromOps(ops, magnitude.view({1, -1}), options);
  return WarpAffine(x, theta, options.geometric_fill).clamp(0, 1);
}

at::Tensor RandomResizedCrop(const at::Tensor& images, at::Generator& gen,
                             const RandomResizedCropOptions& options) {
  CheckImages(images);
  CheckCropOptions(options);
  Tensor u =
      at::rand({images.size(0), 2 * kCropAttempts + 2}, gen, images.options());
  Tensor theta = CropTheta(u, images.size(2), images.size(3), options, {});
  return ResampleBoxes(images.contiguous(), theta).clamp(0, 1);
}

StrongAugmentOptions ContrastivePixelOptions() {
  StrongAugmentOptions options;
  options.num_ops = 2;
  options.ops = {StrongOp::kIdentity,   StrongOp::kAutocontrast,
                 StrongOp::kEqualize,   StrongOp::kSolarize,
                 StrongOp::kPosterize,  StrongOp::kContrast,
                 StrongOp::kBrightness, StrongOp::kSharpness};
  options.cutout_max_fraction = 0.0;
  return options;
}

std::string StrongOpName(StrongOp op) {
  static constexpr std::array<const char*, kNumStrongOps> kNames = {
      "identity", "autocontrast", "equalize",   "solarize", "posterize",
      "contrast", "brightness",   "sharpness",  "rotate",   "shear_x",
      "shear_y",  "translate_x",  "translate_y"};
  const int index = static_cast<int>(op);
  if (index < 0 || index >= kNumStrongOps) return absl::StrCat("op", index);
  return kNames[index];
}

absl::StatusOr<std::vector<StrongOp>> ParseStrongOpList(
    absl::string_view text) {
  std::vector<StrongOp> ops;
  if (text == "all") return ops;
  std::vector<std::string> known;
  for (int i = 0; i < kNumStrongOps; ++i) {
    known.push_back(StrongOpName(static_cast<StrongOp>(i)));
  }
  const std::string takes =
      absl::StrCat("; takes all or names from ", absl::StrJoin(known, ","));
  for (absl::string_view name : absl::StrSplit(text, ',')) {
    const auto it = std::find(known.begin(), known.end(), name);
    if (it == known.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown RandAugment op '", name, "' in '", text, "'", takes));
    }
    const auto op = static_cast<StrongOp>(it - known.begin());
    if (std::find(ops.begin(), ops.end(), op) != ops.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "RandAugment op '", name, "' listed twice in '", text, "'"));
    }
    ops.push_back(op);
  }
  return ops;
}

std::string StrongOpListText(const std::vector<StrongOp>& ops) {
  if (ops.empty()) return "all";
  std::vector<std::string> names;
  for (StrongOp op : ops) names.push_back(StrongOpName(op));
  return absl::StrJoin(names, ",");
}

absl::StatusOr<ContrastiveColour> ParseContrastiveColour(
    absl::string_view name) {
  if (name == "pixel_ops") return ContrastiveColour::kPixelOps;
  if (name == "jitter") return ContrastiveColour::kJitter;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown contrastive colour distortion '", name,
                   "'; use pixel_ops or jitter"));
}

std::string ContrastiveColourName(ContrastiveColour colour) {
  return colour == ContrastiveColour::kJitter ? "jitter" : "pixel_ops";
}

namespace {

bool JitterInRange(double probability, double strength) {
  return probability >= 0 && probability <= 1 && strength >= 0 && strength <= 1;
}

// ContrastiveColour::kJitter on `x` ([N, C, H, W] in [0, 1]).
Tensor ColourJitter(const Tensor& x, at::Generator& gen, double probability,
                    double strength) {
  TORCH_CHECK(JitterInRange(probability, strength),
              "colour jitter needs probability and strength in [0, 1]");
  const int64_t n = x.size(0);
  Tensor u = at::rand({n, 4}, gen, x.options());
  auto per_image = [n](const Tensor& column) {
    return column.view({n, 1, 1, 1});
  };
  Tensor apply = per_image(u.select(1, 0) < probability);
  Tensor b = per_image(1 + (2 * u.select(1, 1) - 1) * strength);
  Tensor c = per_image(1 + (2 * u.select(1, 2) - 1) * strength);
  Tensor brightness_first = per_image(u.select(1, 3) < 0.5);
  auto brightness = [&](const Tensor& t) { return (t * b).clamp(0, 1); };
  auto contrast = [&](const Tensor& t) {
    Tensor mean = t.mean({1, 2, 3}, /*keepdim=*/true);
    return ((t - mean) * c + mean).clamp(0, 1);
  };
  Tensor jittered = at::where(brightness_first, contrast(brightness(x)),
                              brightness(contrast(x)));
  return at::where(apply, jittered, x);
}

}  // namespace

at::Tensor ContrastiveAugment(const at::Tensor& images, at::Generator& gen,
                              const ContrastiveAugmentOptions& options) {
  CheckImages(images);
  CheckCropOptions(options.crop);
  // One draw for crop and flip; StrongAugment draws its own.
  Tensor u =
      at::rand({images.size(0), 2 * kCropAttempts + 3}, gen, images.options());
  Tensor flip = u.select(1, 2 * kCropAttempts + 2) < options.flip_probability;
  Tensor theta =
      CropTheta(u, images.size(2), images.size(3), options.crop, flip);
  TORCH_CHECK(options.output_size == 0 || options.output_size >= 4,
              "contrastive view size must be 0 or at least 4, got ",
              options.output_size);
  Tensor cropped =
      ResampleBoxes(images.contiguous(), theta, options.output_size)
          .clamp(0, 1);
  if (options.colour == ContrastiveColour::kJitter) {
    return ColourJitter(cropped, gen, options.jitter_probability,
                        options.jitter_strength)
        .contiguous();
  }
  return StrongAugment(cropped, gen, options.strong);
}

absl::Status ValidateCrop(const RandomResizedCropOptions& crop,
                          const std::string& owner) {
  if (crop.scale_min > 0.0 && crop.scale_min <= crop.scale_max &&
      crop.scale_max <= 1.0 && crop.ratio_min > 0.0 &&
      crop.ratio_min <= crop.ratio_max) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      owner,
      " crop needs 0 < scale_min <= scale_max <= 1 and 0 < ratio_min <= "
      "ratio_max, got scale [",
      crop.scale_min, ", ", crop.scale_max, "], ratio [", crop.ratio_min, ", ",
      crop.ratio_max, "]"));
}

absl::Status ValidateContrastiveAugment(
    const ContrastiveAugmentOptions& options, const std::string& owner) {
  absl::Status crop = ValidateCrop(options.crop, owner);
  if (!crop.ok()) return crop;
  if (!JitterInRange(options.jitter_probability, options.jitter_strength)) {
    return absl::InvalidArgumentError(absl::StrCat(
        owner, " colour jitter needs probability and strength in [0, 1], got ",
        options.jitter_probability, " and ", options.jitter_strength));
  }
  if (options.output_size != 0 && options.output_size < 4) {
    return absl::InvalidArgumentError(
        absl::StrCat(owner, " view size must be 0 or at least 4 pixels, got ",
                     options.output_size));
  }
  return absl::OkStatus();
}

}  // namespace trainer
