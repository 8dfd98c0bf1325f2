// trainer: semi-supervised active learning that buys every label from the
// oracle: [self-supervised pretraining] -> rounds {select, buy, train}.
//
//   trainer --oracle=localhost:50051 --budget=100 --strategy=typiclust \
//           --out_dir=runs/typiclust-100
//
// Reads only the image files; prints a live progress line, writes
// metrics.jsonl, rounds.csv, report.json and report.html under --out_dir.
// SIGINT/SIGTERM checkpoint the run; --resume continues it.
#include <csignal>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "trainer/learn/augment.h"
#include "trainer/learn/cpu_threads.h"
#include "trainer/learn/host_memory.h"
#include "trainer/rpc/oracle_client.h"
#include "trainer/run/trainer_run.h"

ABSL_FLAG(std::string, oracle, "localhost:50051",
          "host:port of the label oracle");
ABSL_FLAG(std::string, experiment, "",
          "oracle experiment (default: fmnist-<strategy>-<budget>-s<seed>)");
ABSL_FLAG(std::string, token, "", "secret token of the experiment (optional)");
ABSL_FLAG(std::string, token_file, "",
          "file holding the experiment's token (as written by oraclectl "
          "create); instead of --token");
ABSL_FLAG(std::string, tls_ca, "",
          "CA certificates (PEM) to verify the oracle's TLS certificate; TLS "
          "is used if any --tls_* flag is set");
ABSL_FLAG(std::string, tls_cert, "",
          "client certificate (PEM) for an oracle that requires mutual TLS");
ABSL_FLAG(std::string, tls_key, "", "private key of --tls_cert (PEM)");
ABSL_FLAG(int64_t, budget, 100, "labels the run may buy in total");
ABSL_FLAG(std::string, schedule, "",
          "labels bought per round, e.g. 40,30,30 (default: 40%,30%,30% of "
          "--budget)");
ABSL_FLAG(int64_t, steps, 40000, "training steps in the whole run");
ABSL_FLAG(std::string, round_steps, "",
          "steps after each round's purchase, e.g. 3000,3000,14000 (default: "
          "15% for early rounds)");
ABSL_FLAG(std::string, strategy, "typiclust",
          trainer::kSelectionStrategySpecs);
ABSL_FLAG(std::string, data_dir, "/usr/share/datasets/fashion-mnist",
          "folder with the IDX image files");
ABSL_FLAG(int64_t, train_limit, 0,
          "use only the first N training images as the pool (0: all)");
ABSL_FLAG(std::string, out_dir, "",
          "output folder (default: runs/<experiment>)");
ABSL_FLAG(bool, resume, false, "continue the run in --out_dir");
ABSL_FLAG(int64_t, eval_every, 2000,
          "evaluate on the test set every N steps (0: at round ends only)");
ABSL_FLAG(int64_t, log_every, 50, "metrics and progress every N steps");
ABSL_FLAG(int64_t, checkpoint_every, 1000,
          "checkpoint every N steps (0: round ends and stop only)");
ABSL_FLAG(double, max_train_seconds, 0,
          "training ends this many seconds into the run, then the run "
          "evaluates and reports (0: no limit); see --fit_to_time");
ABSL_FLAG(bool, fit_to_time, true,
          "with --max_train_seconds: shrink the remaining rounds' steps (and "
          "the learning-rate schedule) to the measured steps/s so that every "
          "round trains and the schedule ends in time, instead of cutting "
          "training off at the limit");
ABSL_FLAG(std::string, device, "auto", "auto | cpu | cuda[:N]");
ABSL_FLAG(int, cpu_threads, 0,
          "threads for LibTorch's CPU work; 0: OMP_NUM_THREADS if set, else "
          "every CPU this process may run on (affinity and cgroup quota)");
ABSL_FLAG(bool, retain_freed_memory, true,
          "keep host memory that LibTorch frees in the process for reuse "
          "(glibc malloc's mmap and trim thresholds raised to 1 GiB) instead "
          "of returning it to the kernel and faulting it in again; "
          "MALLOC_*_ variables or GLIBC_TUNABLES malloc settings take "
          "precedence");
ABSL_FLAG(uint64_t, seed, 0,
          "seed of initialisation, batches, augmentation, selection");
ABSL_FLAG(std::string, client, "trainer", "client name recorded by the oracle");
ABSL_FLAG(int32_t, label_free_dims, 64, "PCA dimensions of the features used before any model is trained");
ABSL_FLAG(std::string, arch, "cnn", "cnn | wrn28_2");
ABSL_FLAG(int32_t, width, 64, "base width of the cnn");
ABSL_FLAG(int32_t, batch, 64, "labelled images per step (B)");
ABSL_FLAG(int32_t, mu, 7, "unlabelled images per labelled image (mu)");
ABSL_FLAG(double, threshold, 0.95,
          "pseudo-label confidence threshold (tau); flexmatch: the threshold "
          "that class thresholds scale down from");
ABSL_FLAG(double, lambda_u, 1.0, "weight of the unlabelled loss");
ABSL_FLAG(bool, distribution_alignment, false,
          "align the weak views' probabilities to a uniform class prior "
          "before pseudo-labelling (ReMixMatch's distribution alignment)");
ABSL_FLAG(double, alignment_momentum, 0.999,
          "EMA momentum of the model's mean prediction for "
          "--distribution_alignment");
ABSL_FLAG(double, lr, 0.03, "peak learning rate");
ABSL_FLAG(double, weight_decay, 5e-4,
          "weight decay of the rounds and distillation (not on batch-norm "
          "and biases); pretraining keeps its own 5e-4");
ABSL_FLAG(double, ema, 0.999, "EMA decay of the evaluation weights");
ABSL_FLAG(std::string, weak_forward, "joint",
          "where the weak views' pseudo-labels come from: joint (one forward "
          "with the labelled and strong images), separate (the model's own "
          "no-grad forward: about 30 % less compute) or ema (the EMA model)");
ABSL_FLAG(bool, bf16, true, "bf16 autocast on CUDA");
ABSL_FLAG(bool, cuda_graph, true,
          "on CUDA, capture each FixMatch step in a CUDA graph and replay it");
ABSL_FLAG(std::string, init, "kaiming",
          "weight initialisation: kaiming | default (PyTorch's)");
ABSL_FLAG(std::string, weak_fill, "reflect",
          "what the weak augmentation's shift fills the border with: "
          "reflect | zeros");
ABSL_FLAG(int32_t, strong_ops, 2,
          "RandAugment ops per strong view (0 to the number of ops "
          "--strong_op_list allows: 13 for all)");
ABSL_FLAG(std::string, strong_op_list, "all",
          "RandAugment ops the strong views choose --strong_ops among: all "
          "(default) or names separated by commas from identity, "
          "autocontrast, equalize, solarize, posterize, contrast, brightness, "
          "sharpness, rotate, shear_x, shear_y, translate_x, translate_y "
          "(USB's RandAugment without colour ops, used for MedMNIST, leaves "
          "out autocontrast, contrast, posterize and solarize)");
ABSL_FLAG(double, strong_enhance_min, 0.05,
          "smallest enhance factor of the strong views' contrast, brightness "
          "and sharpness ops (1 is identity): the FixMatch paper's and USB's "
          "0.05-0.95 by default (+0.70 points over six CPU seeds at 4,000 "
          "steps, a tie at 8,000, against AutoAugment's 0.1-1.9, used "
          "before 2026-12-07: docs/BENCHMARKS.md, \"RandAugment's enhance "
          "range\")");
ABSL_FLAG(double, strong_enhance_max, 0.95,
          "largest enhance factor of the strong views' contrast, brightness "
          "and sharpness ops (see --strong_enhance_min)");
ABSL_FLAG(double, cutout, 0.5,
          "largest Cutout square of a strong view, as a fraction of the side "
          "(0: none)");
ABSL_FLAG(std::string, objective, "fixmatch",
          "semi-supervised objective of the rounds: fixmatch | flexmatch | "
          "freematch | softmatch");
ABSL_FLAG(double, lambda_f, 0.001, "freematch: weight of the fairness term");
ABSL_FLAG(double, threshold_momentum, 0.999,
          "freematch, softmatch: EMA momentum of the self-adaptive "
          "threshold's (softmatch: the weights' and uniform alignment's) "
          "state (its time constant is about 1 / (1 - momentum) steps)");
ABSL_FLAG(double, n_sigma, 2.0,
          "softmatch: an image's weight has fallen to exp(-1/2) at "
          "sigma / n_sigma below the mean confidence (sigma: its standard "
          "deviation); larger is harsher");
ABSL_FLAG(bool, uniform_alignment, true,
          "softmatch: weigh by the confidence after alignment to a uniform "
          "class prior (the pseudo-labels stay unaligned)");
ABSL_FLAG(double, lambda_c, 0.0,
          "weight of CoMatch's graph-contrastive term on the weak and strong "
          "views (0: off)");
ABSL_FLAG(double, contrast_temperature, 0.2,
          "softmax temperature of the graph-contrastive term");
ABSL_FLAG(double, contrast_threshold, 0.8,
          "pseudo-label agreement p_i . p_j above which two images are "
          "neighbours in the graph-contrastive term");
ABSL_FLAG(int64_t, contrast_memory, 0,
          "with --lambda_c: entries of CoMatch's pseudo-label memory (recent "
          "weak views with their pseudo-labels and labelled images with "
          "their labels) over which pseudo-labels are smoothed; at least "
          "(mu + 1) * batch (CoMatch: 2560); 0: no smoothing");
ABSL_FLAG(double, smoothing_alpha, 0.9,
          "with --contrast_memory: weight of an image's own pseudo-label "
          "distribution against its neighbours' in the memory");
ABSL_FLAG(bool, contrast_two_strong, false,
          "with --lambda_c: contrast two strong views of each unlabelled "
          "image (USB's CoMatch) instead of the strong with the weak "
          "view; mu * batch more images per step");
ABSL_FLAG(bool, pseudo_head, false,
          "Debiased Self-Training's decoupled pseudo head: the pseudo-labels "
          "train a separate MLP head on the strong views' embeddings instead "
          "of the classifier, which then learns from the labels only");
ABSL_FLAG(bool, soft_targets, false,
          "train the strong views towards the whole pseudo-label distribution "
          "(CoMatch's soft targets) instead of its argmax");
ABSL_FLAG(bool, strong_labelled, false,
          "AdaMatch's labelled strong views: the supervised loss also trains "
          "a strongly augmented view of each labelled image");
ABSL_FLAG(int32_t, pseudo_label_views, 1,
          "weak views whose class probabilities each pseudo-label averages "
          "(MixMatch's K; 1-8): the extra ones are fresh weak augmentations "
          "forwarded without gradient");
ABSL_FLAG(double, mixup_alpha, 0.0,
          "mixup of the labelled batch: each labelled image's weak view is "
          "also mixed with a random partner's, lambda = max(l, 1 - l), "
          "l ~ Beta(alpha, alpha), and trains towards both targets by "
          "lambda; 0 is off (MixMatch used 0.75)");
ABSL_FLAG(bool, mixup_unlabelled, false,
          "mixup of the pseudo-labelled batch too (needs --mixup_alpha > 0): "
          "each unlabelled image's weak view is also mixed with another's "
          "and trains towards both pseudo-labels by its share, each under "
          "its image's mask");
ABSL_FLAG(std::string, pretrain, "none",
          "self-supervised pretraining on the unlabelled pool: none | simclr "
          "| byol");
ABSL_FLAG(int64_t, pretrain_steps, 2000, "pretraining steps");
ABSL_FLAG(int32_t, pretrain_batch, 256, "pretraining images per step");
ABSL_FLAG(double, pretrain_temperature, 0.2, "simclr: NT-Xent temperature");
ABSL_FLAG(double, pretrain_target_decay, 0.99,
          "byol: EMA decay of the target network, in [0, 1)");
ABSL_FLAG(double, pretrain_lr, 0.06, "pretraining peak learning rate");
ABSL_FLAG(double, pretrain_crop_scale, 0.2,
          "smallest area fraction a SimCLR or BYOL view's random resized crop "
          "keeps (0 < s <= 1)");
ABSL_FLAG(int32_t, pretrain_local_crops, 0,
          "simclr: SwAV's multi-crop, this many extra low-resolution views of "
          "each image besides the two full-size ones (0: off)");
ABSL_FLAG(int64_t, pretrain_local_crop_size, 16,
          "simclr: side in pixels of a local crop's view");
ABSL_FLAG(double, pretrain_local_crop_scale, 0.1,
          "simclr: smallest area fraction a local crop keeps (largest 0.4)");
ABSL_FLAG(std::string, pretrain_colour, "pixel_ops",
          "how a SimCLR or BYOL view's pixels are distorted after the crop: "
          "pixel_ops (two of identity, autocontrast, equalize, solarize, "
          "posterize, contrast, brightness, sharpness) | jitter (SimCLR's "
          "colour jitter on grayscale: brightness and contrast with "
          "probability 0.8)");
ABSL_FLAG(double, pretrain_jitter_strength, 0.4,
          "jitter: brightness and contrast factors are drawn from "
          "[1 - s, 1 + s] (SimCLR's 0.8 x its strength; 0.4 is its CIFAR-10 "
          "setting), s in [0, 1]");
ABSL_FLAG(std::string, pretrain_cache, "runs/pretrain-cache",
          "folder of pretrained checkpoints, reused across runs with the "
          "same pool, model, settings and seed");
ABSL_FLAG(bool, restart_rounds, false,
          "after each purchase, restart training from the initial weights "
          "with a fresh schedule over that round's steps");
ABSL_FLAG(bool, prototype_head, false,
          "start each model's classifier layer as the nearest class mean of "
          "the labels bought so far on its starting embedding, instead of "
          "untrained");
ABSL_FLAG(int64_t, distill_steps, 0,
          "after the last round, train a fresh model from the initial weights "
          "for this many steps on pseudo-labels blended with the final "
          "model's (a fixed teacher) and report it instead (0: no "
          "distillation)");
ABSL_FLAG(double, teacher_weight, 1.0,
          "with --distill_steps: weight of the teacher's probabilities in the "
          "student's pseudo-labels, against its own (1: the teacher's alone)");
ABSL_FLAG(bool, distill_ensemble, false,
          "with --distill_steps: report the mean of the teacher's and the "
          "student's test probabilities instead of the student's alone");
ABSL_FLAG(bool, recalibrate_bn, false,
          "re-estimate the EMA model's batch-norm statistics on clean pool "
          "images before it predicts");
ABSL_FLAG(bool, select_on_initial_embedding, false,
          "every round selects on the embedding the first round saw (the "
          "pretrained model's, or PCA features without pretraining), as "
          "TypiClust does, instead of the current model's");
ABSL_FLAG(bool, eval_flip, false,
          "score the test set on the mean prediction of each image and its "
          "horizontal mirror");
ABSL_FLAG(bool, feature_quality, true,
          "score a kNN classifier on the bought labels' embeddings and on "
          "PCA features after the first purchase and each round (2 oracle "
          "evaluations each)");
ABSL_FLAG(int32_t, knn_k, 20, "neighbours of the feature-quality kNN");
ABSL_FLAG(bool, print_device, false,
          "print the device --device resolves to (cpu or cuda) and exit");

namespace {

std::atomic<bool> g_stop{false};

void OnSignal(int) { g_stop.store(true); }

bool ParseList(const std::string& text, std::vector<int64_t>* out) {
  out->clear();
  if (text.empty()) return true;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    int64_t value = 0;
    if (!absl::SimpleAtoi(item, &value)) return false;
    out->push_back(value);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Semi-supervised active learning; every label is bought from the "
      "oracle.\n"
      "  trainer --oracle=localhost:50051 --budget=100 --strategy=typiclust");
  absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_print_device)) {
    auto device = trainer::ResolveDevice(absl::GetFlag(FLAGS_device));
    if (!device.ok()) {
      std::cerr << "trainer: " << device.status() << "\n";
      return 2;
    }
    std::cout << *device << "\n";
    return 0;
  }
  absl::StatusOr<trainer::CpuThreads> threads =
      trainer::SetCpuThreads(absl::GetFlag(FLAGS_cpu_threads));
  if (!threads.ok()) {
    std::cerr << "trainer: " << threads.status() << "\n";
    return 2;
  }
  std::cerr << "trainer: " << threads->threads << " CPU thread"
            << (threads->threads == 1 ? "" : "s") << " (" << threads->source
            << ")";
  if (threads->threads > 1) {
    std::cerr << "; " << trainer::DescribeOpenMpWaiting();
  }
  std::cerr << "\n";
  if (absl::GetFlag(FLAGS_retain_freed_memory)) {
    absl::StatusOr<std::string> memory = trainer::RetainFreedHostMemory();
    std::cerr << "trainer: host memory: "
              << (memory.ok() ? *memory : memory.status().ToString()) << "\n";
  }

  trainer::TrainerOptions options;
  options.strategy = absl::GetFlag(FLAGS_strategy);
  options.strategy_options.stop_requested = [] { return g_stop.load(); };
  options.label_budget = absl::GetFlag(FLAGS_budget);
  options.seed = absl::GetFlag(FLAGS_seed);
  options.experiment = absl::GetFlag(FLAGS_experiment);
  if (options.experiment.empty()) {
    std::string strategy = options.strategy;
    if (strategy.rfind("grpc://", 0) == 0) strategy = "grpc";
    options.experiment = absl::StrFormat("fmnist-%s-%d-s%d", strategy,
                                         options.label_budget, options.seed);
  }
  options.experiment_token = absl::GetFlag(FLAGS_token);
  if (!absl::GetFlag(FLAGS_token_file).empty()) {
    std::ifstream in(absl::GetFlag(FLAGS_token_file));
    std::string token;
    if (!(in >> token)) {
      std::cerr << "trainer: cannot read a token from --token_file="
                << absl::GetFlag(FLAGS_token_file) << "\n";
      return 2;
    }
    options.experiment_token = token;
  }
  if (!ParseList(absl::GetFlag(FLAGS_schedule), &options.schedule) ||
      !ParseList(absl::GetFlag(FLAGS_round_steps), &options.round_steps)) {
    std::cerr << "trainer: --schedule and --round_steps take comma-separated "
                 "integers\n";
    return 2;
  }
  options.total_steps = absl::GetFlag(FLAGS_steps);
  options.data_dir = absl::GetFlag(FLAGS_data_dir);
  options.train_limit = absl::GetFlag(FLAGS_train_limit);
  options.out_dir = absl::GetFlag(FLAGS_out_dir);
  if (options.out_dir.empty()) options.out_dir = "runs/" + options.experiment;
  options.resume = absl::GetFlag(FLAGS_resume);
  options.eval_every = absl::GetFlag(FLAGS_eval_every);
  options.log_every = absl::GetFlag(FLAGS_log_every);
  options.checkpoint_every = absl::GetFlag(FLAGS_checkpoint_every);
  options.device = absl::GetFlag(FLAGS_device);
  options.max_train_seconds = absl::GetFlag(FLAGS_max_train_seconds);
  options.fit_to_time = absl::GetFlag(FLAGS_fit_to_time);
  options.client_name = absl::GetFlag(FLAGS_client);
  options.label_free_dims = absl::GetFlag(FLAGS_label_free_dims);
  options.model.arch = absl::GetFlag(FLAGS_arch);
  options.model.width = absl::GetFlag(FLAGS_width);
  options.model.init = absl::GetFlag(FLAGS_init);
  trainer::SemiSupervisedOptions batch;
  const std::string weak_fill = absl::GetFlag(FLAGS_weak_fill);
  if (weak_fill != "reflect" && weak_fill != "zeros") {
    std::cerr << "trainer: --weak_fill takes reflect or zeros\n";
    return 2;
  }
  batch.weak.fill = weak_fill == "zeros" ? trainer::WeakFill::kZeros
                                         : trainer::WeakFill::kReflect;
  batch.batch_size = absl::GetFlag(FLAGS_batch);
  batch.mu = absl::GetFlag(FLAGS_mu);
  batch.lambda_u = absl::GetFlag(FLAGS_lambda_u);
  batch.distribution_alignment = absl::GetFlag(FLAGS_distribution_alignment);
  batch.alignment_momentum = absl::GetFlag(FLAGS_alignment_momentum);
  auto weak_forward =
      trainer::ParseWeakViewForward(absl::GetFlag(FLAGS_weak_forward));
  if (!weak_forward.ok()) {
    std::cerr << "trainer: --weak_forward: " << weak_forward.status().message()
              << "\n";
    return 2;
  }
  batch.weak_forward = *weak_forward;
  batch.strong.num_ops = absl::GetFlag(FLAGS_strong_ops);
  auto strong_op_list =
      trainer::ParseStrongOpList(absl::GetFlag(FLAGS_strong_op_list));
  if (!strong_op_list.ok()) {
    std::cerr << "trainer: --strong_op_list: "
              << strong_op_list.status().message() << "\n";
    return 2;
  }
  batch.strong.ops = *std::move(strong_op_list);
  batch.strong.cutout_max_fraction = absl::GetFlag(FLAGS_cutout);
  batch.strong.min_enhance = absl::GetFlag(FLAGS_strong_enhance_min);
  batch.strong.max_enhance = absl::GetFlag(FLAGS_strong_enhance_max);
  batch.contrast.weight = absl::GetFlag(FLAGS_lambda_c);
  batch.contrast.temperature = absl::GetFlag(FLAGS_contrast_temperature);
  batch.contrast.graph_threshold = absl::GetFlag(FLAGS_contrast_threshold);
  batch.contrast.memory_size = absl::GetFlag(FLAGS_contrast_memory);
  batch.contrast.smoothing_alpha = absl::GetFlag(FLAGS_smoothing_alpha);
  batch.contrast.two_strong_views = absl::GetFlag(FLAGS_contrast_two_strong);
  batch.teacher_weight = absl::GetFlag(FLAGS_teacher_weight);
  batch.pseudo_head = absl::GetFlag(FLAGS_pseudo_head);
  batch.soft_targets = absl::GetFlag(FLAGS_soft_targets);
  batch.strong_labelled = absl::GetFlag(FLAGS_strong_labelled);
  batch.pseudo_label_views = absl::GetFlag(FLAGS_pseudo_label_views);
  batch.mixup_alpha = absl::GetFlag(FLAGS_mixup_alpha);
  batch.mixup_unlabelled = absl::GetFlag(FLAGS_mixup_unlabelled);
  options.objective.name = absl::GetFlag(FLAGS_objective);
  options.objective.fixmatch.batch = batch;
  options.objective.fixmatch.threshold = absl::GetFlag(FLAGS_threshold);
  options.objective.flexmatch.batch = batch;
  options.objective.flexmatch.threshold = absl::GetFlag(FLAGS_threshold);
  options.objective.freematch.batch = batch;
  options.objective.freematch.lambda_f = absl::GetFlag(FLAGS_lambda_f);
  options.objective.freematch.ema_momentum =
      absl::GetFlag(FLAGS_threshold_momentum);
  options.objective.softmatch.batch = batch;
  options.objective.softmatch.ema_momentum =
      absl::GetFlag(FLAGS_threshold_momentum);
  options.objective.softmatch.n_sigma = absl::GetFlag(FLAGS_n_sigma);
  options.objective.softmatch.uniform_alignment =
      absl::GetFlag(FLAGS_uniform_alignment);
  options.learner.lr = absl::GetFlag(FLAGS_lr);
  options.learner.weight_decay = absl::GetFlag(FLAGS_weight_decay);
  options.learner.ema_decay = absl::GetFlag(FLAGS_ema);
  options.learner.mixed_precision = absl::GetFlag(FLAGS_bf16);
  options.learner.cuda_graph = absl::GetFlag(FLAGS_cuda_graph);
  options.pretrain.method = absl::GetFlag(FLAGS_pretrain);
  options.pretrain.steps = absl::GetFlag(FLAGS_pretrain_steps);
  options.pretrain.objective.simclr.batch_size =
      absl::GetFlag(FLAGS_pretrain_batch);
  options.pretrain.objective.simclr.temperature =
      absl::GetFlag(FLAGS_pretrain_temperature);
  options.pretrain.learner.lr = absl::GetFlag(FLAGS_pretrain_lr);
  options.pretrain.objective.simclr.augment.crop.scale_min =
      absl::GetFlag(FLAGS_pretrain_crop_scale);
  if (absl::GetFlag(FLAGS_pretrain_local_crops) != 0 &&
      absl::GetFlag(FLAGS_pretrain) != "simclr") {
    std::cerr << "trainer: --pretrain_local_crops needs --pretrain=simclr\n";
    return 2;
  }
  options.pretrain.objective.simclr.local_crops =
      absl::GetFlag(FLAGS_pretrain_local_crops);
  options.pretrain.objective.simclr.local_crop_size =
      absl::GetFlag(FLAGS_pretrain_local_crop_size);
  options.pretrain.objective.simclr.local_crop_scale_min =
      absl::GetFlag(FLAGS_pretrain_local_crop_scale);
  options.pretrain.objective.byol.batch_size =
      absl::GetFlag(FLAGS_pretrain_batch);
  options.pretrain.objective.byol.target_decay =
      absl::GetFlag(FLAGS_pretrain_target_decay);
  options.pretrain.objective.byol.augment.crop.scale_min =
      absl::GetFlag(FLAGS_pretrain_crop_scale);
  {
    auto colour =
        trainer::ParseContrastiveColour(absl::GetFlag(FLAGS_pretrain_colour));
    if (!colour.ok()) {
      std::cerr << "trainer: --pretrain_colour: " << colour.status() << "\n";
      return 2;
    }
    // The objectives check the strength's range when they are made.
    for (trainer::ContrastiveAugmentOptions* augment :
         {&options.pretrain.objective.simclr.augment,
          &options.pretrain.objective.byol.augment}) {
      augment->colour = *colour;
      augment->jitter_strength = absl::GetFlag(FLAGS_pretrain_jitter_strength);
    }
  }
  options.pretrain.learner.cosine_span = 0.5;  // decays to zero
  options.pretrain.learner.mixed_precision = absl::GetFlag(FLAGS_bf16);
  options.pretrain.learner.cuda_graph = absl::GetFlag(FLAGS_cuda_graph);
  options.pretrain.cache_dir = absl::GetFlag(FLAGS_pretrain_cache);
  options.restart_rounds = absl::GetFlag(FLAGS_restart_rounds);
  options.prototype_head = absl::GetFlag(FLAGS_prototype_head);
  options.distill_steps = absl::GetFlag(FLAGS_distill_steps);
  options.distill_ensemble = absl::GetFlag(FLAGS_distill_ensemble);
  options.recalibrate_bn = absl::GetFlag(FLAGS_recalibrate_bn);
  options.eval_flip = absl::GetFlag(FLAGS_eval_flip);
  options.select_on_initial_embedding =
      absl::GetFlag(FLAGS_select_on_initial_embedding);
  options.feature_quality = absl::GetFlag(FLAGS_feature_quality);
  options.knn_k = absl::GetFlag(FLAGS_knn_k);

  trainer::OracleClientOptions client_options;
  client_options.target = absl::GetFlag(FLAGS_oracle);
  client_options.token = options.experiment_token;
  client_options.tls.ca_file = absl::GetFlag(FLAGS_tls_ca);
  client_options.tls.cert_file = absl::GetFlag(FLAGS_tls_cert);
  client_options.tls.key_file = absl::GetFlag(FLAGS_tls_key);
  client_options.stop_requested = [] { return g_stop.load(); };
  auto oracle = trainer::MakeGrpcOracleClient(client_options);
  if (!oracle.ok()) {
    std::cerr << "trainer: " << oracle.status() << "\n";
    return 2;
  }

  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  auto summary = trainer::RunTrainer(options, oracle->get(), &g_stop);
  if (!summary.ok()) {
    std::cerr << "trainer: " << summary.status() << "\n";
    return summary.status().code() == absl::StatusCode::kCancelled ? 130 : 1;
  }
  std::cout << absl::StrFormat(
      "accuracy %.2f %% | labels spent %d of %d | %d steps at %.1f steps/s on "
      "%s | %.0f s | report %s\n",
      100.0 * summary->accuracy, summary->labels_spent, summary->label_budget,
      summary->steps, summary->steps_per_s, summary->device,
      summary->wall_time_s, summary->report_path);
  return 0;
}
