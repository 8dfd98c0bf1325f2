// Run outputs written by the trainer: metrics.jsonl (one record per logged
// step), rounds.csv (one row per labeling round) and the final report.json
// and report.html. Torch-free: callers pass plain values.
#ifndef TRAINER_REPORT_RUN_REPORT_H_
#define TRAINER_REPORT_RUN_REPORT_H_

#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace trainer {

// Side length of a Fashion-MNIST image; QueriedSample::pixels has
// kImageSide * kImageSide entries.
inline constexpr int kImageSide = 28;

// The Fashion-MNIST class names, indexed by label.
const std::vector<std::string>& FashionMnistClassNames();

// One training step's numbers, written as a line of metrics.jsonl.
struct StepMetrics {
  int64_t step = 0;
  // The stage the step belongs to: "pretrain", or "train" for the
  // semi-supervised rounds (the default).
  std::string stage = "train";
  // The objective's total loss.
  double loss = 0;
  // The objective's named scalars in its order, e.g. FixMatch's loss_x
  // (supervised cross-entropy), loss_u (pseudo-label loss) and mask_rate
  // (fraction of unlabelled images above the threshold).
  std::vector<std::pair<std::string, double>> scalars;
  // Learning rate used for this step.
  double lr = 0;
  // Training throughput over the recent window.
  double steps_per_s = 0;
  // Test-set accuracy in [0, 1], when an evaluation ran at this step.
  std::optional<double> test_accuracy;
};

// The state at the end of one labeling round, written as a row of
// rounds.csv.
struct RoundRecord {
  int round = 0;
  // Labels bought from the oracle so far (cumulative).
  int64_t labels_spent = 0;
  // Test-set accuracy in [0, 1] after this round's training.
  double test_accuracy = 0;
  // Training steps run so far (cumulative).
  int64_t steps = 0;
  // Name of the selection strategy that chose this round's queries.
  std::string strategy;
};

// A point of the accuracy-vs-labels learning curve.
struct LabelCurvePoint {
  int64_t labels_spent = 0;
  double accuracy = 0;  // In [0, 1].
};

// A point of the accuracy-vs-training-step curve.
struct StepCurvePoint {
  int64_t step = 0;
  double accuracy = 0;  // In [0, 1].
};

// A point of a loss curve (the pretraining stage's).
struct LossCurvePoint {
  int64_t step = 0;
  double loss = 0;
};

// What the self-supervised pretraining stage did.
struct PretrainSummary {
  // "none" or the method ("simclr").
  std::string method = "none";
  // The checkpoint that holds the pretrained weights (empty for "none").
  std::string checkpoint;
  // True when the checkpoint was found in the cache and no step ran.
  bool reused = false;
  int64_t steps = 0;
  double wall_time_s = 0;
  // The stage's loss every few steps (empty when reused).
  std::vector<LossCurvePoint> loss_curve;
};

// A label-free check of an embedding: a k-nearest-neighbour classifier
// whose references are the labels bought so far, scored on the test set by
// the oracle, next to the same classifier on the label-free PCA features.
struct FeatureQualityRecord {
  // When it was measured: "pretrained" (before any purchase is used for
  // training) or "round N".
  std::string stage;
  // Bought labels used as references.
  int64_t labels = 0;
  // Test accuracy in [0, 1] of kNN on the stage's embedding and on PCA.
  double embedding_accuracy = 0;
  double pca_accuracy = 0;
};

// A training sample whose label was bought from the oracle.
struct QueriedSample {
  // Index in the training set.
  int64_t id = 0;
  // The oracle's label, in [0, class_names.size()).
  int label = 0;
  // The round in which it was queried.
  int round = 0;
  // kImageSide x kImageSide, row-major, 0 = background.
  std::vector<uint8_t> pixels;
};

// Everything report.json and report.html show about a finished run.
struct FinalReport {
  std::string experiment;
  std::string strategy;
  // The semi-supervised objective ("fixmatch", "flexmatch", "freematch").
  std::string objective;
  // Where the rounds' model started: "random initialisation" or the
  // pretraining checkpoint.
  std::string initial_weights;
  PretrainSummary pretrain;
  std::vector<FeatureQualityRecord> feature_quality;
  int64_t labels_spent = 0;
  int64_t label_budget = 0;
  // Final test-set accuracy in [0, 1].
  double accuracy = 0;
  // One entry per class, in [0, 1]; empty, as `confusion`, when the oracle
  // withheld both (a class predicted for too few test images).
  std::vector<double> per_class_accuracy;
  // confusion[true_label][predicted_label] = number of test samples;
  // class_names.size() x class_names.size(), or empty (withheld).
  std::vector<std::vector<int64_t>> confusion;
  // Display names indexed by label; the number of classes is its size.
  std::vector<std::string> class_names = FashionMnistClassNames();
  double wall_time_s = 0;
  int64_t steps = 0;
  // The steps the run was asked for; more than `steps` when it fitted its
  // steps to a time limit.
  int64_t planned_steps = 0;
  double steps_per_s = 0;
  // Where training ran, e.g. "cuda:0 (NVIDIA H100)" or "cpu".
  std::string device;
  // The run's configuration as display key/value pairs, in display order.
  std::vector<std::pair<std::string, std::string>> config;
  std::vector<RoundRecord> rounds;
  std::vector<LabelCurvePoint> label_curve;
  std::vector<StepCurvePoint> step_curve;
  std::vector<QueriedSample> queried;
};

// Returns OK if `report` is self-consistent: per_class_accuracy and
// confusion sized to class_names or both empty (withheld), labels in range, every queried image
// kImageSide x kImageSide, feature_quality accuracies in [0, 1]. Otherwise
// INVALID_ARGUMENT naming the field.
absl::Status ValidateFinalReport(const FinalReport& report);

// Returns report.json's content: a compact JSON object with the fields of
// `report` under the same names; queried pixels as base64 ("pixels_b64").
// Requires ValidateFinalReport(report).ok().
std::string RenderReportJson(const FinalReport& report);

// Options for RunReportWriter::Create.
struct RunReportOptions {
  // Directory for the outputs; created (with parents) if missing.
  std::string out_dir;
  // If true, metrics.jsonl and rounds.csv are appended to (after dropping a
  // partial last line left by a crash) and time_s continues from the last
  // record in metrics.jsonl; otherwise they are truncated.
  bool resume = false;
  // Clock for time_s; absl::Now if empty. Tests inject a fake.
  std::function<absl::Time()> clock;
};

// Writes a run's outputs into one directory. Not thread-safe: calls must be
// serialized by the caller.
//
// Resuming appends: records written after the checkpoint being resumed from
// are not removed, so a step or round may appear twice; readers should keep
// the last record for each step or round.
class RunReportWriter {
 public:
  // File names inside out_dir.
  static constexpr char kMetricsFile[] = "metrics.jsonl";
  static constexpr char kRoundsFile[] = "rounds.csv";
  static constexpr char kReportJsonFile[] = "report.json";
  static constexpr char kReportHtmlFile[] = "report.html";

  // Creates `out_dir` if needed and opens metrics.jsonl and rounds.csv
  // (appending when `resume`, truncating otherwise). Returns an error status
  // (mapped from errno) if the directory or files cannot be created.
  static absl::StatusOr<std::unique_ptr<RunReportWriter>> Create(
      const std::string& out_dir, bool resume);
  static absl::StatusOr<std::unique_ptr<RunReportWriter>> Create(
      const RunReportOptions& options);

  RunReportWriter(const RunReportWriter&) = delete;
  RunReportWriter& operator=(const RunReportWriter&) = delete;
  ~RunReportWriter();

  // Appends one JSON object line to metrics.jsonl, with the keys step,
  // time_s (seconds since Create, plus the resumed offset), stage, loss,
  // each of the scalars under its name, lr, steps_per_s and, when set,
  // test_accuracy.
  // Non-finite numbers are written as null. Flushed before returning.
  // INVALID_ARGUMENT, and nothing written, if a scalar's name is empty,
  // repeated or one of the fixed keys.
  absl::Status AppendMetrics(const StepMetrics& metrics);

  // Appends one row to rounds.csv (round,labels_spent,test_accuracy,steps,
  // strategy); the header is written when the file is empty. Flushed before
  // returning.
  absl::Status AppendRound(const RoundRecord& record);

  // Writes report.json and report.html, each atomically (a temporary file in
  // out_dir, synced, then renamed over the target). Returns
  // INVALID_ARGUMENT if ValidateFinalReport fails; nothing is written then.
  absl::Status WriteReport(const FinalReport& report);

  // The rounds recorded in `out_dir`'s rounds.csv, by round (the last row
  // of each round wins: a resumed run may have written one twice); torn or
  // foreign lines are skipped, an empty test_accuracy (how AppendRound
  // writes a non-finite one) reads as NaN. Empty when the file does not
  // exist.
  static std::vector<RoundRecord> ReadRounds(const std::string& out_dir);

  const std::string& out_dir() const { return out_dir_; }

 private:
  RunReportWriter(std::string out_dir, std::function<absl::Time()> clock,
                  absl::Time start, double time_offset_s, std::FILE* metrics,
                  std::FILE* rounds, bool rounds_has_header);

  const std::string out_dir_;
  const std::function<absl::Time()> clock_;
  const absl::Time start_;
  // time_s of the last record of a resumed metrics.jsonl; 0 otherwise.
  const double time_offset_s_;
  std::FILE* const metrics_;
  std::FILE* const rounds_;
  bool rounds_has_header_;
};

}  // namespace trainer

#endif  // TRAINER_REPORT_RUN_REPORT_H_
