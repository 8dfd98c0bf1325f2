#include "trainer/run/trainer_run.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <numeric>
#include <set>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/idx_file.h"
#include "common/status_matchers.h"
#include "trainer/learn/dataset.h"
#include "trainer/run/purchase_journal.h"
#include "trainer/select/label_free_features.h"

namespace trainer {
namespace {

using ::common::IsOk;
using ::common::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr char kDataDir[] = "/usr/share/datasets/fashion-mnist";

// An in-memory oracle over the real Fashion-MNIST labels (the test reads the
// label files; the trainer never does). Counts every id it reveals and can
// raise a stop flag on its n-th QueryLabels call.
class FakeOracle : public OracleClient {
 public:
  FakeOracle() {
    auto train = common::ReadIdxLabels(
        std::string(kDataDir) + "/" + common::kTrainLabelsFile,
        common::kTrainCount);
    auto test = common::ReadIdxLabels(
        std::string(kDataDir) + "/" + common::kTestLabelsFile,
        common::kTestCount);
    if (train.ok()) train_ = *train;
    if (test.ok()) test_ = *test;
  }

  bool loaded() const { return !train_.empty() && !test_.empty(); }
  void StopOnQuery(int n, std::atomic<bool>* stop) {
    stop_on_query_ = n;
    stop_ = stop;
  }
  // Refuses QueryLabels calls of more than n ids, as the real oracle's
  // --max_batch does.
  void set_max_batch(int64_t n) { max_batch_ = n; }
  // Answers `failure`, revealing nothing, to the n-th QueryLabels call
  // (counting refused calls too).
  void FailOnCall(int n, absl::Status failure =
                             absl::UnavailableError("oracle unreachable")) {
    fail_on_call_ = n;
    failure_ = std::move(failure);
  }
  int64_t spent() const { return static_cast<int64_t>(revealed_.size()); }
  int queries() const { return queries_; }
  // The ids of every QueryLabels call that was granted, in order.
  const std::vector<std::vector<int64_t>>& queried() const { return queried_; }
  int64_t label(int64_t id) const { return train_[id]; }
  int evaluations() const { return evaluations_; }

  absl::StatusOr<ExperimentInfo> CreateExperiment(
      const std::string& name, int64_t label_budget,
      const std::string&) override {
    ExperimentInfo info;
    info.name = name;
    info.created = budget_ == 0;
    if (budget_ == 0) budget_ = label_budget;
    info.label_budget = budget_;
    return info;
  }

  absl::StatusOr<LabelBatch> QueryLabels(const std::string&,
                                         const std::vector<int64_t>& ids,
                                         const std::string&,
                                         const std::string&, int) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (++calls_ == fail_on_call_) return failure_;
    if (max_batch_ > 0 && static_cast<int64_t>(ids.size()) > max_batch_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "batch of ", ids.size(), " ids exceeds max_batch ", max_batch_));
    }
    std::set<int64_t> fresh;
    for (int64_t id : ids) {
      if (!revealed_.count(id)) fresh.insert(id);
    }
    if (static_cast<int64_t>(revealed_.size() + fresh.size()) > budget_) {
      return absl::ResourceExhaustedError("over budget");
    }
    queried_.push_back(ids);
    LabelBatch batch;
    for (int64_t id : ids) batch.labels.push_back(train_[id]);
    revealed_.insert(fresh.begin(), fresh.end());
    batch.newly_revealed = static_cast<int64_t>(fresh.size());
    batch.remaining = budget_ - static_cast<int64_t>(revealed_.size());
    if (++queries_ == stop_on_query_ && stop_ != nullptr) stop_->store(true);
    return batch;
  }

  absl::StatusOr<BudgetInfo> GetBudget(const std::string& name) override {
    BudgetInfo info;
    info.experiment = name;
    info.label_budget = budget_;
    info.spent = spent();
    info.remaining = budget_ - spent();
    return info;
  }

  absl::StatusOr<Evaluation> Evaluate(const std::string&,
                                      const std::vector<int32_t>& predictions,
                                      const std::string&,
                                      const std::string&) override {
    if (predictions.size() != test_.size()) {
      return absl::InvalidArgumentError("one prediction per test image");
    }
    ++evaluations_;
    last_predictions_ = predictions;
    all_predictions_.push_back(predictions);
    Evaluation evaluation;
    evaluation.num_classes = 10;
    evaluation.confusion.assign(100, 0);
    std::vector<int64_t> per_class(10, 0), correct(10, 0);
    int64_t hits = 0;
    for (size_t i = 0; i < predictions.size(); ++i) {
      const int truth = test_[i];
      ++per_class[truth];
      ++evaluation.confusion[truth * 10 + predictions[i]];
      if (predictions[i] == truth) {
        ++hits;
        ++correct[truth];
      }
    }
    evaluation.accuracy = static_cast<double>(hits) / predictions.size();
    for (int c = 0; c < 10; ++c) {
      evaluation.per_class_accuracy.push_back(
          per_class[c] ? static_cast<double>(correct[c]) / per_class[c] : 0);
    }
    evaluation.evaluations_left = 100;
    accuracies_.push_back(evaluation.accuracy);
    return evaluation;
  }

 const std::vector<int32_t>& last_predictions() const {
    return last_predictions_;
  }
  // Every Evaluate call's accuracy, in order.
  const std::vector<double>& accuracies() const { return accuracies_; }
  // Every Evaluate call's predictions, in order.
  const std::vector<std::vector<int32_t>>& all_predictions() const {
    return all_predictions_;
  }

 private:
  std::vector<uint8_t> train_, test_;
  std::vector<int32_t> last_predictions_;
  std::vector<std::vector<int32_t>> all_predictions_;
  std::vector<double> accuracies_;
  std::mutex mu_;
  int64_t budget_ = 0;
  std::set<int64_t> revealed_;
  std::vector<std::vector<int64_t>> queried_;
  int queries_ = 0;
  int calls_ = 0;
  int fail_on_call_ = -1;
  absl::Status failure_;
  int64_t max_batch_ = 0;
  int evaluations_ = 0;
  int stop_on_query_ = -1;
  std::atomic<bool>* stop_ = nullptr;
};

// A tiny two-round run: SimCLR pretraining, FreeMatch, round restarts.
TrainerOptions TinyStagedRun(const std::string& dir) {
  TrainerOptions options;
  options.experiment = "staged";
  options.label_budget = 20;
  options.schedule = {10, 10};
  options.total_steps = 8;
  options.round_steps = {4, 4};
  options.strategy = "typiclust";
  options.data_dir = kDataDir;
  options.train_limit = 300;
  options.out_dir = dir + "/run";
  options.eval_every = 0;
  options.log_every = 2;
  options.checkpoint_every = 0;
  options.device = "cpu";
  options.model.width = 4;
  options.objective.name = "freematch";
  options.objective.freematch.batch.batch_size = 4;
  options.objective.freematch.batch.mu = 2;
  options.pretrain.method = "simclr";
  options.pretrain.steps = 4;
  options.pretrain.log_every = 2;
  options.pretrain.objective.simclr.batch_size = 16;
  options.pretrain.cache_dir = dir + "/cache";
  options.restart_rounds = true;
  options.recalibrate_bn = true;
  options.label_free_dims = 16;
  return options;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string TempDir(const std::string& name) {
  std::string dir = ::testing::TempDir() + "/trainer_run_test_" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

TEST(RunTrainerTest, PretrainsSelectsBuysAndReportsEveryStage) {
  FakeOracle oracle;
  if (!oracle.loaded()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  const std::string dir = TempDir("staged");
  TrainerOptions options = TinyStagedRun(dir);
  auto summary = RunTrainer(options, &oracle, nullptr);
  ASSERT_THAT(summary, IsOk());
  EXPECT_EQ(summary->labels_spent, 20);
  EXPECT_EQ(oracle.spent(), 20);
  EXPECT_EQ(summary->steps, 8);
  // Feature quality after the first purchase and after each round (2
  // evaluations each) plus one evaluation per round end.
  EXPECT_EQ(oracle.evaluations(), 3 * 2 + 2);
  int cached = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(options.pretrain.cache_dir)) {
    cached += entry.path().extension() == ".pt";
  }
  EXPECT_EQ(cached, 1);
  const std::string report = ReadFile(options.out_dir + "/report.json");
  EXPECT_THAT(report, HasSubstr("\"objective\":\"freematch\""));
  EXPECT_THAT(report, HasSubstr("\"method\":\"simclr\""));
  EXPECT_THAT(report, HasSubstr("\"stage\":\"pretrained\""));
  EXPECT_THAT(report, HasSubstr("\"stage\":\"round 1\""));
  const std::string metrics = ReadFile(options.out_dir + "/metrics.jsonl");
  EXPECT_THAT(metrics, HasSubstr("\"stage\":\"pretrain\""));
  EXPECT_THAT(metrics, HasSubstr("\"tau\":"));
  // The first line is pretraining's step 2; it records the rate it used.
  const std::string first_line = metrics.substr(0, metrics.find('\n'));
  EXPECT_THAT(first_line, HasSubstr("\"stage\":\"pretrain\""));
  EXPECT_THAT(first_line, HasSubstr("\"lr\":0."));
  EXPECT_THAT(first_line, Not(HasSubstr("\"lr\":0,")));

  // A second run with the same pool, model, settings and seed reuses the
  // pretrained weights: no new cache entry.
  FakeOracle second;
  options.out_dir = dir + "/run2";
  ASSERT_THAT(RunTrainer(options, &second, nullptr), IsOk());
  cached = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(options.pretrain.cache_dir)) {
    cached += entry.path().extension() == ".pt";
  }
  EXPECT_EQ(cached, 1);
  EXPECT_THAT(ReadFile(options.out_dir + "/report.json"),
              HasSubstr("\"reused\":true"));
}

TEST(RunTrainerTest, EvalFlipScoresMirrorAveragedPredictions) {
  // Two runs that train the same model (same seed and settings on the CPU);
  // the second scores the mean of each test image and its mirror: other
  // predictions, the same number of oracle evaluations, and said so in the
  // report.
  std::vector<int32_t> predictions[2];
  int evaluations[2];
  for (bool flip : {false, true}) {
    FakeOracle oracle;
    if (!oracle.loaded()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
    const std::string dir = TempDir(flip ? "flip" : "noflip");
    TrainerOptions options = TinyStagedRun(dir);
    options.pretrain.method = "none";
    options.feature_quality = false;
    options.eval_flip = flip;
    ASSERT_THAT(RunTrainer(options, &oracle, nullptr), IsOk());
    predictions[flip] = oracle.last_predictions();
    evaluations[flip] = oracle.evaluations();
    EXPECT_THAT(ReadFile(options.out_dir + "/report.json"),
                HasSubstr(flip ? "\"test-time flip\":\"yes\""
                               : "\"test-time flip\":\"no\""));
  }
  ASSERT_EQ(predictions[0].size(), predictions[1].size());
  EXPECT_NE(predictions[0], predictions[1]);
  EXPECT_EQ(evaluations[0], evaluations[1]);
}

TEST(RunTrainerTest, StrongLabelledViewsTrainAnotherModelAndSaySo) {
  // The same run with and without AdaMatch's labelled strong views: both
  // finish on the same labels, the second trains on more views of them and
  // so ends at other predictions, and each report names its views.
  std::vector<int32_t> predictions[2];
  for (bool strong : {false, true}) {
    FakeOracle oracle;
    if (!oracle.loaded()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
    const std::string dir = TempDir(strong ? "strong" : "weak");
    TrainerOptions options = TinyStagedRun(dir);
    options.pretrain.method = "none";
    options.feature_quality = false;
    options.objective.freematch.batch.strong_labelled = strong;
    ASSERT_THAT(RunTrainer(options, &oracle, nullptr), IsOk());
    predictions[strong] = oracle.last_predictions();
    EXPECT_THAT(
        ReadFile(options.out_dir + "/report.json"),
        HasSubstr(strong ? "\"labelled views\":\"weak and strong (AdaMatch)\""
                         : "\"labelled views\":\"weak\""));
  }
  ASSERT_EQ(predictions[0].size(), predictions[1].size());
  EXPECT_NE(predictions[0], predictions[1]);
}

TEST(RunTrainerTest, PseudoLabelViewsTrainAnotherModelAndSaySo) {
  // The same run with one and with two weak views per pseudo-label: the
  // second averages a fresh view into every pseudo-label and so ends at
  // other predictions, and each report names its views.
  std::vector<int32_t> predictions[2];
  for (int views : {1, 2}) {
    FakeOracle oracle;
    if (!oracle.loaded()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
    const std::string dir = TempDir(absl::StrCat("views", views));
    TrainerOptions options = TinyStagedRun(dir);
    options.pretrain.method = "none";
    options.feature_quality = false;
    options.objective.freematch.batch.pseudo_label_views = views;
    ASSERT_THAT(RunTrainer(options, &oracle, nullptr), IsOk());
    predictions[views - 1] = oracle.last_predictions();
    EXPECT_THAT(ReadFile(options.out_dir + "/report.json"),
                HasSubstr(views == 1 ? "\"pseudo-label views\":\"1\""
                                     : "\"pseudo-label views\":\"2 weak views "
                                       "averaged\""));
  }
  ASSERT_EQ(predictions[0].size(), predictions[1].size());
  EXPECT_NE(predictions[0], predictions[1]);
}

TEST(RunTrainerTest, PrototypeHeadStartsEachModelFromTheBoughtLabels) {
  // With a learning rate of 0 the reported model is the one each round
  // starts from (round restarts: the second round's fresh model). Its
  // untrained classifier layer scores about chance; the prototypes of the
  // 20 labels on the same untrained embedding classify well above it (32 %
  // when written).
  double accuracy[2];
  for (bool prototypes : {false, true}) {
    FakeOracle oracle;
    if (!oracle.loaded()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
    const std::string dir = TempDir(prototypes ? "prototypes" : "untrained");
    TrainerOptions options = TinyStagedRun(dir);
    options.pretrain.method = "none";
    options.feature_quality = false;
    options.learner.lr = 0;
    options.prototype_head = prototypes;
    ::testing::internal::CaptureStderr();
    auto summary = RunTrainer(options, &oracle, nullptr);
    const std::string log = ::testing::internal::GetCapturedStderr();
    ASSERT_THAT(summary, IsOk());
    EXPECT_EQ(oracle.spent(), 20);
    accuracy[prototypes] = summary->accuracy;
    const std::string start = prototypes ? "prototypes of the labels bought"
                                         : "untrained";
    EXPECT_THAT(ReadFile(options.out_dir + "/report.json"),
                HasSubstr("\"classifier layer start\":\"" + start + "\""));
    if (prototypes) {
      // Once for each round's model: 10 labels, then all 20.
      EXPECT_THAT(log, HasSubstr("prototypes of 10 labels"));
      EXPECT_THAT(log, HasSubstr("prototypes of 20 labels"));
    }
  }
  EXPECT_LT(accuracy[0], 0.25);
  EXPECT_GT(accuracy[1], accuracy[0] + 0.1);
}

TEST(RunTrainerTest, StopCheckpointsAndResumeBuysNothingTwice) {
  FakeOracle oracle;
  if (!oracle.loaded()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  const std::string dir = TempDir("resume");
  TrainerOptions options = TinyStagedRun(dir);
  options.pretrain.method = "none";
  options.objective.name = "fixmatch";
  options.objective.fixmatch.batch.batch_size = 4;
  options.objective.fixmatch.batch.mu = 2;
  options.feature_quality = false;
  std::atomic<bool> stop{false};
  // Stop right after round 1's purchase, before it trains.
  oracle.StopOnQuery(2, &stop);
  EXPECT_THAT(RunTrainer(options, &oracle, &stop),
              StatusIs(absl::StatusCode::kCancelled, HasSubstr("--resume")));
  EXPECT_EQ(oracle.spent(), 20);
  EXPECT_TRUE(std::filesystem::exists(options.out_dir + "/checkpoint.pt"));

  options.resume = true;
  std::atomic<bool> go{false};
  auto summary = RunTrainer(options, &oracle, &go);
  ASSERT_THAT(summary, IsOk());
  EXPECT_EQ(summary->steps, 8);
  EXPECT_EQ(summary->labels_spent, 20);
  EXPECT_EQ(oracle.queries(), 2);  // nothing bought again
  const std::string rounds = ReadFile(options.out_dir + "/rounds.csv");
  EXPECT_THAT(rounds, HasSubstr("\n0,10,"));
  EXPECT_THAT(rounds, HasSubstr("\n1,20,"));
}

TEST(RunTrainerTest, ResumeIgnoresRoundEndsOfAnotherCheckpoint) {
  // round_ends.txt written for another step than checkpoint.pt's (a stop
  // between the two files) is ignored: the planned ends 4,8 stand, so the
  // run stopped at step 4 goes on with round 1 (the file's ends 6,8 would
  // put it back in round 0).
  FakeOracle oracle;
  if (!oracle.loaded()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  TrainerOptions options = TinyStagedRun(TempDir("resume_foreign_ends"));
  options.pretrain.method = "none";
  options.feature_quality = false;
  std::atomic<bool> stop{false};
  oracle.StopOnQuery(2, &stop);
  ASSERT_THAT(RunTrainer(options, &oracle, &stop),
              StatusIs(absl::StatusCode::kCancelled));
  const std::string round_ends = options.out_dir + "/round_ends.txt";
  ASSERT_EQ(ReadFile(round_ends), "step 4\nplanned 4,8\nends 4,8\n");
  std::ofstream(round_ends) << "step 3\nplanned 4,8\nends 6,8\n";

  options.resume = true;
  auto summary = RunTrainer(options, &oracle, nullptr);
  ASSERT_THAT(summary, IsOk());
  EXPECT_EQ(summary->steps, 8);
  const std::string rounds = ReadFile(options.out_dir + "/rounds.csv");
  EXPECT_THAT(rounds, Not(HasSubstr("\n0,20,")));
  EXPECT_THAT(rounds, HasSubstr("\n1,20,"));
  EXPECT_EQ(ReadFile(round_ends), "step 8\nplanned 4,8\nends 4,8\n");
}

// The ids typiclust picks in `round` for `count` labels on `embeddings` of
// the pool, with `labelled` already bought (their labels from `oracle`).
std::vector<int64_t> TypiclustPicks(const TrainerOptions& options,
                                    const torch::Tensor& embeddings,
                                    const std::vector<int64_t>& labelled,
                                    const FakeOracle& oracle, int round,
                                    int64_t count) {
  PoolState pool;
  pool.pool_ids.resize(embeddings.size(0));
  std::iota(pool.pool_ids.begin(), pool.pool_ids.end(), 0);
  pool.embeddings = embeddings;
  pool.labelled_ids = labelled;
  for (int64_t id : labelled) pool.labelled_labels.push_back(oracle.label(id));
  pool.round = round;
  pool.seed = options.seed;
  auto strategy =
      MakeSelectionStrategy(options.strategy, options.strategy_options);
  EXPECT_THAT(strategy, IsOk());
  if (!strategy.ok()) return {};
  auto ids = (*strategy)->Select(pool, count);
  EXPECT_THAT(ids, IsOk());
  return ids.ok() ? *ids : std::vector<int64_t>{};
}

TEST(RunTrainerTest, SelectsEveryRoundOnTheInitialEmbedding) {
  // Without pretraining the first round selects on PCA features. With
  // select_on_initial_embedding the second round does too: its picks are
  // typiclust's on the PCA features given the first round's labels. By
  // default it selects on the trained model's embedding and picks others.
  auto images = LoadImages(std::string(kDataDir) + "/" +
                               common::kTrainImagesFile,
                           common::kTrainCount, torch::kCPU);
  if (!images.ok()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  for (bool initial : {true, false}) {
    FakeOracle oracle;
    if (!oracle.loaded()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
    const std::string dir = TempDir(initial ? "initial_emb" : "model_emb");
    TrainerOptions options = TinyStagedRun(dir);
    options.pretrain.method = "none";
    options.feature_quality = false;
    options.select_on_initial_embedding = initial;
    ASSERT_THAT(RunTrainer(options, &oracle, nullptr), IsOk());
    ASSERT_EQ(oracle.queried().size(), 2u);
    auto pca = LabelFreeFeatures(images->narrow(0, 0, options.train_limit),
                                 options.label_free_dims);
    ASSERT_THAT(pca, IsOk());
    const std::vector<int64_t> first = oracle.queried()[0];
    EXPECT_EQ(first, TypiclustPicks(options, *pca, {}, oracle, 0, 10));
    const std::vector<int64_t> on_pca =
        TypiclustPicks(options, *pca, first, oracle, 1, 10);
    if (initial) {
      EXPECT_EQ(oracle.queried()[1], on_pca);
      EXPECT_THAT(ReadFile(options.out_dir + "/report.json"),
                  HasSubstr("\"selection embedding\":\"the initial one"));
    } else {
      EXPECT_NE(oracle.queried()[1], on_pca);
    }
  }
}

TEST(RunTrainerTest, InitialEmbeddingOfAPretrainedRunSurvivesAResume) {
  // With SimCLR weights (and BN re-estimation), the first purchase is the
  // same with or without select_on_initial_embedding, and a run stopped
  // after it and resumed computes the embedding again from the initial
  // weights: its second purchase equals the uninterrupted run's.
  FakeOracle reference;
  if (!reference.loaded()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  const std::string dir = TempDir("initial_pre");
  TrainerOptions options = TinyStagedRun(dir);
  options.feature_quality = false;
  options.out_dir = dir + "/default";
  ASSERT_THAT(RunTrainer(options, &reference, nullptr), IsOk());
  ASSERT_EQ(reference.queried().size(), 2u);

  options.select_on_initial_embedding = true;
  options.out_dir = dir + "/straight";
  FakeOracle straight;
  ASSERT_THAT(RunTrainer(options, &straight, nullptr), IsOk());
  ASSERT_EQ(straight.queried().size(), 2u);
  EXPECT_EQ(straight.queried()[0], reference.queried()[0]);

  options.out_dir = dir + "/resumed";
  FakeOracle oracle;
  std::atomic<bool> stop{false};
  oracle.StopOnQuery(1, &stop);
  EXPECT_THAT(RunTrainer(options, &oracle, &stop),
              StatusIs(absl::StatusCode::kCancelled));
  options.resume = true;
  std::atomic<bool> go{false};
  ASSERT_THAT(RunTrainer(options, &oracle, &go), IsOk());
  ASSERT_EQ(oracle.queried().size(), 2u);
  EXPECT_EQ(oracle.queried()[0], reference.queried()[0]);
  EXPECT_EQ(oracle.queried()[1], straight.queried()[1]);
}

TEST(RunTrainerTest, DistillsAFreshStudentFromTheFinalModel) {
  // After the rounds (8 steps) a student trains 6 more steps from the
  // pretrained weights, buying nothing; the teacher's checkpoint stays.
  // With teacher weight 0 the student's pseudo-labels are its own: the same
  // run then ends with other predictions, so the teacher's reach the steps.
  std::vector<int32_t> predictions[2];
  for (int weighted : {1, 0}) {
    FakeOracle oracle;
    if (!oracle.loaded()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
    const std::string dir =
        TempDir(weighted ? "distill" : "distill_unweighted");
    TrainerOptions options = TinyStagedRun(dir);
    options.restart_rounds = false;
    options.feature_quality = false;
    options.distill_steps = 6;
    options.objective.freematch.batch.teacher_weight = weighted;
    ::testing::internal::CaptureStderr();
    auto summary = RunTrainer(options, &oracle, nullptr);
    const std::string log = ::testing::internal::GetCapturedStderr();
    ASSERT_THAT(summary, IsOk());
    // The progress line names the stage.
    EXPECT_THAT(log, HasSubstr("distillation | step 14/14"));
    predictions[weighted] = oracle.last_predictions();
    EXPECT_EQ(summary->steps, 14);
    EXPECT_EQ(summary->labels_spent, 20);
    EXPECT_EQ(oracle.queries(), 2);
    // One evaluation per round end, one after distillation.
    EXPECT_EQ(oracle.evaluations(), 3);
    EXPECT_TRUE(std::filesystem::exists(options.out_dir + "/checkpoint.pt"));
    EXPECT_TRUE(std::filesystem::exists(options.out_dir + "/student.pt"));
    const std::string metrics = ReadFile(options.out_dir + "/metrics.jsonl");
    EXPECT_THAT(metrics, HasSubstr("\"stage\":\"distill\""));
    EXPECT_THAT(metrics, HasSubstr("\"step\":14,"));
    EXPECT_THAT(ReadFile(options.out_dir + "/report.json"),
                HasSubstr(absl::StrCat("\"distillation\":\"6 steps, teacher "
                                       "weight ",
                                       weighted, ", teacher ")));
    if (!weighted) continue;
    // Resuming the finished run loads the student and trains no further:
    // no new distillation lines in metrics.jsonl.
    auto count_distill_lines = [&] {
      const std::string text = ReadFile(options.out_dir + "/metrics.jsonl");
      int lines = 0;
      for (size_t at = text.find("\"stage\":\"distill\"");
           at != std::string::npos;
           at = text.find("\"stage\":\"distill\"", at + 1)) {
        ++lines;
      }
      return lines;
    };
    EXPECT_EQ(count_distill_lines(), 3);  // steps 10, 12, 14
    options.resume = true;
    FakeOracle resumed;
    ASSERT_THAT(resumed.CreateExperiment("staged", 20, ""), IsOk());
    auto again = RunTrainer(options, &resumed, nullptr);
    ASSERT_THAT(again, IsOk());
    EXPECT_EQ(again->steps, 14);
    EXPECT_EQ(resumed.queries(), 0);
    EXPECT_EQ(resumed.last_predictions(), predictions[1]);
    EXPECT_EQ(count_distill_lines(), 3);
  }
  EXPECT_NE(predictions[0], predictions[1]);
}

TEST(RunTrainerTest, DistillEnsembleReportsTeacherAndStudentAveraged) {
  // With distill_ensemble the run scores the student alone, then the mean of
  // its and the teacher's probabilities, and reports the latter. Where the
  // teacher (the last round's evaluation) and the student agree, the mean
  // agrees with both; somewhere they differ, and the mean is not simply the
  // student's.
  FakeOracle oracle;
  if (!oracle.loaded()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  const std::string dir = TempDir("distill_ensemble");
  TrainerOptions options = TinyStagedRun(dir);
  options.restart_rounds = false;
  options.feature_quality = false;
  options.distill_steps = 6;
  options.distill_ensemble = true;
  options.objective.freematch.batch.teacher_weight = 0;
  auto summary = RunTrainer(options, &oracle, nullptr);
  ASSERT_THAT(summary, IsOk());
  EXPECT_EQ(summary->labels_spent, 20);
  EXPECT_EQ(oracle.queries(), 2);
  // Two round ends, the student alone, the average.
  ASSERT_EQ(oracle.evaluations(), 4);
  const auto& all = oracle.all_predictions();
  const std::vector<int32_t>& teacher = all[1];
  const std::vector<int32_t>& student = all[2];
  const std::vector<int32_t>& averaged = all[3];
  int disagreements = 0;
  for (size_t i = 0; i < averaged.size(); ++i) {
    if (teacher[i] == student[i]) {
      EXPECT_EQ(averaged[i], teacher[i]) << "test image " << i;
    } else {
      ++disagreements;
    }
  }
  EXPECT_GT(disagreements, 0);
  EXPECT_NE(averaged, student);
  const std::string report = ReadFile(options.out_dir + "/report.json");
  EXPECT_THAT(report, HasSubstr("student alone "));
  EXPECT_THAT(report, HasSubstr("reported: teacher and student averaged"));
  // The run reports the last evaluation, the average's.
  EXPECT_EQ(summary->accuracy, oracle.accuracies().back());
  EXPECT_NE(oracle.accuracies()[2], oracle.accuracies()[3]);
}

// TinyStagedRun without pretraining, feature quality, restarts or BN
// re-estimation, planned for 1,000,000 steps (150,000 then 850,000) and
// limited to 3 s of a clock that advances 5 ms each time it is read (about
// once a step with log_every 1).
TrainerOptions TimeLimitedRun(const std::string& dir) {
  TrainerOptions options = TinyStagedRun(dir);
  options.pretrain.method = "none";
  options.feature_quality = false;
  options.restart_rounds = false;
  options.recalibrate_bn = false;
  options.total_steps = 1000000;
  options.round_steps = {};
  options.log_every = 1;
  options.max_train_seconds = 3;
  auto now = std::make_shared<absl::Time>(absl::UnixEpoch());
  options.clock = [now] { return *now += absl::Milliseconds(5); };
  return options;
}

TEST(RunTrainerTest, FitsItsStepsToTheTimeLimit) {
  // Far more steps than fit in 3 s of a clock that advances 5 ms each time
  // it is read (about once a step with log_every 1): the run shrinks its
  // plan to the rate it measures, trains every round and takes its
  // learning rate to the schedule's end.
  FakeOracle oracle;
  if (!oracle.loaded()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  TrainerOptions options = TimeLimitedRun(TempDir("time_fit"));
  ASSERT_TRUE(options.fit_to_time);
  auto summary = RunTrainer(options, &oracle, nullptr);
  ASSERT_THAT(summary, IsOk());
  EXPECT_EQ(summary->labels_spent, 20);
  EXPECT_GT(summary->steps, 100);
  EXPECT_LT(summary->steps, 1000);
  EXPECT_THAT(ReadFile(options.out_dir + "/report.json"),
              HasSubstr(absl::StrCat("\"time fit\":\"to 3 s, ", summary->steps,
                                     " of 1000000 planned steps\"")));
  EXPECT_THAT(ReadFile(options.out_dir + "/report.json"),
              HasSubstr("\"planned_steps\":1000000,"));
  // Both rounds trained.
  const std::string rounds = ReadFile(options.out_dir + "/rounds.csv");
  EXPECT_THAT(rounds, HasSubstr("\n0,10,"));
  EXPECT_THAT(rounds, HasSubstr("\n1,20,"));
  EXPECT_EQ(oracle.queries(), 2);
  // The last step's rate is below the cosine's midpoint (an unfitted run
  // would still be at the peak after so few of its steps).
  std::istringstream metrics(ReadFile(options.out_dir + "/metrics.jsonl"));
  std::string line;
  double last_lr = -1;
  while (std::getline(metrics, line)) {
    const size_t at = line.find("\"lr\":");
    if (at != std::string::npos) last_lr = std::stod(line.substr(at + 5));
  }
  EXPECT_GE(last_lr, 0);
  EXPECT_LT(last_lr, 0.03 * std::cos(7.0 / 16.0 * std::acos(-1.0) * 0.5));
}

TEST(RunTrainerTest, FitsTheDistillationIntoTheTimeLeft) {
  // As above, with as many distillation steps as round steps planned: the
  // rounds aim at half the 3 s, the student's steps are fitted to the rest
  // at the rounds' rate, so both stages train a comparable number of steps.
  FakeOracle oracle;
  if (!oracle.loaded()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  TrainerOptions options = TimeLimitedRun(TempDir("time_fit_distill"));
  options.distill_steps = 1000000;
  auto summary = RunTrainer(options, &oracle, nullptr);
  ASSERT_THAT(summary, IsOk());
  const std::string report = ReadFile(options.out_dir + "/report.json");
  const std::string key = "\"distillation\":\"";
  const size_t at = report.find(key);
  ASSERT_NE(at, std::string::npos);
  const int64_t distilled = std::stoll(report.substr(at + key.size()));
  const int64_t rounds = summary->steps - distilled;
  EXPECT_GT(rounds, 50);
  EXPECT_GT(distilled, rounds / 3);
  EXPECT_LT(distilled, rounds * 3);
  EXPECT_LT(summary->steps, 1000);
}

// The (step, lr) of every line of out_dir's metrics.jsonl, in order.
std::vector<std::pair<int64_t, double>> StepRates(const std::string& out_dir) {
  std::vector<std::pair<int64_t, double>> rates;
  std::istringstream metrics(ReadFile(out_dir + "/metrics.jsonl"));
  std::string line;
  while (std::getline(metrics, line)) {
    const size_t step = line.find("\"step\":");
    const size_t lr = line.find("\"lr\":");
    if (step == std::string::npos || lr == std::string::npos) continue;
    rates.emplace_back(std::stoll(line.substr(step + 7)),
                       std::stod(line.substr(lr + 5)));
  }
  return rates;
}

TEST(RunTrainerTest, ResumeKeepsTheRoundEndsFittedToTheTimeLimit) {
  // A run fitted to its time limit ends round 0 hundreds of steps before
  // the planned 150,000. Stopped early in round 1 (after its purchase) and
  // resumed, it must continue round 1 where it stopped, on the learning
  // rate it had, not train and record round 0 again (with round 1's
  // labels) up to its planned end.
  FakeOracle oracle;
  if (!oracle.loaded()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  TrainerOptions options = TimeLimitedRun(TempDir("time_fit_resume"));
  std::atomic<bool> stop{false};
  const std::function<absl::Time()> fitted_clock = options.clock;
  int reads_in_round_1 = 0;
  options.clock = [&] {
    if (oracle.queries() == 2 && ++reads_in_round_1 == 40) stop.store(true);
    return fitted_clock();
  };
  EXPECT_THAT(RunTrainer(options, &oracle, &stop),
              StatusIs(absl::StatusCode::kCancelled, HasSubstr("--resume")));
  ASSERT_EQ(oracle.queries(), 2);
  const std::string stopped_rounds = ReadFile(options.out_dir + "/rounds.csv");
  ASSERT_THAT(stopped_rounds, HasSubstr("\n0,10,"));
  ASSERT_THAT(stopped_rounds, Not(HasSubstr("\n1,")));
  const std::vector<std::pair<int64_t, double>> stopped =
      StepRates(options.out_dir);
  ASSERT_FALSE(stopped.empty());
  const int evaluations = oracle.evaluations();

  options.resume = true;
  options.clock = fitted_clock;
  auto summary = RunTrainer(options, &oracle, nullptr);
  ASSERT_THAT(summary, IsOk());
  EXPECT_EQ(oracle.queries(), 2);
  EXPECT_EQ(summary->labels_spent, 20);
  // Only round 1 ends (and is evaluated) in the resumed run.
  EXPECT_EQ(oracle.evaluations(), evaluations + 1);
  // A header and one row per round, round 0's as the stopped run wrote it.
  const std::string rounds = ReadFile(options.out_dir + "/rounds.csv");
  ASSERT_EQ(rounds.rfind(stopped_rounds, 0), 0u) << rounds;
  EXPECT_THAT(rounds.substr(stopped_rounds.size()), StartsWith("1,20,"));
  EXPECT_EQ(std::count(rounds.begin(), rounds.end(), '\n'), 3) << rounds;
  // Training went on from the stopped step at the rate it had reached
  // (an unfitted schedule would be back near its peak of 0.03).
  const std::vector<std::pair<int64_t, double>> all =
      StepRates(options.out_dir);
  ASSERT_GT(all.size(), stopped.size());
  const auto& [last_step, last_lr] = stopped.back();
  const auto& [next_step, next_lr] = all[stopped.size()];
  EXPECT_EQ(next_step, last_step + 1);
  EXPECT_LE(next_lr, last_lr);
  EXPECT_GT(next_lr, 0.95 * last_lr);
  EXPECT_LT(last_lr, 0.029);
}

TEST(RunTrainerTest, RejectsLabelFreeObjectiveForRoundsBeforeBuying) {
  FakeOracle oracle;
  if (!oracle.loaded()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  TrainerOptions options = TinyStagedRun(TempDir("simclr_rounds"));
  options.objective.name = "simclr";
  EXPECT_THAT(RunTrainer(options, &oracle, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("uses no labels")));
  EXPECT_EQ(oracle.queries(), 0);
  options.objective.name = "dreammatch";
  EXPECT_THAT(RunTrainer(options, &oracle, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unknown objective 'dreammatch'")));
}

// TinyStagedRun without pretraining or feature quality: the quickest run.
TrainerOptions QuickRun(const std::string& dir) {
  TrainerOptions options = TinyStagedRun(dir);
  options.pretrain.method = "none";
  options.feature_quality = false;
  return options;
}

// Answers round r with ids[r], whatever it is asked.
class FixedStrategy : public SelectionStrategy {
 public:
  explicit FixedStrategy(std::vector<std::vector<int64_t>> ids)
      : ids_(std::move(ids)) {}
  std::string name() const override { return "fixed"; }
  absl::StatusOr<std::vector<int64_t>> Select(const PoolState& pool,
                                              int64_t) override {
    return ids_.at(pool.round);
  }

 private:
  const std::vector<std::vector<int64_t>> ids_;
};

// The journal's lines that start with `kind` ("intent", "bought").
int JournalLines(const TrainerOptions& options, const std::string& kind) {
  std::istringstream lines(ReadFile(options.out_dir + "/purchases.log"));
  int count = 0;
  for (std::string line; std::getline(lines, line);) {
    count += line.rfind(kind + " ", 0) == 0;
  }
  return count;
}

TEST(RunTrainerTest, RefusesAnInvalidSelectionBeforeJournalingIt) {
  // A strategy's answer is checked before its intent is journaled: an
  // invalid one (k-center's on NaN embeddings repeated ids) would otherwise
  // be refused by the oracle on every resume.
  const std::vector<int64_t> first = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  const struct {
    std::vector<std::vector<int64_t>> ids;
    std::string why;
  } cases[] = {
      {{{0, 1, 2, 3, 4, 5, 6, 7, 8, 8}}, "returned id 8 more than once"},
      {{{0, 1, 2, 3, 4, 5, 6, 7, 8, 300}},
       "returned id 300 which is not in the pool"},
      {{{0, 1, 2}}, "returned 3 ids, expected 10"},
      {{first, {9, 10, 11, 12, 13, 14, 15, 16, 17, 18}},
       "returned id 9 which is already labelled"},
  };
  int n = 0;
  for (const auto& c : cases) {
    FakeOracle oracle;
    if (!oracle.loaded()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
    TrainerOptions options =
        QuickRun(TempDir(absl::StrCat("invalid_selection", n++)));
    options.make_strategy = [&](const std::string&, const StrategyOptions&)
        -> absl::StatusOr<std::unique_ptr<SelectionStrategy>> {
      return std::make_unique<FixedStrategy>(c.ids);
    };
    const int round = static_cast<int>(c.ids.size()) - 1;
    EXPECT_THAT(RunTrainer(options, &oracle, nullptr),
                StatusIs(absl::StatusCode::kInternal,
                         AllOf(HasSubstr(absl::StrCat(
                                   "strategy fixed chose an invalid selection "
                                   "for round ",
                                   round)),
                               HasSubstr(c.why))))
        << c.why;
    EXPECT_EQ(oracle.queries(), round) << c.why;
    EXPECT_EQ(JournalLines(options, "intent"), round) << c.why;
  }
}

// Writes `text` as the journal of the run options describe.
void WriteJournal(const TrainerOptions& options, const std::string& text) {
  std::filesystem::create_directories(options.out_dir);
  std::ofstream(options.out_dir + "/purchases.log") << text;
}

TEST(RunTrainerTest, RefusesAPendingIntentThatDoesNotFitTheRunBeforeBuying) {
  // An unfinished purchase replayed on --resume must fit this run's pool and
  // schedule; one that does not is refused before the oracle is asked,
  // instead of charging labels and failing after.
  const struct {
    std::string journal;
    int64_t train_limit;
    std::vector<int64_t> schedule;
    std::string why;
  } cases[] = {
      {"intent 0 250,260,270,280,290,299\n", 200, {6, 14},
       "returned id 250 which is not in the pool"},
      {"intent 0 1,2,3,4,5,6\n", 300, {10, 10}, "returned 6 ids, expected 10"},
      {"intent 0 1,2,3,4,5,5,6,7,8,9\n", 300, {10, 10},
       "returned id 5 more than once"},
      {"bought 0 0:1,1:1,2:1,3:1,4:1,5:1,6:1,7:1,8:1,9:1\n"
       "intent 1 9,10,11,12,13,14,15,16,17,18\n",
       300, {10, 10}, "returned id 9 which is already labelled"},
      {"bought 0 0:1,1:1,2:1,3:1,4:1,5:1,6:1,7:1,8:1,9:1\n"
       "intent 0 10,11,12,13,14,15,16,17,18,19\n",
       300, {10, 10}, "round 0 is bought already"},
      {"intent 2 1,2,3,4,5,6,7,8,9,10\n", 300, {10, 10},
       "round 2, but this run has 2 rounds"},
  };
  int n = 0;
  for (const auto& c : cases) {
    FakeOracle oracle;
    if (!oracle.loaded()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
    TrainerOptions options = QuickRun(TempDir(absl::StrCat("bad_intent", n++)));
    options.train_limit = c.train_limit;
    options.schedule = c.schedule;
    options.resume = true;
    WriteJournal(options, c.journal);
    EXPECT_THAT(RunTrainer(options, &oracle, nullptr),
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         AllOf(HasSubstr("does not match this run's flags"),
                               HasSubstr(c.why))))
        << c.why;
    EXPECT_EQ(oracle.queries(), 0) << c.why;
    EXPECT_EQ(oracle.spent(), 0) << c.why;
  }
}

TEST(RunTrainerTest, ReplaysThePendingIntentOfAJournalWithoutHeader) {
  // A journal written before it had a run header is accepted with a
  // warning, and its unfinished purchase is bought with exactly its ids.
  FakeOracle oracle;
  if (!oracle.loaded()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  TrainerOptions options = QuickRun(TempDir("old_journal"));
  options.resume = true;
  WriteJournal(options, "intent 0 5,7,11,13,17,19,23,29,31,37\n");
  ::testing::internal::CaptureStderr();
  auto summary = RunTrainer(options, &oracle, nullptr);
  const std::string log = ::testing::internal::GetCapturedStderr();
  ASSERT_THAT(summary, IsOk());
  EXPECT_THAT(log, HasSubstr("has no run header"));
  ASSERT_EQ(oracle.queried().size(), 2u);
  EXPECT_THAT(oracle.queried()[0],
              ElementsAre(5, 7, 11, 13, 17, 19, 23, 29, 31, 37));
  EXPECT_EQ(summary->labels_spent, 20);
  EXPECT_EQ(JournalLines(options, "run"), 0);
}

TEST(RunTrainerTest, ResumeRefusesTheJournalOfAnotherRun) {
  // The journal names the run it belongs to; a resume with another
  // experiment, budget, schedule or pool is refused before the oracle is
  // asked, naming the flag.
  FakeOracle oracle;
  if (!oracle.loaded()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  TrainerOptions options = QuickRun(TempDir("other_run"));
  std::atomic<bool> stop{false};
  oracle.StopOnQuery(1, &stop);
  ASSERT_THAT(RunTrainer(options, &oracle, &stop),
              StatusIs(absl::StatusCode::kCancelled));
  EXPECT_EQ(JournalLines(options, "run"), 1);
  options.resume = true;
  std::vector<std::pair<TrainerOptions, std::string>> others;
  others.emplace_back(options, "--experiment");
  others.back().first.experiment = "other";
  others.emplace_back(options, "--budget");
  others.back().first.label_budget = 30;
  others.back().first.schedule = {10, 20};
  others.emplace_back(options, "--schedule");
  others.back().first.schedule = {5, 15};
  others.emplace_back(options, "--train_limit");
  others.back().first.train_limit = 250;
  for (const auto& [other, flag] : others) {
    FakeOracle fresh;
    EXPECT_THAT(RunTrainer(other, &fresh, nullptr),
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         HasSubstr(flag)))
        << flag;
    EXPECT_EQ(fresh.queries(), 0) << flag;
  }
  std::atomic<bool> go{false};
  auto summary = RunTrainer(options, &oracle, &go);
  ASSERT_THAT(summary, IsOk());
  EXPECT_EQ(summary->labels_spent, 20);
  EXPECT_EQ(JournalLines(options, "run"), 1);
}

TEST(RunTrainerTest, BuysARoundLargerThanOneQueryInChunks) {
  // Rounds of 10 labels from an oracle that answers at most 4 ids a call:
  // 4 + 4 + 2 ids per round, one journaled intent and purchase each, every
  // label matched to its id.
  FakeOracle oracle;
  if (!oracle.loaded()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  oracle.set_max_batch(4);
  TrainerOptions options = QuickRun(TempDir("chunks"));
  options.ids_per_query = 4;
  auto summary = RunTrainer(options, &oracle, nullptr);
  ASSERT_THAT(summary, IsOk());
  EXPECT_EQ(summary->labels_spent, 20);
  std::vector<size_t> sizes;
  std::vector<int64_t> queried;
  for (const std::vector<int64_t>& ids : oracle.queried()) {
    sizes.push_back(ids.size());
    queried.insert(queried.end(), ids.begin(), ids.end());
  }
  EXPECT_THAT(sizes, ElementsAre(4, 4, 2, 4, 4, 2));
  EXPECT_EQ(JournalLines(options, "intent"), 2);
  EXPECT_EQ(JournalLines(options, "bought"), 2);
  auto history =
      ParsePurchaseJournal(ReadFile(options.out_dir + "/purchases.log"));
  ASSERT_THAT(history, IsOk());
  ASSERT_EQ(history->bought.size(), 20u);
  for (size_t i = 0; i < history->bought.size(); ++i) {
    EXPECT_EQ(history->bought[i].id, queried[i]);
    EXPECT_EQ(history->bought[i].label, oracle.label(queried[i]));
  }
}

TEST(RunTrainerTest, ResumeAfterAPartialPurchaseBuysNothingTwice) {
  // The oracle fails the second of round 0's three calls, after the first
  // was charged: the resume replays the whole intent, paying only for what
  // was not revealed yet.
  FakeOracle oracle;
  if (!oracle.loaded()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  oracle.set_max_batch(4);
  oracle.FailOnCall(2);
  TrainerOptions options = QuickRun(TempDir("partial"));
  options.ids_per_query = 4;
  EXPECT_THAT(RunTrainer(options, &oracle, nullptr),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(oracle.spent(), 4);
  EXPECT_EQ(JournalLines(options, "bought"), 0);
  options.resume = true;
  auto summary = RunTrainer(options, &oracle, nullptr);
  ASSERT_THAT(summary, IsOk());
  EXPECT_EQ(summary->labels_spent, 20);
  ASSERT_EQ(oracle.queried().size(), 7u);
  EXPECT_EQ(oracle.queried()[1], oracle.queried()[0]);  // bought again, free
  // Round 0's intent, journaled again by the replay, then round 1's.
  EXPECT_EQ(JournalLines(options, "intent"), 3);
  EXPECT_EQ(JournalLines(options, "bought"), 2);
}

TEST(RunTrainerTest, StopWhileRetryingAPurchaseLeavesItsIntentForResume) {
  // A signal arrives after the first of round 0's three calls; the client,
  // waiting to retry the second, answers CANCELLED. The intent stays
  // journaled and the resume replays it, paying only for the rest.
  FakeOracle oracle;
  if (!oracle.loaded()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  oracle.set_max_batch(4);
  std::atomic<bool> stop{false};
  oracle.StopOnQuery(1, &stop);
  oracle.FailOnCall(
      2, absl::CancelledError("stopped while waiting for the oracle at h:1 "
                              "after 2 attempts: down"));
  TrainerOptions options = QuickRun(TempDir("stop-retry"));
  options.ids_per_query = 4;
  EXPECT_THAT(RunTrainer(options, &oracle, &stop),
              StatusIs(absl::StatusCode::kCancelled,
                       HasSubstr("stopped while waiting for the oracle")));
  EXPECT_EQ(oracle.spent(), 4);
  EXPECT_EQ(JournalLines(options, "intent"), 1);
  EXPECT_EQ(JournalLines(options, "bought"), 0);
  options.resume = true;
  std::atomic<bool> go{false};
  auto summary = RunTrainer(options, &oracle, &go);
  ASSERT_THAT(summary, IsOk());
  EXPECT_EQ(summary->labels_spent, 20);
  ASSERT_EQ(oracle.queried().size(), 7u);
  EXPECT_EQ(oracle.queried()[1], oracle.queried()[0]);  // bought again, free
  EXPECT_EQ(JournalLines(options, "intent"), 3);
  EXPECT_EQ(JournalLines(options, "bought"), 2);
}

TEST(PlanRoundsTest, DefaultScheduleSplitsBudgetFortyThirtyThirty) {
  TrainerOptions options;
  options.label_budget = 100;
  options.total_steps = 20000;
  auto plan = PlanRounds(options);
  ASSERT_THAT(plan, IsOk());
  EXPECT_THAT(plan->labels, ElementsAre(40, 30, 30));
  EXPECT_THAT(plan->end_step, ElementsAre(3000, 6000, 20000));
}

TEST(PlanRoundsTest, ExplicitScheduleAndSteps) {
  TrainerOptions options;
  options.label_budget = 12;
  options.schedule = {6, 6};
  options.total_steps = 10;
  options.round_steps = {4, 6};
  auto plan = PlanRounds(options);
  ASSERT_THAT(plan, IsOk());
  EXPECT_THAT(plan->labels, ElementsAre(6, 6));
  EXPECT_THAT(plan->end_step, ElementsAre(4, 10));
}

TEST(PlanRoundsTest, SmallBudgetDropsEmptyRounds) {
  TrainerOptions options;
  options.label_budget = 2;
  options.total_steps = 100;
  auto plan = PlanRounds(options);
  ASSERT_THAT(plan, IsOk());
  EXPECT_THAT(plan->labels, ElementsAre(2));
  EXPECT_THAT(plan->end_step, ElementsAre(100));
}

TEST(PlanRoundsTest, ScheduleMustSumToBudget) {
  TrainerOptions options;
  options.label_budget = 100;
  options.schedule = {40, 30};
  EXPECT_THAT(PlanRounds(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("sums to 70, not the label budget 100")));
}

TEST(PlanRoundsTest, RoundStepsMustMatchRoundsAndTotal) {
  TrainerOptions options;
  options.label_budget = 10;
  options.schedule = {5, 5};
  options.total_steps = 10;
  options.round_steps = {10};
  EXPECT_THAT(PlanRounds(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("1 entries for 2 rounds")));
  options.round_steps = {5, 6};
  EXPECT_THAT(PlanRounds(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("sum to 11, not total_steps 10")));
}

TEST(PlanRoundsTest, EntriesLargerThanTheTotalAreRejectedNotWrapped) {
  // Two entries of 2^63 - 1 and 102 wrap around to 100 in int64 arithmetic.
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  TrainerOptions options;
  options.label_budget = 30;
  options.schedule = {10, 10, 10};
  options.total_steps = 100;
  options.round_steps = {kMax, kMax, 102};
  EXPECT_THAT(PlanRounds(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "round_steps entry 9223372036854775807 is more than "
                       "total_steps 100"));
  options.round_steps = {50, 50, 1};
  EXPECT_THAT(PlanRounds(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("sum to 101, not total_steps 100")));
  options.round_steps = {30, 30, 40};
  options.label_budget = 100;
  options.schedule = {kMax, kMax, 102};
  EXPECT_THAT(PlanRounds(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "schedule entry 9223372036854775807 is more than the "
                       "label budget 100"));
  // Entries within the total can still overflow together.
  options.label_budget = kMax;
  options.schedule = {kMax, kMax, 1};
  EXPECT_THAT(PlanRounds(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("sums to more than the label budget")));
  options.label_budget = 100;
  options.schedule = {40, 30, 30};
  options.total_steps = kMax;
  options.round_steps = {kMax, kMax, 1};
  EXPECT_THAT(PlanRounds(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("sum to more than total_steps")));
}

TEST(PlanRoundsTest, DistillStepsMustNotBeNegative) {
  TrainerOptions options;
  options.distill_steps = -1;
  EXPECT_THAT(PlanRounds(options),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(PlanRoundsTest, DistillEnsembleNeedsADistillationStage) {
  TrainerOptions options;
  options.distill_ensemble = true;
  EXPECT_THAT(PlanRounds(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("distill_steps > 0")));
  options.distill_steps = 10;
  EXPECT_THAT(PlanRounds(options), IsOk());
}

TEST(PlanRoundsTest, TooFewStepsForEarlyRounds) {
  TrainerOptions options;
  options.label_budget = 100;
  options.total_steps = 5;
  EXPECT_THAT(PlanRounds(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("at least one step")));
}

TEST(ResolveDeviceTest, CpuAndBadSpecs) {
  auto cpu = ResolveDevice("cpu");
  ASSERT_THAT(cpu, IsOk());
  EXPECT_EQ(*cpu, "cpu");
  EXPECT_THAT(ResolveDevice("abacus"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace trainer
