// SimCLR (Chen et al. 2020): two contrastive views of each unlabelled image,
// the model's embedding through a projection head, and the NT-Xent loss that
// pulls the two views of an image together and pushes other images away.
// With local_crops, SwAV's multi-crop (Caron et al. 2020): more, smaller
// views of each image at a lower resolution, every view of an image a
// positive of every other (the multi-view NT-Xent). Uses no labels.
#ifndef TRAINER_OBJECTIVES_SIMCLR_H_
#define TRAINER_OBJECTIVES_SIMCLR_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "trainer/learn/augment.h"
#include "trainer/learn/heads.h"
#include "trainer/learn/objective.h"

namespace trainer {

struct SimClrOptions {
  // Images per step (each gives two views: 2 * batch_size forward passes).
  int batch_size = 256;
  // NT-Xent temperature.
  double temperature = 0.2;
  // The views' augmentation.
  ContrastiveAugmentOptions augment;
  // Projection head widths (hidden 0: the embedding's size).
  int64_t projection_hidden_dim = 0;
  int64_t projection_dim = 128;
  // Multi-crop: this many extra views of each image (0: SimCLR's two), made
  // as `augment` makes its views but cropped to an area fraction in
  // [local_crop_scale_min, local_crop_scale_max] and resampled to
  // local_crop_size x local_crop_size pixels. The backbone sees the two
  // full-size views and the local ones in two forward passes (one per
  // resolution, as SwAV), the projection head all of them at once.
  int local_crops = 0;
  int64_t local_crop_size = 16;
  double local_crop_scale_min = 0.1;
  double local_crop_scale_max = 0.4;
};

// The augmentation of a multi-crop local view: options.augment with the
// local crop's scale range and output size.
ContrastiveAugmentOptions LocalCropAugment(const SimClrOptions& options);

// Metrics: positive_accuracy (fraction of views whose most similar other
// view shows the same image: their pair, or with local crops any view of it).
class SimClrObjective : public TrainingObjective {
 public:
  // `embedding_dim` is the model's embedding size. INVALID_ARGUMENT for
  // batch_size < 2, temperature <= 0, non-positive sizes, a crop outside
  // 0 < scale_min <= scale_max <= 1, 0 < ratio_min <= ratio_max, negative
  // local_crops or (with local crops) a local crop size below 4 or a local
  // scale range outside those bounds; UNAVAILABLE if
  // the head cannot be placed on `device`.
  static absl::StatusOr<std::unique_ptr<SimClrObjective>> Create(
      const SimClrOptions& options, int64_t embedding_dim,
      torch::Device device, uint64_t seed);

  std::string name() const override { return "simclr"; }
  bool uses_labels() const override { return false; }
  std::vector<std::string> metric_names() const override {
    return {"positive_accuracy"};
  }
  std::vector<torch::nn::Module*> trained_modules() override {
    return {head_.ptr().get()};
  }
  ObjectiveLoss Loss(const StepContext& context,
                     const StepData& data) override;
  void Save(torch::serialize::OutputArchive& archive) const override;
  void Load(torch::serialize::InputArchive& archive) override;

 private:
  SimClrObjective(const SimClrOptions& options, ProjectionHead head)
      : options_(options), head_(std::move(head)) {}
  SimClrOptions options_;
  ProjectionHead head_;
};

}  // namespace trainer

#endif  // TRAINER_OBJECTIVES_SIMCLR_H_
