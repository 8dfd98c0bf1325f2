#include "trainer/run/trainer_run.h"

#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <optional>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/atomic_file.h"
#include "common/idx_file.h"
#include "common/status_macros.h"
#include "trainer/learn/augment.h"
#include "trainer/learn/dataset.h"
#include "trainer/learn/prototype_head.h"
#include "trainer/learn/torch_status.h"
#include "trainer/report/progress.h"
#include "trainer/report/run_report.h"
#include "trainer/rpc/selector_client.h"
#include "trainer/run/purchase_journal.h"
#include "trainer/run/time_fit.h"
#include "trainer/select/feature_quality.h"
#include "trainer/select/label_free_features.h"

namespace trainer {
namespace {

constexpr char kJournalFile[] = "purchases.log";
constexpr char kCheckpointFile[] = "checkpoint.pt";
// The distillation stage's student (checkpoint.pt keeps the teacher).
constexpr char kStudentCheckpointFile[] = "student.pt";
// The round ends when checkpoint.pt was written, which a time fit moves:
// three lines "step S" (checkpoint.pt's step), "planned E0,E1,..."
// (PlanRounds's ends) and "ends E0,E1,..." (the run's).
constexpr char kRoundEndsFile[] = "round_ends.txt";

// The report's "pretraining" entry: the method, its steps and views' crop,
// and BYOL's target decay; "none" without pretraining.
std::string PretrainingDescription(const PretrainOptions& pretrain) {
  if (pretrain.method == "none") return "none";
  ObjectiveOptions objective = pretrain.objective;
  objective.name = pretrain.method;
  std::string text =
      absl::StrCat(pretrain.method, ", ", pretrain.steps, " steps");
  if (const ContrastiveAugmentOptions* views = ContrastiveViews(objective)) {
    absl::StrAppend(&text, ", crop scale ", views->crop.scale_min, "-",
                    views->crop.scale_max);
  }
  if (pretrain.method == "byol") {
    absl::StrAppend(&text, ", target decay ",
                    pretrain.objective.byol.target_decay);
  }
  return text;
}

absl::StatusOr<torch::Device> ChooseDevice(const std::string& spec) {
  if (spec == "auto") {
    return torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0)
                                       : torch::Device(torch::kCPU);
  }
  try {
    torch::Device device(spec);
    if (device.is_cuda() && !torch::cuda::is_available()) {
      return absl::UnavailableError(absl::StrCat(
          "device ", spec, " requested but CUDA is not available"));
    }
    return device;
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad --device '", spec, "': use auto, cpu or cuda[:N]"));
  }
}

std::string JoinPath(const std::string& dir, const std::string& file) {
  return (std::filesystem::path(dir) / file).string();
}

// The comma-separated steps in `text`; nullopt unless each is an integer.
std::optional<std::vector<int64_t>> ParseSteps(absl::string_view text) {
  std::vector<int64_t> steps;
  for (absl::string_view entry : absl::StrSplit(text, ',')) {
    int64_t step = 0;
    if (!absl::SimpleAtoi(entry, &step)) return std::nullopt;
    steps.push_back(step);
  }
  return steps;
}

// The number of pool images options.train_limit leaves.
int64_t PoolSize(const TrainerOptions& options) {
  return options.train_limit > 0 && options.train_limit < common::kTrainCount
             ? options.train_limit
             : common::kTrainCount;
}

// Everything one run holds while it goes.
class Run {
 public:
  Run(const TrainerOptions& options, OracleClient* oracle,
      const std::atomic<bool>* stop)
      : options_(options),
        oracle_(oracle),
        stop_(stop),
        progress_(ProgressLine::ForStderr()),
        start_(options.clock()) {}

  absl::StatusOr<RunSummary> Go();

 private:
  absl::Status Prepare();
  absl::Status Pretrain();
  // A learner for `round` (its schedule: the whole run, or the round alone
  // with restart_rounds) starting from the initial weights.
  absl::StatusOr<std::unique_ptr<Learner>> MakeLearner(int round);
  // Replaces the learner with a fresh one for `round` (a restarted round,
  // or the distillation stage after the last), from the initial weights,
  // its step count set to `step`.
  absl::Status RestartLearner(int round, int64_t step);
  // With prototype_head: fits the learner's classifier layer to the labels
  // bought so far (FitPrototypeHead on its EMA model's embedding of them).
  absl::Status InitialiseHead();
  // What the run's model starts from, for logs.
  std::string InitialWeightsName() const {
    return initial_weights_.empty() ? "the seeded initialisation"
                                    : initial_weights_;
  }
  // Points the learner's cosine schedule at `round`'s (restart_rounds).
  void ScheduleRound(int round);
  int RoundOfStep(int64_t step) const;
  absl::StatusOr<Predictions> PredictEma(const torch::Tensor& images);
  // Clean pool images BatchNorm statistics are re-estimated on: at most
  // 10,000, evenly spread.
  torch::Tensor BatchNormImages() const;
  // The pool's embedding before any labelled training, what the first round
  // selects on: PCA features without pretraining, else the EMA model of a
  // fresh learner from the initial weights (its BatchNorm statistics
  // re-estimated as PredictEma does). Computed once, then cached.
  absl::StatusOr<torch::Tensor> InitialEmbedding();
  absl::Status MeasureFeatureQuality(const std::string& stage);
  // ValidateSelection of `ids` as `count` new ids from the pool: distinct,
  // in the pool and not bought yet.
  absl::Status CheckSelection(int64_t count,
                              const std::vector<int64_t>& ids) const;
  // FAILED_PRECONDITION unless the journal's unfinished purchase, if any,
  // is one this run could have made: a round not bought yet, of its
  // scheduled size, with ids CheckSelection accepts.
  absl::Status CheckPendingIntent() const;
  // Journals the intent to buy `ids` in `round`, buys them in calls of at
  // most ids_per_query ids and journals the labels.
  absl::Status Buy(int round, const std::vector<int64_t>& ids);
  absl::Status SelectAndBuy(int round, int64_t count);
  // Trains until the end of `round` (plan_.end_step[round], which a time
  // fit may move while it trains), or of the distillation stage.
  absl::Status TrainUntil(int round);
  // Where TrainUntil(round) stops.
  int64_t EndStep(int round) const {
    return distilling_ ? distill_end_step_ : plan_.end_step[round];
  }
  // The distillation stage after the last round, whose final evaluation
  // was `teacher`; returns the student's.
  absl::StatusOr<Evaluation> Distill(const Evaluation& teacher);
  // The EMA model's class probabilities of `images` as Evaluate scores them
  // (with eval_flip, the mean over each image and its mirror).
  absl::StatusOr<torch::Tensor> ScoredProbabilities(
      const torch::Tensor& images);
  // With a time fit: observes the rate and refits the plan if needed.
  void FitToTime(int round);
  absl::StatusOr<Evaluation> Evaluate(const std::string& note);
  // Scores the predictions argmax(probs) of the test images with the oracle
  // (Evaluate also adds the result to the step curve).
  absl::StatusOr<Evaluation> ScoreTest(const torch::Tensor& probs,
                                       const std::string& note);
  // Saves the learner to checkpoint.pt (student.pt while distilling) and,
  // outside distillation, the round ends to round_ends.txt, each file
  // atomically.
  absl::Status Checkpoint();
  // After checkpoint.pt is loaded: takes the round ends from
  // round_ends.txt if it was written with that checkpoint for this run's
  // plan (then plan_restored_), so that RoundOfStep finds the round the
  // step was in even after a time fit moved the ends; otherwise (a
  // checkpoint from an older trainer, other --total_steps or --round_steps)
  // keeps PlanRounds's ends and says so.
  void RestoreRoundEnds();
  absl::Status RebuildLabelledTensors();
  absl::StatusOr<RunSummary> Finish(const Evaluation& evaluation);
  void RestoreRounds();
  void Log(const std::string& message) { progress_.Log(message); }
  ProgressState Progress() const;
  bool StopRequested() const { return stop_ != nullptr && stop_->load(); }

  const TrainerOptions& options_;
  OracleClient* const oracle_;
  const std::atomic<bool>* const stop_;
  ProgressLine progress_;
  const absl::Time start_;

  RoundPlan plan_;
  // Whether plan_.end_step and the learner's schedule were restored with
  // the checkpoint (RestoreRoundEnds).
  bool plan_restored_ = false;
  torch::Device device_{torch::kCPU};
  torch::Tensor train_images_;  // [N, 1, 28, 28] in [0, 1], on device_
  torch::Tensor test_images_;
  std::unique_ptr<PurchaseJournal> journal_;
  std::unique_ptr<Learner> trainer_;
  // Weights every round's model starts from: the pretraining checkpoint,
  // or empty for the seeded initialisation.
  std::string initial_weights_;
  PretrainSummary pretrain_summary_;
  std::vector<FeatureQualityRecord> feature_quality_;
  // PCA features of the pool followed by the test images (feature quality).
  torch::Tensor pca_features_;
  // Step at which the EMA's BN statistics were last re-estimated (-1: never).
  int64_t recalibrated_step_ = -1;
  // InitialEmbedding's cache (undefined until first asked for).
  torch::Tensor initial_embedding_;
  std::unique_ptr<SelectionStrategy> strategy_;
  std::unique_ptr<RunReportWriter> report_;
  torch::Tensor labelled_images_;
  torch::Tensor labelled_targets_;
  int current_round_ = 0;
  std::optional<double> last_accuracy_;
  std::vector<RoundRecord> rounds_;
  std::vector<LabelCurvePoint> label_curve_;
  std::vector<StepCurvePoint> step_curve_;
  // Training-only time and steps, for steps/s (evaluation excluded).
  double train_seconds_ = 0;
  int64_t trained_steps_ = 0;
  double window_steps_per_s_ = 0;
  double last_mask_rate_ = 0;
  double last_loss_ = 0;
  bool time_limit_logged_ = false;
  // Fitting the steps to max_train_seconds (fit_to_time), the plan's round
  // ends and end before any fit, and the longest stretch between two
  // rounds' training (selection, purchase, evaluations) seen so far.
  std::optional<TimeFit> time_fit_;
  std::vector<int64_t> planned_ends_;
  int64_t planned_end_step_ = 0;
  double round_gap_s_ = 0;
  // The distillation stage: whether it is training, its end step, the
  // teacher's probabilities of the pool (in StepData) and test accuracy.
  bool distilling_ = false;
  int64_t distill_start_step_ = 0;
  int64_t distill_end_step_ = 0;
  torch::Tensor teacher_probs_;
  std::optional<double> teacher_accuracy_;
  // With distill_ensemble: the teacher's probabilities of the test images,
  // and the student's own accuracy once the stage has ended.
  torch::Tensor teacher_test_probs_;
  std::optional<double> student_accuracy_;
};

ProgressState Run::Progress() const {
  ProgressState state;
  if (distilling_) state.stage = "distillation";
  state.round = current_round_ + 1;
  state.num_rounds = static_cast<int>(plan_.labels.size());
  state.step = trainer_ ? trainer_->step() : 0;
  state.total_steps =
      distilling_ ? distill_end_step_
      : plan_.end_step.empty() ? options_.total_steps
                               : plan_.end_step.back();
  state.steps_per_s = window_steps_per_s_;
  state.mask_rate = last_mask_rate_;
  state.loss = last_loss_;
  state.last_accuracy = last_accuracy_;
  state.labels_spent =
      journal_ ? static_cast<int64_t>(journal_->history().bought.size()) : 0;
  state.label_budget = options_.label_budget;
  return state;
}

absl::Status Run::Prepare() {
  ASSIGN_OR_RETURN(plan_, PlanRounds(options_));
  planned_ends_ = plan_.end_step;
  planned_end_step_ = plan_.end_step.back();
  if (options_.max_train_seconds > 0 && options_.fit_to_time) {
    TimeFitOptions fit;
    // The rounds' share of the time; distillation fits into the rest.
    fit.limit_seconds = options_.max_train_seconds *
                        static_cast<double>(options_.total_steps) /
                        static_cast<double>(options_.total_steps +
                                            std::max<int64_t>(
                                                0, options_.distill_steps));
    time_fit_.emplace(fit);
  }
  std::error_code error;
  std::filesystem::create_directories(options_.out_dir, error);
  if (error) {
    return absl::PermissionDeniedError(absl::StrCat(
        "cannot create --out_dir ", options_.out_dir, ": ", error.message()));
  }
  const std::string checkpoint = JoinPath(options_.out_dir, kCheckpointFile);
  const std::string journal_path = JoinPath(options_.out_dir, kJournalFile);
  RunIdentity identity;
  identity.experiment = options_.experiment;
  identity.label_budget = options_.label_budget;
  identity.schedule = plan_.labels;
  identity.pool_size = PoolSize(options_);
  ASSIGN_OR_RETURN(journal_, PurchaseJournal::Open(journal_path, identity));
  const PurchaseHistory& history = journal_->history();
  if (!options_.resume &&
      (!history.bought.empty() || history.pending_intent.has_value() ||
       std::filesystem::exists(checkpoint))) {
    return absl::FailedPreconditionError(absl::StrCat(
        options_.out_dir,
        " already holds a run (purchases.log or checkpoint.pt); pass --resume "
        "to continue it or choose another --out_dir"));
  }
  if (history.identity.has_value()) {
    absl::Status same_run = MatchRunIdentity(*history.identity, identity);
    if (!same_run.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat(journal_path, ": ", same_run.message(),
                       "; resume with that run's flags or choose another "
                       "--out_dir"));
    }
  } else if (!history.bought.empty() || history.pending_intent.has_value()) {
    Log(absl::StrCat(
        "warning: ", journal_path,
        " has no run header (an older trainer wrote it), so nothing checks "
        "that it belongs to this run's --experiment, --budget, --schedule "
        "and --train_limit"));
  }
  RETURN_IF_ERROR(CheckPendingIntent());

  // Everything that can be checked locally is checked before the oracle is
  // contacted (which may retry for minutes when it is unreachable).
  ASSIGN_OR_RETURN(strategy_, options_.make_strategy(
                                  options_.strategy, options_.strategy_options));
  const std::vector<std::string> objectives = ObjectiveNames();
  if (std::find(objectives.begin(), objectives.end(),
                options_.objective.name) == objectives.end()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown objective '", options_.objective.name, "'; use one of ",
        absl::StrJoin(objectives, ", ")));
  }
  if (options_.pretrain.method != "none") {
    const std::vector<std::string> methods = PretrainMethodNames();
    if (std::find(methods.begin(), methods.end(), options_.pretrain.method) ==
        methods.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown pretraining method '", options_.pretrain.method,
          "'; use none or one of ", absl::StrJoin(methods, ", ")));
    }
  }
  ASSIGN_OR_RETURN(device_, ChooseDevice(options_.device));
  ASSIGN_OR_RETURN(train_images_, LoadImages(JoinPath(options_.data_dir,
                                                      common::kTrainImagesFile),
                                             common::kTrainCount, device_));
  if (PoolSize(options_) < common::kTrainCount) {
    train_images_ =
        train_images_.narrow(0, 0, PoolSize(options_)).contiguous();
  }
  ASSIGN_OR_RETURN(test_images_, LoadImages(JoinPath(options_.data_dir,
                                                     common::kTestImagesFile),
                                            common::kTestCount, device_));
  // Fixed input shapes: let cuDNN pick its fastest algorithms.
  if (device_.is_cuda()) at::globalContext().setBenchmarkCuDNN(true);
  // A learner built now checks the model and objective options early.
  ASSIGN_OR_RETURN(trainer_, MakeLearner(0));

  ASSIGN_OR_RETURN(
      ExperimentInfo experiment,
      oracle_->CreateExperiment(options_.experiment, options_.label_budget,
                                options_.experiment_token));
  if (experiment.label_budget != options_.label_budget) {
    return absl::FailedPreconditionError(
        absl::StrCat("experiment ", experiment.name, " has a budget of ",
                     experiment.label_budget, ", not ", options_.label_budget));
  }
  Log(absl::StrCat(experiment.created ? "created" : "joined", " experiment ",
                   experiment.name, " (budget ", experiment.label_budget,
                   ") on device ", device_.str(), "; pool ",
                   train_images_.size(0), " images; objective ",
                   options_.objective.name, ", pretraining ",
                   options_.pretrain.method));

  ASSIGN_OR_RETURN(report_,
                   RunReportWriter::Create(options_.out_dir, options_.resume));
  if (options_.resume) RestoreRounds();

  RETURN_IF_ERROR(Pretrain());
  if (options_.resume && std::filesystem::exists(checkpoint)) {
    RETURN_IF_ERROR(trainer_->Load(checkpoint));
    RestoreRoundEnds();
    // A restored plan comes with the schedule the checkpoint saved.
    if (!plan_restored_) ScheduleRound(RoundOfStep(trainer_->step()));
    Log(absl::StrCat("resumed from ", checkpoint, " at step ", trainer_->step(),
                     " with ", history.bought.size(), " labels bought"));
  } else if (!initial_weights_.empty()) {
    RETURN_IF_ERROR(trainer_->InitializeFrom(initial_weights_));
  }
  return RebuildLabelledTensors();
}

absl::Status Run::Pretrain() {
  pretrain_summary_.method = options_.pretrain.method;
  if (options_.pretrain.method == "none") return absl::OkStatus();
  Log(absl::StrCat("pretraining (", options_.pretrain.method, ", ",
                   options_.pretrain.steps, " steps) on ",
                   train_images_.size(0), " unlabelled images"));
  const int64_t report_every =
      std::max<int64_t>(1, options_.pretrain.steps / 10);
  PretrainProgress progress = [&](const PretrainStepReport& update) {
    StepMetrics metrics;
    metrics.step = update.step;
    metrics.stage = "pretrain";
    metrics.loss = update.loss;
    metrics.lr = update.lr;
    metrics.steps_per_s = update.steps_per_s;
    report_->AppendMetrics(metrics).IgnoreError();
    if (update.step % report_every < options_.pretrain.log_every ||
        update.step == options_.pretrain.steps) {
      Log(absl::StrFormat("pretrain step %d/%d: loss %.4f, %.1f steps/s",
                          update.step, options_.pretrain.steps, update.loss,
                          update.steps_per_s));
    }
  };
  ASSIGN_OR_RETURN(PretrainResult result,
                   RunPretraining(options_.pretrain, options_.model,
                                  train_images_, device_, options_.seed,
                                  progress, stop_));
  Log(absl::StrCat(result.reused ? "reusing pretrained weights "
                                 : "pretrained weights saved to ",
                   result.checkpoint));
  initial_weights_ = result.checkpoint;
  pretrain_summary_.checkpoint = result.checkpoint;
  pretrain_summary_.reused = result.reused;
  pretrain_summary_.steps = result.steps;
  pretrain_summary_.wall_time_s = result.wall_time_s;
  for (const auto& [step, loss] : result.loss_curve) {
    pretrain_summary_.loss_curve.push_back({step, loss});
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Learner>> Run::MakeLearner(int round) {
  ModelOptions model_options = options_.model;
  model_options.init_seed = options_.seed;
  ASSIGN_OR_RETURN(Classifier probe, MakeModel(model_options));
  ObjectiveEnvironment environment;
  environment.device = device_;
  environment.embedding_dim = probe->embedding_dim();
  environment.pool_size = train_images_.size(0);
  environment.seed = options_.seed;
  ASSIGN_OR_RETURN(std::unique_ptr<TrainingObjective> objective,
                   MakeObjective(options_.objective, environment));
  if (!objective->uses_labels()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "objective ", objective->name(),
        " uses no labels; use it with --pretrain, and fixmatch, flexmatch, "
        "freematch or softmatch for the rounds"));
  }
  LearnerOptions learner_options = options_.learner;
  learner_options.total_steps = options_.total_steps;
  // Each restarted round draws its own batches and augmentations.
  learner_options.seed = options_.seed + static_cast<uint64_t>(round);
  if (!device_.is_cuda()) learner_options.cuda_graph = false;
  ASSIGN_OR_RETURN(std::unique_ptr<Learner> learner,
                   Learner::Create(model_options, learner_options,
                                   std::move(objective), device_));
  return learner;
}

absl::Status Run::RestartLearner(int round, int64_t step) {
  trainer_.reset();
  ASSIGN_OR_RETURN(trainer_, MakeLearner(round));
  if (!initial_weights_.empty()) {
    RETURN_IF_ERROR(trainer_->InitializeFrom(initial_weights_));
  }
  trainer_->set_step(step);
  recalibrated_step_ = -1;
  return InitialiseHead();
}

absl::Status Run::InitialiseHead() {
  if (!options_.prototype_head || !labelled_images_.defined()) {
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(Predictions predictions, PredictEma(labelled_images_));
  ASSIGN_OR_RETURN(PrototypeHead head,
                   FitPrototypeHead(predictions.embeddings, labelled_targets_,
                                    options_.model.num_classes));
  RETURN_IF_ERROR(trainer_->SetClassifierLayer(head.weight, head.bias));
  Log(absl::StrFormat(
      "classifier layer set to the prototypes of %d labels (%d of %d "
      "classes; temperature %.4g fitted on %d of them)",
      labelled_targets_.size(0), head.classes_present,
      options_.model.num_classes, head.temperature, head.samples_scored));
  return absl::OkStatus();
}

int Run::RoundOfStep(int64_t step) const {
  for (size_t r = 0; r < plan_.end_step.size(); ++r) {
    if (step < plan_.end_step[r]) return static_cast<int>(r);
  }
  return static_cast<int>(plan_.end_step.size()) - 1;
}

void Run::ScheduleRound(int round) {
  if (!options_.restart_rounds) return;
  const int64_t start = round == 0 ? 0 : plan_.end_step[round - 1];
  trainer_->SetSchedule(start, plan_.end_step[round] - start);
}

// Reads back the rounds a resumed run already recorded in rounds.csv, so the
// final report shows the whole run.
void Run::RestoreRounds() {
  for (const RoundRecord& record :
       RunReportWriter::ReadRounds(options_.out_dir)) {
    rounds_.push_back(record);
    label_curve_.push_back({record.labels_spent, record.test_accuracy});
    step_curve_.push_back({record.steps, record.test_accuracy});
  }
}

absl::Status Run::RebuildLabelledTensors() {
  const std::vector<LabelledSample>& bought = journal_->history().bought;
  if (bought.empty()) return absl::OkStatus();
  std::vector<int64_t> ids, labels;
  for (const LabelledSample& sample : bought) {
    if (sample.id < 0 || sample.id >= train_images_.size(0)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "bought id ", sample.id, " is outside the pool of ",
          train_images_.size(0), " images (was --train_limit changed?)"));
    }
    ids.push_back(sample.id);
    labels.push_back(sample.label);
  }
  torch::Tensor index = torch::tensor(ids, torch::kLong).to(device_);
  labelled_images_ = train_images_.index_select(0, index);
  labelled_targets_ = torch::tensor(labels, torch::kLong).to(device_);
  return absl::OkStatus();
}

absl::Status Run::CheckSelection(int64_t count,
                                 const std::vector<int64_t>& ids) const {
  SelectorQuery query;
  query.count = count;
  query.pool_ids.resize(PoolSize(options_));
  std::iota(query.pool_ids.begin(), query.pool_ids.end(), 0);
  for (const LabelledSample& sample : journal_->history().bought) {
    query.labelled_ids.push_back(sample.id);
  }
  return ValidateSelection(query, ids);
}

absl::Status Run::CheckPendingIntent() const {
  const PurchaseHistory& history = journal_->history();
  if (!history.pending_intent.has_value()) return absl::OkStatus();
  const auto& [round, ids] = *history.pending_intent;
  const int num_rounds = static_cast<int>(plan_.labels.size());
  absl::Status fits;
  if (round < 0 || round >= num_rounds) {
    fits = absl::FailedPreconditionError(absl::StrCat(
        "it is for round ", round, ", but this run has ", num_rounds,
        " rounds"));
  } else if (history.RoundBought(round)) {
    fits = absl::FailedPreconditionError(
        absl::StrCat("round ", round, " is bought already"));
  } else {
    fits = CheckSelection(plan_.labels[round], ids);
  }
  if (fits.ok()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "the unfinished purchase of round ", round, " in ",
      JoinPath(options_.out_dir, kJournalFile),
      " does not match this run's flags (", fits.message(),
      "); nothing was bought: resume with the --budget, --schedule and "
      "--train_limit of the run that wrote it, or choose another --out_dir"));
}

absl::Status Run::Buy(int round, const std::vector<int64_t>& ids) {
  RETURN_IF_ERROR(journal_->RecordIntent(round, ids));
  // Ids the oracle revealed before are free, so a replay after a partial
  // purchase pays only for the rest.
  std::vector<int32_t> labels;
  labels.reserve(ids.size());
  int64_t newly_revealed = 0;
  int64_t remaining = 0;
  const size_t per_query = static_cast<size_t>(options_.ids_per_query);
  for (size_t start = 0; start < ids.size(); start += per_query) {
    const std::vector<int64_t> chunk(
        ids.begin() + start,
        ids.begin() + std::min(ids.size(), start + per_query));
    ASSIGN_OR_RETURN(
        LabelBatch batch,
        oracle_->QueryLabels(options_.experiment, chunk, options_.client_name,
                             strategy_->name(), round));
    if (batch.labels.size() != chunk.size()) {
      return absl::InternalError(absl::StrCat(
          "oracle returned ", batch.labels.size(), " labels for ",
          chunk.size(), " ids"));
    }
    labels.insert(labels.end(), batch.labels.begin(), batch.labels.end());
    newly_revealed += batch.newly_revealed;
    remaining = batch.remaining;
  }
  RETURN_IF_ERROR(journal_->RecordPurchase(round, ids, labels));
  Log(absl::StrCat("round ", round, ": bought ", ids.size(), " labels (",
                   newly_revealed, " new), ", remaining,
                   " left of the budget"));
  return RebuildLabelledTensors();
}

absl::Status Run::SelectAndBuy(int round, int64_t count) {
  PoolState pool;
  pool.pool_ids.resize(train_images_.size(0));
  std::iota(pool.pool_ids.begin(), pool.pool_ids.end(), 0);
  for (const LabelledSample& sample : journal_->history().bought) {
    pool.labelled_ids.push_back(sample.id);
    pool.labelled_labels.push_back(sample.label);
  }
  pool.round = round;
  pool.seed = options_.seed;
  if (options_.select_on_initial_embedding) {
    ASSIGN_OR_RETURN(pool.embeddings, InitialEmbedding());
    if (trainer_->step() > 0) {
      ASSIGN_OR_RETURN(Predictions predictions, PredictEma(train_images_));
      pool.probabilities = predictions.probs;
    }
  } else if (trainer_->step() == 0 && initial_weights_.empty()) {
    ASSIGN_OR_RETURN(
        pool.embeddings,
        LabelFreeFeatures(train_images_, options_.label_free_dims));
  } else {
    ASSIGN_OR_RETURN(Predictions predictions, PredictEma(train_images_));
    pool.embeddings = predictions.embeddings;
    // An untrained classifier layer's probabilities mean nothing.
    if (trainer_->step() > 0) pool.probabilities = predictions.probs;
  }
  const absl::Time begin = absl::Now();
  ASSIGN_OR_RETURN(std::vector<int64_t> ids, strategy_->Select(pool, count));
  absl::Status valid = CheckSelection(count, ids);
  if (!valid.ok()) {
    return absl::InternalError(absl::StrCat(
        "strategy ", strategy_->name(), " chose an invalid selection for round ",
        round, " (", valid.message(), "); nothing was journaled or bought"));
  }
  std::string note = strategy_->last_note();
  Log(absl::StrCat("round ", round, ": ", strategy_->name(), " chose ",
                   ids.size(), " ids in ",
                   absl::FormatDuration(absl::Now() - begin),
                   note.empty() ? "" : " (" + note + ")"));
  return Buy(round, ids);
}

torch::Tensor Run::BatchNormImages() const {
  const int64_t n = train_images_.size(0);
  const int64_t stride = std::max<int64_t>(1, n / 10000);
  return train_images_.slice(0, 0, n, stride);
}

absl::StatusOr<torch::Tensor> Run::InitialEmbedding() {
  if (initial_embedding_.defined()) return initial_embedding_;
  if (initial_weights_.empty()) {
    ASSIGN_OR_RETURN(initial_embedding_,
                     LabelFreeFeatures(train_images_, options_.label_free_dims));
    return initial_embedding_;
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Learner> fresh, MakeLearner(/*round=*/0));
  RETURN_IF_ERROR(fresh->InitializeFrom(initial_weights_));
  if (options_.recalibrate_bn) {
    RETURN_IF_ERROR(
        fresh->RecalibrateBatchNorm(BatchNormImages(), /*use_ema=*/true));
  }
  ASSIGN_OR_RETURN(Predictions predictions,
                   fresh->Predict(train_images_, /*use_ema=*/true));
  initial_embedding_ = predictions.embeddings;
  return initial_embedding_;
}

absl::StatusOr<Predictions> Run::PredictEma(const torch::Tensor& images) {
  if (options_.recalibrate_bn && trainer_->step() != recalibrated_step_) {
    RETURN_IF_ERROR(
        trainer_->RecalibrateBatchNorm(BatchNormImages(), /*use_ema=*/true));
    recalibrated_step_ = trainer_->step();
  }
  return trainer_->Predict(images, /*use_ema=*/true);
}

absl::Status Run::MeasureFeatureQuality(const std::string& stage) {
  const std::vector<LabelledSample>& bought = journal_->history().bought;
  if (!options_.feature_quality || bought.empty()) return absl::OkStatus();
  std::vector<int64_t> ids, labels;
  for (const LabelledSample& sample : bought) {
    ids.push_back(sample.id);
    labels.push_back(sample.label);
  }
  torch::Tensor index = torch::tensor(ids, torch::kLong).to(device_);
  torch::Tensor targets = torch::tensor(labels, torch::kLong).to(device_);
  const int64_t pool = train_images_.size(0);
  if (!pca_features_.defined()) {
    // Fit on pool and test pixels together (no labels involved).
    ASSIGN_OR_RETURN(pca_features_,
                     LabelFreeFeatures(at::cat({train_images_, test_images_}),
                                       options_.label_free_dims));
  }
  KnnOptions knn;
  knn.k = options_.knn_k;
  knn.num_classes = options_.model.num_classes;
  FeatureQualityRecord record;
  record.stage = stage;
  record.labels = static_cast<int64_t>(ids.size());
  auto score = [&](const torch::Tensor& reference,
                   const torch::Tensor& query,
                   const std::string& what) -> absl::StatusOr<double> {
    ASSIGN_OR_RETURN(torch::Tensor classes,
                     KnnClassify(reference, targets, query, knn));
    torch::Tensor cpu = classes.to(torch::kCPU, torch::kInt).contiguous();
    std::vector<int32_t> predicted(cpu.data_ptr<int32_t>(),
                                   cpu.data_ptr<int32_t>() + cpu.numel());
    ASSIGN_OR_RETURN(
        Evaluation evaluation,
        oracle_->Evaluate(options_.experiment, predicted, options_.client_name,
                          absl::StrCat("feature quality ", stage, " ", what)));
    return evaluation.accuracy;
  };
  ASSIGN_OR_RETURN(Predictions pool_out, PredictEma(train_images_));
  ASSIGN_OR_RETURN(Predictions test_out, PredictEma(test_images_));
  ASSIGN_OR_RETURN(record.embedding_accuracy,
                   score(pool_out.embeddings.index_select(0, index),
                         test_out.embeddings, "knn-embedding"));
  ASSIGN_OR_RETURN(record.pca_accuracy,
                   score(pca_features_.narrow(0, 0, pool).index_select(0, index),
                         pca_features_.narrow(0, pool, test_images_.size(0)),
                         "knn-pca"));
  Log(absl::StrFormat(
      "feature quality (%s, %d labels): kNN on the embedding %.2f %%, on PCA "
      "pixels %.2f %%",
      stage, record.labels, 100.0 * record.embedding_accuracy,
      100.0 * record.pca_accuracy));
  feature_quality_.erase(
      std::remove_if(feature_quality_.begin(), feature_quality_.end(),
                     [&](const FeatureQualityRecord& r) {
                       return r.stage == stage;
                     }),
      feature_quality_.end());
  feature_quality_.push_back(record);
  return absl::OkStatus();
}

absl::StatusOr<torch::Tensor> Run::ScoredProbabilities(
    const torch::Tensor& images) {
  ASSIGN_OR_RETURN(Predictions predictions, PredictEma(images));
  torch::Tensor probs = predictions.probs;
  if (options_.eval_flip) {
    ASSIGN_OR_RETURN(Predictions mirrored,
                     PredictEma(images.flip({3}).contiguous()));
    probs = (probs + mirrored.probs) / 2;
  }
  return probs;
}

absl::StatusOr<Evaluation> Run::Evaluate(const std::string& note) {
  ASSIGN_OR_RETURN(torch::Tensor probs, ScoredProbabilities(test_images_));
  ASSIGN_OR_RETURN(Evaluation evaluation, ScoreTest(probs, note));
  step_curve_.push_back({trainer_->step(), evaluation.accuracy});
  return evaluation;
}

absl::StatusOr<Evaluation> Run::ScoreTest(const torch::Tensor& probs,
                                          const std::string& note) {
  torch::Tensor classes =
      probs.argmax(1).to(torch::kCPU, torch::kInt).contiguous();
  std::vector<int32_t> predicted(classes.data_ptr<int32_t>(),
                                 classes.data_ptr<int32_t>() + classes.numel());
  ASSIGN_OR_RETURN(Evaluation evaluation,
                   oracle_->Evaluate(options_.experiment, predicted,
                                     options_.client_name, note));
  last_accuracy_ = evaluation.accuracy;
  return evaluation;
}

absl::Status Run::Checkpoint() {
  const std::string path = JoinPath(
      options_.out_dir,
      distilling_ ? kStudentCheckpointFile : kCheckpointFile);
  const std::string temp = path + ".tmp";
  RETURN_IF_ERROR(trainer_->Save(temp));
  std::error_code error;
  std::filesystem::rename(temp, path, error);
  if (error) {
    return absl::DataLossError(absl::StrCat("cannot rename ", temp, " to ",
                                            path, ": ", error.message()));
  }
  if (distilling_) return absl::OkStatus();
  return common::WriteFileAtomically(
      JoinPath(options_.out_dir, kRoundEndsFile),
      absl::StrCat("step ", trainer_->step(), "\nplanned ",
                   absl::StrJoin(planned_ends_, ","), "\nends ",
                   absl::StrJoin(plan_.end_step, ","), "\n"));
}

void Run::RestoreRoundEnds() {
  const std::string path = JoinPath(options_.out_dir, kRoundEndsFile);
  std::ifstream in(path);
  if (!in) return;
  std::stringstream text;
  text << in.rdbuf();
  std::optional<std::vector<int64_t>> step, planned, ends;
  for (absl::string_view line : absl::StrSplit(text.str(), '\n')) {
    const std::pair<absl::string_view, absl::string_view> field =
        absl::StrSplit(line, absl::MaxSplits(' ', 1));
    if (field.first == "step") step = ParseSteps(field.second);
    if (field.first == "planned") planned = ParseSteps(field.second);
    if (field.first == "ends") ends = ParseSteps(field.second);
  }
  bool valid = step == std::vector<int64_t>{trainer_->step()} &&
               planned == planned_ends_ && ends.has_value() &&
               ends->size() == planned_ends_.size() && ends->front() > 0;
  for (size_t r = 1; valid && r < ends->size(); ++r) {
    valid = (*ends)[r] > (*ends)[r - 1];
  }
  if (!valid) {
    Log(absl::StrCat("warning: ignoring ", path,
                     " (written with another checkpoint, --total_steps or "
                     "--round_steps); the rounds end at the planned steps ",
                     absl::StrJoin(plan_.end_step, ",")));
    return;
  }
  plan_.end_step = *std::move(ends);
  plan_restored_ = true;
  if (plan_.end_step != planned_ends_) {
    Log(absl::StrCat("round ends ", absl::StrJoin(plan_.end_step, ","),
                     " (planned ", absl::StrJoin(planned_ends_, ","),
                     ") restored from ", path));
  }
}

void Run::FitToTime(int round) {
  const double elapsed = absl::ToDoubleSeconds(options_.clock() - start_);
  const int64_t step = trainer_->step();
  time_fit_->Observe(elapsed, step);
  const int rounds_after = static_cast<int>(plan_.end_step.size()) - 1 - round;
  std::optional<std::vector<int64_t>> ends =
      time_fit_->Refit(plan_.end_step, planned_end_step_, step, elapsed,
                       rounds_after * round_gap_s_);
  if (!ends.has_value()) return;
  const std::optional<double> rate = time_fit_->Rate();
  Log(absl::StrFormat(
      "fitting to --max_train_seconds=%g %s: %d steps in all (was %d, "
      "planned %d); round ends %s",
      options_.max_train_seconds,
      rate.has_value() ? absl::StrFormat("at %.1f steps/s", *rate)
                       : std::string("with no time left"),
      ends->back(), plan_.end_step.back(), planned_end_step_,
      absl::StrJoin(*ends, ",")));
  plan_.end_step = *std::move(ends);
  trainer_->FitScheduleEnd(options_.restart_rounds ? plan_.end_step[round]
                                                   : plan_.end_step.back());
}

absl::Status Run::TrainUntil(int round) {
  if (trainer_->step() >= EndStep(round)) return absl::OkStatus();
  if (!labelled_images_.defined()) {
    return absl::FailedPreconditionError("no labels bought before training");
  }
  if (time_fit_.has_value()) time_fit_->Restart();
  auto window_start = std::chrono::steady_clock::now();
  int64_t window_first_step = trainer_->step();
  double window_excluded_s = 0;
  while (trainer_->step() < EndStep(round)) {
    if ((!time_fit_.has_value() || distilling_) &&
        options_.max_train_seconds > 0 &&
        absl::ToDoubleSeconds(options_.clock() - start_) >
            options_.max_train_seconds) {
      if (!time_limit_logged_) {
        Log(absl::StrCat("time limit of ", options_.max_train_seconds,
                         " s reached at step ", trainer_->step(),
                         "; no further training"));
        time_limit_logged_ = true;
      }
      break;
    }
    if (StopRequested()) {
      RETURN_IF_ERROR(Checkpoint());
      progress_.Finish(Progress());
      return absl::CancelledError(absl::StrCat(
          "stopped at step ", trainer_->step(), "; checkpoint saved in ",
          options_.out_dir, " (continue with --resume)"));
    }
    StepData data;
    data.labelled_images = labelled_images_;
    data.labelled_targets = labelled_targets_;
    data.unlabelled_images = train_images_;
    data.teacher_probs = teacher_probs_;
    ASSIGN_OR_RETURN(LearnerStepStats stats, trainer_->Step(data));
    const int64_t step = trainer_->step();
    const int64_t end_step = EndStep(round);
    const bool log_now = step % options_.log_every == 0 || step == end_step;
    const bool eval_now = options_.eval_every > 0 &&
                          step % options_.eval_every == 0 && step != end_step;
    if (log_now || eval_now) {
      StepMetrics metrics;
      metrics.step = step;
      if (distilling_) metrics.stage = "distill";
      metrics.loss = stats.loss.item<double>();  // synchronises
      const std::vector<std::string> names =
          trainer_->objective().metric_names();
      for (size_t i = 0; i < names.size() && i < stats.scalars.size(); ++i) {
        const double value = stats.scalars[i].item<double>();
        metrics.scalars.emplace_back(names[i], value);
        if (names[i] == "mask_rate") last_mask_rate_ = value;
      }
      metrics.lr = stats.lr;
      const auto now = std::chrono::steady_clock::now();
      const double elapsed =
          std::chrono::duration<double>(now - window_start).count() -
          window_excluded_s;
      const int64_t steps = step - window_first_step;
      if (elapsed > 0 && steps > 0) {
        window_steps_per_s_ = steps / elapsed;
        train_seconds_ += elapsed;
        trained_steps_ += steps;
      }
      metrics.steps_per_s = window_steps_per_s_;
      last_loss_ = metrics.loss;
      if (eval_now) {
        ASSIGN_OR_RETURN(
            Evaluation evaluation,
            Evaluate(distilling_
                         ? absl::StrCat("distillation step ", step)
                         : absl::StrCat("round ", round, " step ", step)));
        metrics.test_accuracy = evaluation.accuracy;
      }
      RETURN_IF_ERROR(report_->AppendMetrics(metrics));
      progress_.Update(Progress());
      if (options_.checkpoint_every > 0 &&
          step % options_.checkpoint_every == 0) {
        RETURN_IF_ERROR(Checkpoint());
      }
      if (time_fit_.has_value() && !distilling_) FitToTime(round);
      window_start = std::chrono::steady_clock::now();
      window_first_step = step;
      window_excluded_s = 0;
    } else if (options_.checkpoint_every > 0 &&
               step % options_.checkpoint_every == 0) {
      auto begin = std::chrono::steady_clock::now();
      RETURN_IF_ERROR(Checkpoint());
      window_excluded_s += std::chrono::duration<double>(
                               std::chrono::steady_clock::now() - begin)
                               .count();
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<RunSummary> Run::Go() {
  RETURN_IF_ERROR(Prepare());
  const PurchaseHistory& history = journal_->history();
  if (history.pending_intent.has_value()) {
    // Stopped between intent and purchase: buy exactly those ids again
    // (free for any the oracle already revealed).
    const auto intent = *history.pending_intent;
    Log(absl::StrCat("replaying the unfinished purchase of round ",
                     intent.first, " (", intent.second.size(), " ids)"));
    RETURN_IF_ERROR(Buy(intent.first, intent.second));
  }
  std::optional<Evaluation> evaluation;
  const int num_rounds = static_cast<int>(plan_.labels.size());
  absl::Time gap_start = options_.clock();
  for (int round = 0; round < num_rounds; ++round) {
    current_round_ = round;
    if (!journal_->history().RoundBought(round)) {
      RETURN_IF_ERROR(SelectAndBuy(round, plan_.labels[round]));
    }
    if (round == 0 && trainer_->step() == 0) {
      if (!initial_weights_.empty()) {
        RETURN_IF_ERROR(MeasureFeatureQuality("pretrained"));
      }
      RETURN_IF_ERROR(InitialiseHead());
    }
    const int64_t round_start = round == 0 ? 0 : plan_.end_step[round - 1];
    if (options_.restart_rounds && round > 0 &&
        trainer_->step() == round_start) {
      // A fresh model from the initial weights, the run's step count kept.
      RETURN_IF_ERROR(RestartLearner(round, round_start));
      ScheduleRound(round);
      Log(absl::StrCat("round ", round, ": restarting from ",
                       InitialWeightsName(), " for ",
                       plan_.end_step[round] - round_start, " steps"));
    } else if (!plan_restored_ || trainer_->step() == round_start) {
      // (A round resumed part way keeps the schedule its checkpoint saved.)
      ScheduleRound(round);
    }
    const bool trained_before = trainer_->step() >= plan_.end_step[round];
    round_gap_s_ =
        std::max(round_gap_s_, absl::ToDoubleSeconds(options_.clock() - gap_start));
    RETURN_IF_ERROR(TrainUntil(round));
    gap_start = options_.clock();
    if (trained_before && round + 1 < num_rounds &&
        journal_->history().RoundBought(round + 1)) {
      continue;  // resumed past this round: nothing new to record
    }
    RETURN_IF_ERROR(Checkpoint());
    ASSIGN_OR_RETURN(evaluation,
                     Evaluate(absl::StrCat("end of round ", round)));
    const int64_t spent =
        static_cast<int64_t>(journal_->history().bought.size());
    RoundRecord record;
    record.round = round;
    record.labels_spent = spent;
    record.test_accuracy = evaluation->accuracy;
    record.steps = trainer_->step();
    record.strategy = strategy_->name();
    RETURN_IF_ERROR(report_->AppendRound(record));
    // A round recorded before a resume is replaced by its new record.
    rounds_.erase(std::remove_if(rounds_.begin(), rounds_.end(),
                                 [&](const RoundRecord& r) {
                                   return r.round == round;
                                 }),
                  rounds_.end());
    label_curve_.erase(
        std::remove_if(label_curve_.begin(), label_curve_.end(),
                       [&](const LabelCurvePoint& p) {
                         return p.labels_spent == spent;
                       }),
        label_curve_.end());
    rounds_.push_back(record);
    label_curve_.push_back({spent, evaluation->accuracy});
    progress_.Finish(Progress());
    Log(absl::StrFormat(
        "round %d done: %d labels, step %d, test accuracy %.2f %%", round,
        spent, trainer_->step(), 100.0 * evaluation->accuracy));
    RETURN_IF_ERROR(MeasureFeatureQuality(absl::StrCat("round ", round)));
  }
  if (!evaluation.has_value()) {
    ASSIGN_OR_RETURN(evaluation, Evaluate("final"));
  }
  if (options_.distill_steps > 0) {
    ASSIGN_OR_RETURN(evaluation, Distill(*evaluation));
  }
  return Finish(*evaluation);
}

absl::StatusOr<Evaluation> Run::Distill(const Evaluation& teacher) {
  teacher_accuracy_ = teacher.accuracy;
  ASSIGN_OR_RETURN(torch::Tensor probs, ScoredProbabilities(train_images_));
  if (options_.distill_ensemble) {
    ASSIGN_OR_RETURN(teacher_test_probs_, ScoredProbabilities(test_images_));
  }
  const int64_t start = trainer_->step();
  int64_t steps = options_.distill_steps;
  if (time_fit_.has_value()) {
    // Fit the stage to the time left at the rounds' recent rate, or, before
    // the fit has measured one, at their steps over the whole run so far
    // (which undercounts the rate: pretraining, selection and evaluation
    // took part of that time). The limit still cuts the stage off.
    const double elapsed = absl::ToDoubleSeconds(options_.clock() - start_);
    const double left = options_.max_train_seconds - elapsed;
    std::optional<double> rate = time_fit_->Rate();
    if (!rate.has_value() && elapsed > 0) rate = start / elapsed;
    if (rate.has_value()) {
      steps = std::clamp<int64_t>(
          static_cast<int64_t>(
              std::floor(time_fit_->options().safety * left * *rate)),
          1, steps);
    }
  }
  const int num_rounds = static_cast<int>(plan_.labels.size());
  RETURN_IF_ERROR(RestartLearner(num_rounds, start));
  const std::string student = JoinPath(options_.out_dir, kStudentCheckpointFile);
  if (options_.resume && std::filesystem::exists(student)) {
    RETURN_IF_ERROR(trainer_->Load(student));
    Log(absl::StrCat("resumed distillation from ", student, " at step ",
                     trainer_->step()));
  }
  trainer_->SetSchedule(start, steps);
  teacher_probs_ = probs;
  distilling_ = true;
  distill_start_step_ = start;
  distill_end_step_ = start + steps;
  Log(absl::StrFormat(
      "distilling: a fresh model from %s trains %d steps on pseudo-labels "
      "blended with the final model's (test accuracy %.2f %%)",
      InitialWeightsName(), steps, 100.0 * teacher.accuracy));
  RETURN_IF_ERROR(TrainUntil(num_rounds - 1));
  RETURN_IF_ERROR(Checkpoint());
  ASSIGN_OR_RETURN(torch::Tensor student_probs,
                   ScoredProbabilities(test_images_));
  ASSIGN_OR_RETURN(Evaluation evaluation,
                   ScoreTest(student_probs, "after distillation"));
  progress_.Finish(Progress());
  Log(absl::StrFormat(
      "distillation done: step %d, test accuracy %.2f %% (teacher %.2f %%)",
      trainer_->step(), 100.0 * evaluation.accuracy,
      100.0 * teacher.accuracy));
  if (options_.distill_ensemble) {
    student_accuracy_ = evaluation.accuracy;
    ASSIGN_OR_RETURN(evaluation,
                     ScoreTest((student_probs + teacher_test_probs_) / 2,
                               "teacher and student averaged"));
    Log(absl::StrFormat("teacher and student averaged: test accuracy %.2f %%",
                        100.0 * evaluation.accuracy));
  }
  // The curve ends at what the run reports.
  step_curve_.push_back({trainer_->step(), evaluation.accuracy});
  return evaluation;
}

absl::StatusOr<RunSummary> Run::Finish(const Evaluation& evaluation) {
  ASSIGN_OR_RETURN(BudgetInfo budget, oracle_->GetBudget(options_.experiment));
  FinalReport report;
  report.experiment = options_.experiment;
  report.strategy = strategy_->name();
  report.labels_spent = budget.spent;
  report.label_budget = budget.label_budget;
  report.accuracy = evaluation.accuracy;
  report.per_class_accuracy = evaluation.per_class_accuracy;
  const int classes = evaluation.num_classes;
  if (!evaluation.confusion.empty()) {  // empty: withheld by the oracle
    report.confusion.assign(classes, std::vector<int64_t>(classes, 0));
    for (int t = 0; t < classes; ++t) {
      for (int p = 0; p < classes; ++p) {
        report.confusion[t][p] = evaluation.confusion[t * classes + p];
      }
    }
  }
  report.wall_time_s = absl::ToDoubleSeconds(options_.clock() - start_);
  report.steps = trainer_->step();
  report.planned_steps = planned_end_step_;
  report.steps_per_s =
      train_seconds_ > 0 ? trained_steps_ / train_seconds_ : 0.0;
  report.device = device_.str();
  const ModelOptions& model = trainer_->model_options();
  const LearnerOptions& learner = trainer_->options();
  const SemiSupervisedOptions* semi_supervised =
      SemiSupervisedBatch(options_.objective);
  const SemiSupervisedOptions& batch =
      semi_supervised != nullptr ? *semi_supervised
                                 : options_.objective.fixmatch.batch;
  report.objective = options_.objective.name;
  report.initial_weights = initial_weights_.empty()
                               ? "random initialisation"
                               : initial_weights_;
  report.pretrain = pretrain_summary_;
  report.feature_quality = feature_quality_;
  std::string distillation = "no";
  if (teacher_accuracy_.has_value()) {
    distillation = absl::StrFormat(
        "%d steps, teacher weight %g, teacher %.2f %%",
        trainer_->step() - distill_start_step_, batch.teacher_weight,
        100.0 * *teacher_accuracy_);
  }
  if (student_accuracy_.has_value()) {
    absl::StrAppendFormat(
        &distillation,
        ", student alone %.2f %%; reported: teacher and student averaged",
        100.0 * *student_accuracy_);
  }
  report.config = {
      {"strategy", strategy_->name()},
      {"selection embedding", options_.select_on_initial_embedding
                                  ? "the initial one, every round"
                                  : "the current model's"},
      {"objective", options_.objective.name},
      {"pretraining",
       PretrainingDescription(options_.pretrain)},
      {"schedule", absl::StrJoin(plan_.labels, ",")},
      {"round end steps", absl::StrJoin(plan_.end_step, ",")},
      {"time fit",
       !time_fit_.has_value()
           ? std::string("no")
           : absl::StrCat("to ", options_.max_train_seconds, " s, ",
                          plan_.end_step.back(), " of ", planned_end_step_,
                          " planned steps")},
      {"round restarts", options_.restart_rounds ? "yes" : "no"},
      {"classifier layer start", options_.prototype_head
                                     ? "prototypes of the labels bought"
                                     : "untrained"},
      {"distillation", distillation},
      {"model", absl::StrCat(model.arch, " width ", model.width, ", ",
                             model.init, " init")},
      {"weak shift fill",
       batch.weak.fill == WeakFill::kZeros ? "zeros" : "reflect"},
      {"batch / mu", absl::StrCat(batch.batch_size, " / ", batch.mu)},
      {"strong augmentation",
       absl::StrCat(batch.strong.num_ops, " RandAugment ops of ",
                    StrongOpListText(batch.strong.ops), ", cutout ",
                    batch.strong.cutout_max_fraction == 0.0
                        ? std::string("off")
                        : absl::StrCat("up to ",
                                       batch.strong.cutout_max_fraction,
                                       " of the side"),
                    ", enhance factors ", batch.strong.min_enhance, "-",
                    batch.strong.max_enhance)},
      {"threshold", ThresholdDescription(options_.objective)},
      {"lr / wd", absl::StrCat(learner.lr, " / ", learner.weight_decay)},
      {"ema decay", absl::StrCat(learner.ema_decay)},
      {"weak view forward", WeakViewForwardName(batch.weak_forward)},
      {"distribution alignment",
       batch.distribution_alignment
           ? absl::StrCat("yes, momentum ", batch.alignment_momentum)
           : "no"},
      {"graph contrast",
       batch.contrast.weight == 0.0
           ? std::string("no")
           : absl::StrCat("weight ", batch.contrast.weight, ", temperature ",
                          batch.contrast.temperature, ", graph threshold ",
                          batch.contrast.graph_threshold,
                          batch.contrast.memory_size == 0
                              ? std::string()
                              : absl::StrCat(", memory ",
                                             batch.contrast.memory_size,
                                             ", smoothing alpha ",
                                             batch.contrast.smoothing_alpha),
                          batch.contrast.two_strong_views
                              ? ", views: two strong"
                              : ", views: strong and weak")},
      {"pseudo head (DST)", batch.pseudo_head ? "yes" : "no"},
      {"pseudo-label targets",
       batch.soft_targets ? "soft (the distribution)" : "hard (argmax)"},
      {"labelled views",
       batch.strong_labelled ? "weak and strong (AdaMatch)" : "weak"},
      {"pseudo-label views",
       batch.pseudo_label_views == 1
           ? std::string("1")
           : absl::StrCat(batch.pseudo_label_views, " weak views averaged")},
      {"labelled mixup",
       batch.mixup_alpha > 0.0
           ? absl::StrCat("Beta(", batch.mixup_alpha, ") mixed views added")
           : std::string("no")},
      {"unlabelled mixup", batch.mixup_unlabelled ? "yes" : "no"},
      {"bn re-estimation", options_.recalibrate_bn ? "yes" : "no"},
      {"test-time flip", options_.eval_flip ? "yes" : "no"},
      {"pool", absl::StrCat(train_images_.size(0), " images")},
      {"cpu threads", absl::StrCat(at::get_num_threads())},
      {"seed", absl::StrCat(options_.seed)},
      {"out_dir", options_.out_dir},
  };
  report.rounds = rounds_;
  report.label_curve = label_curve_;
  report.step_curve = step_curve_;
  const std::vector<LabelledSample>& bought = journal_->history().bought;
  if (!bought.empty()) {
    std::vector<int64_t> ids;
    for (const LabelledSample& sample : bought) ids.push_back(sample.id);
    torch::Tensor pixels =
        (train_images_.index_select(0, torch::tensor(ids).to(device_)) * 255)
            .round()
            .to(torch::kCPU, torch::kByte)
            .contiguous();
    const uint8_t* data = pixels.data_ptr<uint8_t>();
    const int64_t per_image = kImageSide * kImageSide;
    for (size_t i = 0; i < bought.size(); ++i) {
      QueriedSample sample;
      sample.id = bought[i].id;
      sample.label = bought[i].label;
      sample.round = bought[i].round;
      sample.pixels.assign(data + i * per_image, data + (i + 1) * per_image);
      report.queried.push_back(std::move(sample));
    }
  }
  RETURN_IF_ERROR(report_->WriteReport(report));
  RunSummary summary;
  summary.accuracy = evaluation.accuracy;
  summary.labels_spent = budget.spent;
  summary.label_budget = budget.label_budget;
  summary.steps = trainer_->step();
  summary.steps_per_s = report.steps_per_s;
  summary.wall_time_s = report.wall_time_s;
  summary.device = report.device;
  summary.report_path =
      JoinPath(options_.out_dir, RunReportWriter::kReportHtmlFile);
  return summary;
}

}  // namespace

absl::StatusOr<std::string> ResolveDevice(const std::string& spec) {
  try {
    ASSIGN_OR_RETURN(torch::Device device, ChooseDevice(spec));
    return device.str();
  } catch (const c10::Error& e) {
    return absl::InternalError(e.what_without_backtrace());
  }
}

absl::StatusOr<RoundPlan> PlanRounds(const TrainerOptions& options) {
  if (options.label_budget <= 0) {
    return absl::InvalidArgumentError("label budget must be positive");
  }
  if (options.total_steps <= 0) {
    return absl::InvalidArgumentError("total_steps must be positive");
  }
  if (options.distill_steps < 0) {
    return absl::InvalidArgumentError("distill_steps must not be negative");
  }
  if (options.distill_ensemble && options.distill_steps == 0) {
    return absl::InvalidArgumentError(
        "distill_ensemble needs a distillation stage (distill_steps > 0)");
  }
  RoundPlan plan;
  plan.labels = options.schedule;
  if (plan.labels.empty()) {
    const int64_t first = options.label_budget * 4 / 10;
    const int64_t second = options.label_budget * 3 / 10;
    plan.labels = {first, second, options.label_budget - first - second};
    plan.labels.erase(std::remove(plan.labels.begin(), plan.labels.end(), 0),
                      plan.labels.end());
  }
  int64_t sum = 0;
  for (int64_t n : plan.labels) {
    if (n <= 0)
      return absl::InvalidArgumentError("schedule entries must be positive");
    if (n > options.label_budget) {
      return absl::InvalidArgumentError(
          absl::StrCat("schedule entry ", n, " is more than the label budget ",
                       options.label_budget));
    }
    if (__builtin_add_overflow(sum, n, &sum)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "schedule ", absl::StrJoin(plan.labels, ","),
          " sums to more than the label budget ", options.label_budget));
    }
  }
  if (sum != options.label_budget) {
    return absl::InvalidArgumentError(
        absl::StrCat("schedule ", absl::StrJoin(plan.labels, ","), " sums to ",
                     sum, ", not the label budget ", options.label_budget));
  }
  const size_t rounds = plan.labels.size();
  std::vector<int64_t> steps = options.round_steps;
  if (steps.empty()) {
    const int64_t early = static_cast<int64_t>(options.total_steps *
                                               options.early_round_fraction);
    int64_t used = 0;
    for (size_t r = 0; r + 1 < rounds; ++r) {
      steps.push_back(early);
      used += early;
    }
    steps.push_back(options.total_steps - used);
  }
  if (steps.size() != rounds) {
    return absl::InvalidArgumentError(absl::StrCat(
        "round_steps has ", steps.size(), " entries for ", rounds, " rounds"));
  }
  int64_t cumulative = 0;
  for (int64_t n : steps) {
    if (n <= 0) {
      return absl::InvalidArgumentError(
          "every round must train at least one step (raise total_steps or "
          "lower early_round_fraction)");
    }
    if (n > options.total_steps) {
      return absl::InvalidArgumentError(
          absl::StrCat("round_steps entry ", n, " is more than total_steps ",
                       options.total_steps));
    }
    if (__builtin_add_overflow(cumulative, n, &cumulative)) {
      return absl::InvalidArgumentError(
          absl::StrCat("round_steps ", absl::StrJoin(steps, ","),
                       " sum to more than total_steps ", options.total_steps));
    }
    plan.end_step.push_back(cumulative);
  }
  if (cumulative != options.total_steps) {
    return absl::InvalidArgumentError(
        absl::StrCat("round_steps sum to ", cumulative, ", not total_steps ",
                     options.total_steps));
  }
  return plan;
}

absl::StatusOr<RunSummary> RunTrainer(const TrainerOptions& options,
                                      OracleClient* oracle,
                                      const std::atomic<bool>* stop) {
  if (options.log_every <= 0) {
    return absl::InvalidArgumentError("log_every must be positive");
  }
  if (options.ids_per_query <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ids_per_query must be positive, got ", options.ids_per_query));
  }
  try {
    Run run(options, oracle, stop);
    return run.Go();
  } catch (const c10::Error& e) {
    return TorchErrorToStatus(e, "LibTorch");
  } catch (const std::exception& e) {
    return absl::InternalError(e.what());
  }
}

}  // namespace trainer
