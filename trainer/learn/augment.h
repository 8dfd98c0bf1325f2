// Batched, on-device image augmentation for FixMatch (weak and strong views)
// and SimCLR (contrastive views). Every function works on
// a whole batch with tensor ops (no per-image host loop, no host sync) and
// draws all its randomness from the generator it is given, so equal
// generator states give bit-identical output on the same device.
#ifndef TRAINER_LEARN_AUGMENT_H_
#define TRAINER_LEARN_AUGMENT_H_

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace trainer {

// Creates a generator for `device` (CPU, or CUDA on LibTorch >= 2) seeded
// with `seed`, independent of the global default generators. Returns
// UNIMPLEMENTED for other devices (and for CUDA on LibTorch 1.x).
absl::StatusOr<at::Generator> MakeGenerator(c10::Device device, uint64_t seed);

// What a weak shift fills the uncovered border with.
enum class WeakFill {
  kReflect,  // reflections of the image (FixMatch's reflect padding)
  kZeros,    // background (0)
};

struct WeakAugmentOptions {
  // Chance of a horizontal flip, per image.
  double flip_probability = 0.5;
  // Largest shift per axis as a fraction of the side, rounded to whole
  // pixels (0.125 of 28 -> 4 px, FixMatch's pad-and-crop).
  double max_translate = 0.125;
  // Shifted-in pixels: reflections of the image (like reflect padding) or
  // background. Fashion-MNIST objects touch the image edge in 97 % of the
  // images, so reflection mirrors collars and hems into most tops.
  WeakFill fill = WeakFill::kReflect;
};

// The augmentations throw c10::Error if images is not a 4-d float32 tensor
// or `gen` is not a generator for its device.

// Operations StrongAugment chooses among, in the order they are applied.
enum class StrongOp : int {
  kIdentity = 0,
  kAutocontrast,
  kEqualize,
  kSolarize,
  kPosterize,
  kContrast,
  kBrightness,
  kSharpness,
  kRotate,
  kShearX,
  kShearY,
  kTranslateX,
  kTranslateY,
};
inline constexpr int kNumStrongOps = 13;

// The op's name in lower case, as ParseStrongOpList reads it: identity,
// autocontrast, equalize, solarize, posterize, contrast, brightness,
// sharpness, rotate, shear_x, shear_y, translate_x, translate_y.
std::string StrongOpName(StrongOp op);

// A list of ops for StrongAugmentOptions::ops from text: "all" (the empty
// list: every op) or op names separated by commas, each at most once.
// INVALID_ARGUMENT naming the first unknown, empty or repeated entry and the
// names it takes.
absl::StatusOr<std::vector<StrongOp>> ParseStrongOpList(absl::string_view text);

// The text ParseStrongOpList reads back: "all" for the empty list, the names
// joined by commas otherwise.
std::string StrongOpListText(const std::vector<StrongOp>& ops);

// RandAugment ranges as in FixMatch's RandAugment (AutoAugment's PIL ops);
// each chosen op gets a magnitude m drawn uniformly from [0, 1] per image.
// Geometric ops use the signed amount (2m - 1) * max. Solarize inverts
// pixels >= (1 - m) * 256 / 255 (m = 0: none); posterize keeps
// 8 - floor(m * (9 - min_posterize_bits)) bits; autocontrast and equalize
// (PIL's, on the 8-bit histogram) ignore m.
// A new field must also go into the pretraining cache key
// (PixelOpSettings in trainer/pretrain/pretrain_stage.cc).
struct StrongAugmentOptions {
  // Distinct ops per image, 0..(number of ops to choose among).
  int num_ops = 2;
  // Ops to choose among (without repeats); empty means all kNumStrongOps.
  // With all ops allowed the draws are those of an empty list.
  std::vector<StrongOp> ops;
  // Rotation angle up to +-max_rotate_degrees.
  double max_rotate_degrees = 30.0;
  // Shear factor up to +-max_shear.
  double max_shear = 0.3;
  // Translation up to +-max_translate of the side.
  double max_translate = 0.3;
  // Posterize keeps between min_posterize_bits and 8 bits.
  int min_posterize_bits = 4;
  // Contrast, brightness and sharpness use the PIL enhance factor
  // min_enhance + m * (max_enhance - min_enhance) (1 is identity).
  // AutoAugment's range here; the trainer's semi-supervised strong views
  // take the FixMatch paper's 0.05-0.95 from its flags
  // (--strong_enhance_min/max), SimCLR's pixel ops keep this one.
  double min_enhance = 0.1;
  double max_enhance = 1.9;
  // Cutout: after the ops, a square of side uniform in [1, cutout_max_fraction
  // * side] pixels at a uniform centre (clipped at the border) is set to
  // cutout_fill; 0 disables it. FixMatch's range is up to half the side.
  double cutout_max_fraction = 0.5;
  // Value of cutout pixels (mid grey, as in FixMatch).
  float cutout_fill = 0.5f;
  // Value geometric ops shift in from outside the image (0 = background).
  float geometric_fill = 0.0f;
};

// Weak augmentation of `images` ([N, C, H, W] float in [0, 1], any device):
// each image is flipped horizontally with flip_probability and shifted by a
// whole number of pixels in [-p, p] per axis, p = round(max_translate * side),
// all in one gather. Returns a contiguous tensor of the same shape whose
// pixels are a permutation-with-repeats of the input's (so values stay in
// [0, 1]). `gen` must be a generator for images' device.
at::Tensor WeakAugment(const at::Tensor& images, at::Generator& gen,
                       const WeakAugmentOptions& options = {});

// Strong augmentation (RandAugment + Cutout) of `images` ([N, C, H, W] float
// in [0, 1]): each image gets num_ops distinct ops drawn uniformly from
// options.ops (all of StrongOp by default) with a random magnitude each. Pixel
// ops are computed for the whole batch and selected per image; they run in
// StrongOp order, then the geometric ops of each image are composed into one
// affine map applied with a single bilinear grid_sample (skipped when no
// geometric op is allowed), then Cutout. Returns a contiguous tensor of the
// same shape with values in [0, 1]. Throws c10::Error for an out-of-range op or
// num_ops.
at::Tensor StrongAugment(const at::Tensor& images, at::Generator& gen,
                         const StrongAugmentOptions& options = {});

// Applies exactly one StrongOp with magnitude `magnitude` ([N] float in
// [0, 1] on images' device; geometric ops map it to a signed amount
// (2m - 1) * max) to every image, without Cutout. Deterministic; for tests
// and inspection.
at::Tensor ApplyStrongOp(const at::Tensor& images, StrongOp op,
                         const at::Tensor& magnitude,
                         const StrongAugmentOptions& options = {});

// Random resized crop (Inception / SimCLR style). Per image, the crop's
// area as a fraction of the image is drawn uniformly from
// [scale_min, scale_max] and its aspect ratio (width / height)
// log-uniformly from [ratio_min, ratio_max]; of 10 such draws the first
// that fits inside the image is used (none fits: the largest box of
// clamped ratio, as torchvision does). The box lies at a uniform position
// inside the image, with sub-pixel coordinates.
struct RandomResizedCropOptions {
  // Area fraction range, 0 < scale_min <= scale_max <= 1. SimCLR's 0.08 is
  // for ImageNet; on 28x28 images a 0.08 crop is an 8x8 patch with little
  // left of the object, so the default keeps at least a 12x12 patch.
  double scale_min = 0.2;
  double scale_max = 1.0;
  // Aspect ratio range, 0 < ratio_min <= ratio_max.
  double ratio_min = 3.0 / 4.0;
  double ratio_max = 4.0 / 3.0;
};

// OK when 0 < scale_min <= scale_max <= 1 and 0 < ratio_min <= ratio_max;
// INVALID_ARGUMENT otherwise, naming `owner` (e.g. "simclr") and the ranges.
absl::Status ValidateCrop(const RandomResizedCropOptions& crop,
                          const std::string& owner);

// Crops every image of `images` ([N, C, H, W] float32 in [0, 1]) to its own
// random box and resizes it back to H x W with bilinear sampling, for the
// whole batch in one affine_grid + grid_sample. Boxes lie inside the image,
// so nothing outside it is shown (samples in the half-pixel rim beyond the
// outermost pixel centres read the edge pixel). Returns a contiguous tensor of
// the same shape with values in [0, 1]. Throws c10::Error for options outside
// their ranges.
at::Tensor RandomResizedCrop(const at::Tensor& images, at::Generator& gen,
                             const RandomResizedCropOptions& options = {});

// StrongAugmentOptions for contrastive views of grayscale images: two
// distinct ops per image among identity and the pixel ops (autocontrast,
// equalize, solarize, posterize, contrast, brightness, sharpness: the
// grayscale counterparts of SimCLR's colour distortion, with identity
// standing in for its "no jitter" chance); no geometric ops (the crop does
// geometry) and no Cutout.
StrongAugmentOptions ContrastivePixelOptions();

// How a contrastive view's pixels are distorted after crop and flip.
enum class ContrastiveColour {
  // StrongAugment with ContrastiveAugmentOptions::strong (the default).
  kPixelOps,
  // SimCLR's colour jitter as it acts on grayscale images (saturation and
  // hue do nothing there): with jitter_probability, brightness (x * b) and
  // contrast ((x - mean) * c + mean, mean over the image) with b and c drawn
  // uniformly from [1 - jitter_strength, 1 + jitter_strength], in random
  // order, each result clamped to [0, 1]; otherwise unchanged.
  kJitter,
};

// "pixel_ops" or "jitter".
absl::StatusOr<ContrastiveColour> ParseContrastiveColour(
    absl::string_view name);
std::string ContrastiveColourName(ContrastiveColour colour);

struct ContrastiveAugmentOptions {
  // The random resized crop.
  RandomResizedCropOptions crop;
  // Chance of a horizontal flip, per image (applied with the crop).
  double flip_probability = 0.5;
  ContrastiveColour colour = ContrastiveColour::kPixelOps;
  // kPixelOps: the ops, applied by StrongAugment.
  StrongAugmentOptions strong = ContrastivePixelOptions();
  // kJitter: SimCLR's p = 0.8, and 0.8 * s for its CIFAR-10 strength s = 0.5.
  double jitter_probability = 0.8;
  double jitter_strength = 0.4;
  // Side of the square view in pixels; 0 keeps the input's H x W. A smaller
  // side makes SwAV's low-resolution "local" crops (multi-crop).
  int64_t output_size = 0;
};

// One contrastive view of each of `images` ([N, C, H, W] float32 in
// [0, 1]): random resized crop and horizontal flip in a single bilinear
// grid_sample, then the colour distortion of options.colour. Call twice (the
// generator advances) for SimCLR's two views. Returns a contiguous tensor
// of the same shape (H x W replaced by output_size x output_size when that
// is set) with values in [0, 1]. Throws c10::Error for options outside
// their ranges.
at::Tensor ContrastiveAugment(const at::Tensor& images, at::Generator& gen,
                              const ContrastiveAugmentOptions& options = {});

// ValidateCrop of options.crop, jitter_probability and jitter_strength in
// [0, 1] and output_size 0 or at least 4; INVALID_ARGUMENT naming `owner`
// otherwise.
absl::Status ValidateContrastiveAugment(
    const ContrastiveAugmentOptions& options, const std::string& owner);

}  // namespace trainer

#endif  // TRAINER_LEARN_AUGMENT_H_
