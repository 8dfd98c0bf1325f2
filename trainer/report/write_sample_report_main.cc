// Writes a complete set of run outputs (metrics.jsonl, rounds.csv,
// report.json, report.html) from synthetic data, for looking at the report
// layout and for the headless-browser test.
//
//   write_sample_report --out_dir=/tmp/report
//
// With --dataset_dir=/usr/share/datasets/fashion-mnist the queried images are
// real Fashion-MNIST training images instead of drawn silhouettes.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/idx_file.h"
#include "common/status_macros.h"
#include "trainer/report/run_report.h"

ABSL_FLAG(std::string, out_dir, "", "Directory to write the outputs into.");
ABSL_FLAG(std::string, dataset_dir, "",
          "Fashion-MNIST directory; if set, queried images are real training "
          "images instead of drawn silhouettes.");
ABSL_FLAG(int, labels_per_round, 40, "Queried samples per round.");

namespace trainer {
namespace {

constexpr int kRounds = 5;
constexpr int kStepsPerRound = 2000;
constexpr int kPretrainSteps = 3000;
// Pretraining loss is logged every this many steps.
constexpr int kPretrainLogEvery = 100;

// A deterministic linear congruential generator (no <random> so that the
// output is identical on every platform).
class Lcg {
 public:
  explicit Lcg(uint64_t seed) : state_(seed) {}
  // Uniform in [0, 1).
  double Next() {
    state_ = state_ * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<double>(state_ >> 11) / 9007199254740992.0;
  }

 private:
  uint64_t state_;
};

// A 28x28 canvas with simple filled shapes.
class Canvas {
 public:
  Canvas() : pixels_(kImageSide * kImageSide, 0) {}

  // Fills the trapezoid spanning rows [y0, y1] whose left and right edges
  // move linearly from [left0, right0] to [left1, right1].
  void Trapezoid(int y0, int y1, double left0, double right0, double left1,
                 double right1, uint8_t value) {
    for (int y = y0; y <= y1; ++y) {
      const double t = y1 == y0 ? 0 : static_cast<double>(y - y0) / (y1 - y0);
      const double left = left0 + (left1 - left0) * t;
      const double right = right0 + (right1 - right0) * t;
      for (int x = static_cast<int>(std::ceil(left));
           x <= static_cast<int>(std::floor(right)); ++x) {
        Set(x, y, value);
      }
    }
  }
  void Rect(int x0, int y0, int x1, int y1, uint8_t value) {
    Trapezoid(y0, y1, x0, x1, x0, x1, value);
  }

  // Adds texture so that no two samples look identical.
  std::vector<uint8_t> Finish(Lcg& rng) {
    for (uint8_t& p : pixels_) {
      if (p == 0) continue;
      p = static_cast<uint8_t>(
          std::clamp(p - 40 + 80 * rng.Next(), 20.0, 255.0));
    }
    return pixels_;
  }

 private:
  void Set(int x, int y, uint8_t value) {
    if (x < 0 || y < 0 || x >= kImageSide || y >= kImageSide) return;
    pixels_[y * kImageSide + x] = value;
  }

  std::vector<uint8_t> pixels_;
};

// A rough silhouette of a Fashion-MNIST class, jittered by `rng`.
std::vector<uint8_t> DrawSilhouette(int label, Lcg& rng) {
  Canvas c;
  const double j = rng.Next() * 2 - 1;  // Jitter in [-1, 1).
  const uint8_t v = static_cast<uint8_t>(150 + 80 * rng.Next());
  switch (label) {
    case 0:  // T-shirt/top: body and short sleeves.
      c.Trapezoid(3, 8, 4 + j, 23 - j, 1, 26, v);
      c.Rect(8, 3, 19, 25, v);
      c.Rect(12, 3, 15, 5, 0);
      break;
    case 1:  // Trouser: waist and two legs.
      c.Rect(8, 2, 19, 6, v);
      c.Trapezoid(6, 26, 8, 13, 7 + j, 12 + j, v);
      c.Trapezoid(6, 26, 14, 19, 15 - j, 20 - j, v);
      break;
    case 2:  // Pullover: body and long sleeves.
      c.Rect(7, 3, 20, 25, v);
      c.Trapezoid(3, 24, 7, 9, 2 + j, 6 + j, v);
      c.Trapezoid(3, 24, 18, 20, 21 - j, 25 - j, v);
      break;
    case 3:  // Dress: narrow top, wide hem.
      c.Trapezoid(2, 26, 10, 17, 5 + j, 22 - j, v);
      break;
    case 4:  // Coat: long body, long sleeves, opening.
      c.Rect(7, 2, 20, 27, v);
      c.Trapezoid(2, 25, 7, 9, 2, 6 + j, v);
      c.Trapezoid(2, 25, 18, 20, 21 - j, 25, v);
      c.Rect(13, 4, 14, 27, static_cast<uint8_t>(v / 3));
      break;
    case 5:  // Sandal: thin straps over a sole.
      c.Rect(2, 19, 25, 21, v);
      for (int x = 5; x < 24; x += 5)
        c.Trapezoid(11, 18, x, x + 1, x + 2, x + 3, v);
      break;
    case 6:  // Shirt: body, sleeves, collar and buttons.
      c.Trapezoid(3, 10, 5 + j, 22 - j, 2, 25, v);
      c.Rect(8, 3, 19, 26, v);
      c.Trapezoid(3, 6, 11, 16, 13, 14, 0);
      for (int y = 9; y < 26; y += 4)
        c.Rect(13, y, 14, y, static_cast<uint8_t>(v / 3));
      break;
    case 7:  // Sneaker: low shoe, rising at the heel.
      c.Trapezoid(13, 20, 14 + j, 25, 2, 26, v);
      c.Rect(2, 20, 26, 22, 255);
      break;
    case 8:  // Bag: box and handle.
      c.Rect(3, 11, 24, 25, v);
      c.Rect(8, 5, 19, 6, v);
      c.Rect(8, 5, 9, 11, v);
      c.Rect(18, 5, 19, 11, v);
      break;
    default:  // Ankle boot: shaft and foot.
      c.Rect(12 + static_cast<int>(j), 3, 22, 20, v);
      c.Trapezoid(14, 23, 12, 22, 3, 25, v);
      break;
  }
  return c.Finish(rng);
}

absl::Status Run() {
  const std::string out_dir = absl::GetFlag(FLAGS_out_dir);
  if (out_dir.empty()) {
    return absl::InvalidArgumentError("--out_dir is required");
  }
  const int per_round = absl::GetFlag(FLAGS_labels_per_round);
  Lcg rng(20240601);

  FinalReport report;
  report.experiment =
      "FreeMatch + SimCLR + margin sampling <demo> & \"quotes\"";
  report.strategy = "margin";
  report.objective = "freematch";
  report.pretrain.method = "simclr";
  report.pretrain.checkpoint =
      "/var/cache/fewlabels/pretrain/simclr-wrn28-2-s7-3000steps-9f2c41d0.pt";
  report.pretrain.reused = false;
  report.pretrain.steps = kPretrainSteps;
  report.initial_weights = report.pretrain.checkpoint;
  report.feature_quality = {
      {"pretrained", 40, 0.7125, 0.5830},
      {"round 5", 200, 0.8410, 0.6915},
  };
  report.label_budget = 250;
  report.device = "cuda:0 (NVIDIA H100 80GB HBM3)";
  report.config = {
      {"seed", "7"},
      {"objective", "freematch"},
      {"pretrain", "simclr"},
      {"pretrain_steps", absl::StrCat(kPretrainSteps)},
      {"rounds", absl::StrCat(kRounds)},
      {"labels_per_round", absl::StrCat(per_round)},
      {"steps_per_round", absl::StrCat(kStepsPerRound)},
      {"batch_size", "64"},
      {"unlabeled_ratio (mu)", "7"},
      {"lr", "0.03"},
      {"confidence_threshold", "0.95"},
      {"lambda_u", "1.0"},
      {"oracle", "127.0.0.1:50051"},
      {"note", "<script>alert('not run')</script> & friends"},
  };

  // Per-class accuracy and confusion over 1000 test images per class; errors
  // go to the classes a real model confuses.
  const double base_accuracy[] = {0.84, 0.97, 0.78, 0.87, 0.79,
                                  0.95, 0.58, 0.94, 0.96, 0.95};
  const int confused_with[] = {6, 3, 4, 0, 2, 7, 0, 9, 0, 7};
  const int kPerClass = 1000;
  int64_t correct = 0;
  for (int t = 0; t < 10; ++t) {
    std::vector<int64_t> row(10, 0);
    row[t] = static_cast<int64_t>(std::lround(base_accuracy[t] * kPerClass));
    const int64_t errors = kPerClass - row[t];
    row[confused_with[t]] += errors * 6 / 10;
    int64_t rest = errors - errors * 6 / 10;
    for (int p = 0; rest > 0; p = (p + 1) % 10) {
      if (p == t) continue;
      ++row[p];
      --rest;
    }
    correct += row[t];
    report.per_class_accuracy.push_back(static_cast<double>(row[t]) /
                                        kPerClass);
    report.confusion.push_back(std::move(row));
  }
  report.accuracy = static_cast<double>(correct) / (10 * kPerClass);

  std::vector<uint8_t> train_labels;
  common::IdxArray train_images;
  const std::string dataset_dir = absl::GetFlag(FLAGS_dataset_dir);
  if (!dataset_dir.empty()) {
    ASSIGN_OR_RETURN(train_labels, common::ReadIdxLabels(
                                       absl::StrCat(dataset_dir, "/",
                                                    common::kTrainLabelsFile),
                                       common::kTrainCount));
    ASSIGN_OR_RETURN(train_images, common::ReadIdxImages(
                                       absl::StrCat(dataset_dir, "/",
                                                    common::kTrainImagesFile),
                                       common::kTrainCount));
  }

  RunReportOptions options;
  options.out_dir = out_dir;
  ASSIGN_OR_RETURN(std::unique_ptr<RunReportWriter> writer,
                   RunReportWriter::Create(options));
  // SimCLR's NT-Xent loss falls from about ln(2 * 256 - 1) towards 4.
  for (int step = kPretrainLogEvery; step <= kPretrainSteps;
       step += kPretrainLogEvery) {
    const double t = static_cast<double>(step) / kPretrainSteps;
    StepMetrics metrics;
    metrics.step = step;
    metrics.stage = "pretrain";
    metrics.loss = 4.05 + 2.1 * std::exp(-5 * t) + 0.06 * (rng.Next() - 0.5);
    metrics.scalars = {{"positive_accuracy", 0.95 - 0.8 * std::exp(-6 * t)}};
    metrics.lr = 0.3 * std::cos(M_PI * t / 2);
    metrics.steps_per_s = 7.3;
    report.pretrain.loss_curve.push_back({step, metrics.loss});
    RETURN_IF_ERROR(writer->AppendMetrics(metrics));
  }
  report.pretrain.wall_time_s = kPretrainSteps / 7.3;

  int64_t step = 0;
  for (int round = 1; round <= kRounds; ++round) {
    for (int i = 0; i < per_round; ++i) {
      QueriedSample sample;
      sample.id = static_cast<int64_t>(rng.Next() * common::kTrainCount);
      sample.round = round;
      if (train_labels.empty()) {
        sample.label = static_cast<int>(rng.Next() * 10);
        sample.pixels = DrawSilhouette(sample.label, rng);
      } else {
        sample.label = train_labels[sample.id];
        const size_t size = kImageSide * kImageSide;
        sample.pixels.assign(
            train_images.data.begin() + sample.id * size,
            train_images.data.begin() + (sample.id + 1) * size);
      }
      report.queried.push_back(std::move(sample));
    }
    const double progress = static_cast<double>(round) / kRounds;
    for (int s = 0; s < kStepsPerRound; s += 500) {
      step += 500;
      const double t = static_cast<double>(step) / (kRounds * kStepsPerRound);
      StepMetrics metrics;
      metrics.step = step;
      const double loss_x = 1.6 * std::exp(-4 * t) + 0.1;
      const double loss_u = 0.3 * t + 0.05;
      const double loss_f = -0.02 * t;
      metrics.loss = loss_x + loss_u + loss_f;
      metrics.scalars = {{"loss_x", loss_x},
                         {"loss_u", loss_u},
                         {"mask_rate", 0.2 + 0.7 * t},
                         {"loss_f", loss_f},
                         {"tau", 0.1 + 0.85 * t}};
      metrics.lr = 0.03 * std::cos(7 * M_PI * t / 16);
      metrics.steps_per_s = 41.5;
      // Rises towards the final accuracy, reached at the last step.
      const double accuracy =
          report.accuracy -
          0.3 * (std::exp(-3.5 * t) - std::exp(-3.5)) * (1.2 - progress / 2);
      metrics.test_accuracy = accuracy;
      report.step_curve.push_back({step, accuracy});
      RETURN_IF_ERROR(writer->AppendMetrics(metrics));
    }
    RoundRecord record;
    record.round = round;
    record.labels_spent = static_cast<int64_t>(round) * per_round;
    record.test_accuracy = report.step_curve.back().accuracy;
    record.steps = step;
    record.strategy = round == 1 ? "random (seed set)" : "margin";
    RETURN_IF_ERROR(writer->AppendRound(record));
    report.rounds.push_back(record);
    report.label_curve.push_back({record.labels_spent, record.test_accuracy});
  }
  report.labels_spent = report.rounds.back().labels_spent;
  report.steps = step;
  report.steps_per_s = 41.5;
  report.wall_time_s =
      step / report.steps_per_s + report.pretrain.wall_time_s + 95;
  return writer->WriteReport(report);
}

}  // namespace
}  // namespace trainer

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = trainer::Run();
  if (!status.ok()) {
    std::cerr << "write_sample_report: " << status << "\n";
    return 1;
  }
  std::cout << absl::GetFlag(FLAGS_out_dir) << "/"
            << trainer::RunReportWriter::kReportHtmlFile << "\n";
  return 0;
}
