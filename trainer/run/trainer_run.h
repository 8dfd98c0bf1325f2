// One active-learning run, a plan of stages:
//   [pretrain] -> rounds { select, buy, train } -> [distill]
// An optional self-supervised stage learns features from the unlabelled pool
// (trainer/pretrain/); each round then chooses ids on the current features,
// buys their labels from the oracle and trains with a semi-supervised
// objective (trainer/objectives/) on the Learner engine (trainer/learn/),
// scored on the hidden test set through the oracle.
//
// The run reads only image files. Every label comes from OracleClient, every
// purchase is checked and journaled before and after the oracle calls
// (purchase_journal.h) and the model is checkpointed, so a run stopped at any
// moment resumes without buying anything twice.
#ifndef TRAINER_RUN_TRAINER_RUN_H_
#define TRAINER_RUN_TRAINER_RUN_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "trainer/learn/learner.h"
#include "trainer/learn/model.h"
#include "trainer/objectives/registry.h"
#include "trainer/pretrain/pretrain_stage.h"
#include "trainer/rpc/oracle_client.h"
#include "trainer/select/selection_strategy.h"

namespace trainer {

// TrainerOptions::ids_per_query's default.
inline constexpr int64_t kMaxIdsPerQuery = 1000;

struct TrainerOptions {
  // Oracle experiment to create or join, and its secret token (may be empty).
  std::string experiment = "fashion-mnist";
  std::string experiment_token;
  // Labels the run may buy in total (the experiment's budget).
  int64_t label_budget = 100;
  // Labels bought at the start of each round; must sum to label_budget.
  // Empty: 40 %, 30 %, 30 % of the budget in three rounds.
  std::vector<int64_t> schedule;
  // Training steps in the whole run (the cosine schedule's length).
  int64_t total_steps = 40000;
  // Training steps after each round's purchase, one entry per round, summing
  // to total_steps. Empty: every round but the last trains
  // total_steps * early_round_fraction, the last trains the rest.
  std::vector<int64_t> round_steps;
  double early_round_fraction = 0.15;
  // Selection strategy spec (see MakeSelectionStrategy).
  std::string strategy = "typiclust";
  StrategyOptions strategy_options;
  // Makes the strategy from the two above (tests substitute a fake one).
  // Whatever it selects is checked before it is journaled or bought.
  std::function<absl::StatusOr<std::unique_ptr<SelectionStrategy>>(
      const std::string& spec, const StrategyOptions& options)>
      make_strategy = MakeSelectionStrategy;
  // Dimensions of the label-free (PCA) features used before any model is
  // trained.
  int label_free_dims = 64;
  // Folder with the IDX image files (label files there are never opened).
  std::string data_dir = "/usr/share/datasets/fashion-mnist";
  // Use only the first N training images as the pool (0: all 60,000).
  int64_t train_limit = 0;
  // Output folder: journal, checkpoint, metrics, reports.
  std::string out_dir = "runs/latest";
  // Continue the run in out_dir instead of starting a new one.
  bool resume = false;
  // Evaluate on the test set every N steps (0: only at the end of rounds).
  int64_t eval_every = 2000;
  // Write metrics.jsonl and refresh the progress line every N steps.
  int64_t log_every = 50;
  // Checkpoint every N steps (0: only at round ends and on stop).
  int64_t checkpoint_every = 1000;
  // Wall-clock limit on training, counted from the start of the run (0: none).
  // Without fit_to_time, once reached, every remaining round still buys its
  // labels but trains no further; the run then evaluates and writes its
  // report as usual.
  double max_train_seconds = 0;
  // With max_train_seconds: fit the training steps to it instead of being
  // cut off. While training, the run measures its steps/s over the last
  // few seconds and, when its remaining steps would not fit before the
  // limit (less the time the remaining rounds' selection and evaluation
  // took so far), scales the rounds not yet finished down together (or
  // back up, never beyond total_steps), and the learning-rate schedule
  // with them, so every round trains and the schedule reaches its end. The
  // limit is then a target rather than a cut-off: each round trains at
  // least one step, and a round's first steps run before its rate is known,
  // so training can end a few seconds late. The steps taken depend on the
  // machine's speed. A resumed run keeps the round ends and learning-rate
  // schedule its checkpoint was fitted to (so no round trains twice) and
  // times the rest afresh, the limit counting from the resume.
  bool fit_to_time = true;
  // The clock the time limit, the time fit and the report's wall time read
  // (tests substitute a fake one).
  std::function<absl::Time()> clock = absl::Now;
  // "auto" (CUDA when available), "cpu" or "cuda[:index]".
  std::string device = "auto";
  // Seeds model initialisation, batches, augmentation and selection.
  uint64_t seed = 0;
  // Who asks, recorded by the oracle with every query.
  std::string client_name = "trainer";
  // Most ids one QueryLabels call asks for: a larger purchase is bought in
  // calls of at most this many ids under its one journaled intent (the
  // oracle refuses calls over its --max_batch, 10,000 by default).
  int64_t ids_per_query = kMaxIdsPerQuery;
  ModelOptions model;
  // The engine's options; total_steps and seed are set from the above.
  LearnerOptions learner;
  // The semi-supervised objective of the rounds (name: fixmatch, flexmatch,
  // freematch, softmatch).
  ObjectiveOptions objective;
  // The self-supervised stage before the first purchase (method none:
  // skipped). Its weights start every round's model and its embedding is
  // what the first selection sees (instead of PCA features).
  PretrainOptions pretrain;
  // Restart the semi-supervised stage after each purchase: a fresh model
  // from the initial weights (pretrained or the seeded initialisation) with
  // a cosine schedule over that round's steps, instead of continuing a model
  // whose pseudo-labels have locked in. Every label is kept.
  bool restart_rounds = false;
  // After the last round, a distillation stage of this many steps (0: none):
  // the final model becomes a fixed teacher, and a fresh model from the
  // initial weights trains with the same objective and labels, its
  // pseudo-labels blended with the teacher's probabilities of the pool
  // images (the objective's SemiSupervisedOptions::teacher_weight). The
  // student is what the run reports; the stage buys nothing. With a time fit
  // the rounds aim at max_train_seconds * total_steps / (total_steps +
  // distill_steps) and the stage's steps are fitted to what is left.
  int64_t distill_steps = 0;
  // With distill_steps > 0: the run reports the mean of the teacher's and
  // the student's class probabilities of the test images (each as Evaluate
  // scores them) instead of the student's alone, a two-model ensemble. The
  // student alone is scored too (one more oracle evaluation) and logged.
  bool distill_ensemble = false;
  // Every learner's classifier layer starts as the nearest class mean of
  // the labels bought so far on that learner's starting embedding
  // (FitPrototypeHead: its EMA model, as Evaluate predicts) instead of its
  // untrained initialisation: in the first round, in each restarted round
  // and for the distillation student. A resumed run that had trained keeps
  // its checkpoint's layer.
  bool prototype_head = false;
  // Every round selects on the embedding the first round sees (the
  // pretrained model's, or the PCA features without pretraining), as
  // TypiClust and ProbCover do with their self-supervised features, instead
  // of on the current model's embedding, which its own pseudo-labels have
  // shaped. The class probabilities that margin and typiclust_balanced read
  // still come from the current model. A resumed run computes the embedding
  // again from the initial weights.
  bool select_on_initial_embedding = false;
  // Before the EMA model predicts (evaluation, selection, feature quality),
  // re-estimate its BatchNorm statistics on clean pool images.
  bool recalibrate_bn = false;
  // Score the test set on the mean of the EMA model's probabilities for
  // each image and its horizontal mirror (test-time augmentation; training
  // flips images too). Costs one more forward pass over the test images, no
  // more oracle evaluations.
  bool eval_flip = false;
  // After the first purchase and after each round, score a k-nearest-
  // neighbour classifier on the bought labels' embeddings (and on PCA
  // features) through the oracle (two evaluations each time).
  bool feature_quality = true;
  int knn_k = 20;
};

// What a finished run reports.
struct RunSummary {
  double accuracy = 0;       // final test accuracy (EMA model)
  int64_t labels_spent = 0;  // as the oracle counts them
  int64_t label_budget = 0;
  int64_t steps = 0;
  double steps_per_s = 0;  // semi-supervised training steps only
  double wall_time_s = 0;
  std::string device;
  std::string report_path;  // report.html
};

// Runs (or, with options.resume, continues) the run. `oracle` must outlive
// the call. `stop`, if non-null, is polled between steps: once true the run
// checkpoints and returns CANCELLED. Returns INVALID_ARGUMENT for
// inconsistent options; FAILED_PRECONDITION, before asking the oracle
// anything, if out_dir already holds a run and resume is false, or resume is
// true and out_dir's journal names another experiment, budget, schedule or
// pool, or holds an unfinished purchase this run could not have made;
// INTERNAL if the strategy selects ids that are repeated, outside the pool,
// already bought or not as many as asked (nothing is journaled or bought);
// and the oracle's or LibTorch's errors otherwise.
absl::StatusOr<RunSummary> RunTrainer(const TrainerOptions& options,
                                      OracleClient* oracle,
                                      const std::atomic<bool>* stop);

// The device `spec` ("auto", "cpu", "cuda[:N]") resolves to, as text
// ("cpu", "cuda:0"). UNAVAILABLE if CUDA is asked for but absent,
// INVALID_ARGUMENT for a malformed spec.
absl::StatusOr<std::string> ResolveDevice(const std::string& spec);

// The per-round purchase and step plan derived from options (exposed for
// tests). Returns INVALID_ARGUMENT naming the option when they do not add up
// (an entry above its total, or sums beyond int64, included) or distill_steps
// is negative.
struct RoundPlan {
  std::vector<int64_t> labels;    // bought at the start of round r
  std::vector<int64_t> end_step;  // cumulative steps at the end of round r
};
absl::StatusOr<RoundPlan> PlanRounds(const TrainerOptions& options);

}  // namespace trainer

#endif  // TRAINER_RUN_TRAINER_RUN_H_
