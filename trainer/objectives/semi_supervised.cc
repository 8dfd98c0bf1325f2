#include "trainer/objectives/semi_supervised.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace trainer {

using torch::Tensor;

namespace {

// `images` [N, ...] each mixed with the one before it (row 0 with the last):
// share * own + (1 - share) * previous, share = max(l, 1 - l) with
// l ~ Beta(alpha, alpha) per image from two Gamma(alpha) draws on `gen`.
struct MixedImages {
  Tensor images;
  Tensor own_share;  // [N] float32 in [0.5, 1]
};
MixedImages MixWithPrevious(const Tensor& images, double alpha,
                            at::Generator& gen) {
  const int64_t n = images.size(0);
  Tensor a = at::full({n}, alpha, images.options().dtype(at::kFloat));
  Tensor g1 = at::_standard_gamma(a, gen);
  Tensor g2 = at::_standard_gamma(a, gen);
  Tensor l = g1 / (g1 + g2).clamp_min(1e-12);
  MixedImages out;
  out.own_share = at::maximum(l, 1.0 - l);
  std::vector<int64_t> shape(images.dim(), 1);
  shape[0] = n;
  Tensor share = out.own_share.to(images.scalar_type()).view(shape);
  out.images = share * images + (1.0 - share) * images.roll(1, 0);
  return out;
}

}  // namespace

absl::Status ValidateSemiSupervisedOptions(const SemiSupervisedOptions& o) {
  if (o.batch_size <= 0 || o.mu <= 0) {
    return absl::InvalidArgumentError("batch_size and mu must be positive");
  }
  if (!(o.lambda_u >= 0.0)) {
    return absl::InvalidArgumentError("lambda_u must be non-negative");
  }
  if (!(o.alignment_momentum >= 0.0 && o.alignment_momentum < 1.0)) {
    return absl::InvalidArgumentError("alignment_momentum must be in [0, 1)");
  }
  if (!(o.teacher_weight >= 0.0 && o.teacher_weight <= 1.0)) {
    return absl::InvalidArgumentError("teacher_weight must be in [0, 1]");
  }
  std::vector<StrongOp> listed;
  for (StrongOp op : o.strong.ops) {
    if (static_cast<int>(op) < 0 || static_cast<int>(op) >= kNumStrongOps ||
        std::find(listed.begin(), listed.end(), op) != listed.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("strong.ops must list known ops at most once each, got ",
                       StrongOpListText(o.strong.ops)));
    }
    listed.push_back(op);
  }
  const int num_allowed = o.strong.ops.empty()
                              ? kNumStrongOps
                              : static_cast<int>(o.strong.ops.size());
  if (o.strong.num_ops < 0 || o.strong.num_ops > num_allowed ||
      o.strong.min_posterize_bits < 0 || o.strong.min_posterize_bits > 8) {
    return absl::InvalidArgumentError(absl::StrCat(
        "strong.num_ops must be in [0, ", num_allowed,
        "] (the ops it chooses among: ", StrongOpListText(o.strong.ops),
        ") and strong.min_posterize_bits in [0, 8], got ", o.strong.num_ops,
        " and ", o.strong.min_posterize_bits));
  }
  if (!(o.strong.cutout_max_fraction >= 0.0 &&
        o.strong.cutout_max_fraction <= 1.0)) {
    return absl::InvalidArgumentError(
        "strong.cutout_max_fraction must be in [0, 1]");
  }
  if (!(std::isfinite(o.strong.max_enhance) && o.strong.min_enhance >= 0.0 &&
        o.strong.min_enhance <= o.strong.max_enhance)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "strong enhance factors must satisfy 0 <= min <= max < inf, got ",
        o.strong.min_enhance, " and ", o.strong.max_enhance));
  }
  if (o.pseudo_label_views < 1 || o.pseudo_label_views > 8) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pseudo_label_views must be in [1, 8], got ", o.pseudo_label_views));
  }
  if (!(std::isfinite(o.mixup_alpha) && o.mixup_alpha >= 0.0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "mixup_alpha must be finite and non-negative, got ", o.mixup_alpha));
  }
  if (o.mixup_unlabelled && !(o.mixup_alpha > 0.0)) {
    return absl::InvalidArgumentError(
        "mixup_unlabelled needs mixup_alpha > 0 (the shares' Beta)");
  }
  if (o.mixup_unlabelled && o.pseudo_head) {
    return absl::InvalidArgumentError(
        "mixup_unlabelled does not work with the pseudo head (its mixed rows "
        "would need the head's logits)");
  }
  RETURN_IF_ERROR(ValidateGraphContrastOptions(o.contrast));
  const int64_t step_images =
      (static_cast<int64_t>(o.mu) + 1) * static_cast<int64_t>(o.batch_size);
  if (o.contrast.memory_size > 0 && o.contrast.memory_size < step_images) {
    return absl::InvalidArgumentError(
        absl::StrCat("the pseudo-label memory (", o.contrast.memory_size,
                     " entries) must hold one step's ", step_images,
                     " labelled and unlabelled images"));
  }
  return absl::OkStatus();
}

absl::StatusOr<WeakViewForward> ParseWeakViewForward(const std::string& name) {
  if (name == "joint") return WeakViewForward::kJoint;
  if (name == "separate") return WeakViewForward::kSeparate;
  if (name == "ema") return WeakViewForward::kEma;
  return absl::InvalidArgumentError(absl::StrCat(
      "weak view forward \"", name, "\" is not joint, separate or ema"));
}

std::string WeakViewForwardName(WeakViewForward forward) {
  switch (forward) {
    case WeakViewForward::kJoint:
      return "joint";
    case WeakViewForward::kSeparate:
      return "separate";
    case WeakViewForward::kEma:
      return "ema";
  }
  return "joint";
}

SemiSupervisedLogits SemiSupervisedForward(
    const StepContext& context, const StepData& data,
    const SemiSupervisedOptions& options) {
  const int64_t b = options.batch_size;
  const int64_t ub = static_cast<int64_t>(options.mu) * b;
  const auto index_options = torch::TensorOptions().dtype(at::kLong).device(
      data.unlabelled_images.device());
  Tensor labelled_index = at::randint(data.labelled_images.size(0), {b},
                                      context.generator, index_options);
  Tensor unlabelled_index = at::randint(data.unlabelled_images.size(0), {ub},
                                        context.generator, index_options);
  Tensor targets = data.labelled_targets.index_select(0, labelled_index);
  Tensor unlabelled = data.unlabelled_images.index_select(0, unlabelled_index);
  Tensor labelled = data.labelled_images.index_select(0, labelled_index);
  // With strong labelled views the strong rows are [labelled, unlabelled]:
  // ls = b of them come before the unlabelled strong views.
  const int64_t ls = options.strong_labelled ? b : 0;
  // With two strong views us = 2 ub unlabelled strong rows: the first view's
  // then the second's.
  const bool second_strong =
      options.contrast.two_strong_views && options.contrast.weight > 0.0;
  const int64_t us = second_strong ? 2 * ub : ub;
  // One gather for the labelled batch, the weak unlabelled views and the
  // flip-and-shift base of the strong views (of the labelled images too with
  // strong_labelled; independent draws each).
  std::vector<Tensor> bases = {labelled, unlabelled};
  if (options.strong_labelled) bases.push_back(labelled);
  bases.push_back(unlabelled);
  if (second_strong) bases.push_back(unlabelled);
  Tensor weak = WeakAugment(at::cat(bases), context.generator, options.weak);
  Tensor strong = StrongAugment(weak.narrow(0, b + ub, ls + us),
                                context.generator, options.strong);
  weak = weak.narrow(0, 0, b + ub);
  // Mixed labelled images: each with the one before it (a random partner,
  // the batch being drawn at random); then, with mixup_unlabelled, the
  // unlabelled weak views the same way.
  const int64_t m = options.mixup_alpha > 0.0 ? b : 0;
  const int64_t mu_rows = options.mixup_unlabelled ? ub : 0;
  MixedImages mixed_x, mixed_u;
  if (m > 0) {
    mixed_x = MixWithPrevious(weak.narrow(0, 0, b), options.mixup_alpha,
                              context.generator);
  }
  if (mu_rows > 0) {
    mixed_u = MixWithPrevious(weak.narrow(0, b, ub), options.mixup_alpha,
                              context.generator);
  }
  const bool joint = options.weak_forward == WeakViewForward::kJoint;
  // The model that gives the pseudo-labels when the weak views have a
  // forward of their own (kSeparate, kEma, and every extra view).
  Classifier& teacher = options.weak_forward == WeakViewForward::kEma
                            ? context.ema
                            : context.model;
  // Rows: labelled weak views, [mixed labelled], [unlabelled weak views
  // (joint)], [mixed unlabelled], strong views (see below).
  std::vector<Tensor> rows = {weak.narrow(0, 0, b)};
  if (m > 0) rows.push_back(mixed_x.images);
  if (joint) rows.push_back(weak.narrow(0, b, ub));
  if (mu_rows > 0) rows.push_back(mixed_u.images);
  rows.push_back(strong);
  ModelOutput output = context.Forward(context.model, at::cat(rows));
  const Tensor& logits = output.logits;
  SemiSupervisedLogits out;
  out.logits_x = logits.narrow(0, 0, b);
  out.targets_x = targets;
  if (m > 0) {
    out.logits_x_mixed = logits.narrow(0, b, m);
    out.targets_x_partner = targets.roll(1, 0);
    out.mix_own_share = mixed_x.own_share;
  }
  if (mu_rows > 0) {
    out.logits_u_mixed = logits.narrow(0, b + m + (joint ? ub : 0), mu_rows);
    out.mix_u_own_share = mixed_u.own_share;
  }
  if (options.strong_labelled) {
    out.logits_x_strong = logits.narrow(0, logits.size(0) - us - ls, ls);
  }
  out.unlabelled_index = unlabelled_index;
  if (data.teacher_probs.defined()) {
    out.teacher_probs = data.teacher_probs.index_select(0, unlabelled_index);
  }
  out.logits_u_strong = logits.narrow(0, logits.size(0) - us, ub);
  out.embedding_x = output.embedding.narrow(0, 0, b);
  out.embedding_u_strong =
      output.embedding.narrow(0, output.embedding.size(0) - us, ub);
  if (second_strong) {
    out.embedding_u_strong_second =
        output.embedding.narrow(0, output.embedding.size(0) - ub, ub);
  }
  if (joint) {
    out.logits_u_weak = logits.narrow(0, b + m, ub).detach();
    out.embedding_u_weak = output.embedding.narrow(0, b + m, ub);
  } else {
    torch::NoGradGuard no_grad;
    ModelOutput weak_output = context.Forward(teacher, weak.narrow(0, b, ub));
    out.logits_u_weak = weak_output.logits;
    out.embedding_u_weak = weak_output.embedding;
  }
  if (options.pseudo_label_views > 1) {
    torch::NoGradGuard no_grad;
    Tensor probs = at::softmax(out.logits_u_weak.to(at::kFloat), 1);
    for (int view = 1; view < options.pseudo_label_views; ++view) {
      Tensor extra = WeakAugment(unlabelled, context.generator, options.weak);
      probs +=
          at::softmax(context.Forward(teacher, extra).logits.to(at::kFloat), 1);
    }
    probs /= options.pseudo_label_views;
    // softmax(log p) == p: every later use goes through the softmax.
    out.logits_u_weak = at::log(probs.clamp_min(1e-12));
  }
  return out;
}

SupervisedRows LabelledRows(const SemiSupervisedLogits& logits) {
  if (!logits.logits_x_strong.defined()) {
    return {logits.logits_x, logits.targets_x};
  }
  return {at::cat({logits.logits_x, logits.logits_x_strong}),
          at::cat({logits.targets_x, logits.targets_x})};
}

Tensor SupervisedLoss(const SemiSupervisedLogits& logits) {
  SupervisedRows rows = LabelledRows(logits);
  if (!logits.logits_x_mixed.defined()) {
    return at::cross_entropy_loss(rows.logits.to(at::kFloat), rows.targets);
  }
  auto per_row = [](const Tensor& z, const Tensor& targets) {
    return at::cross_entropy_loss(z.to(at::kFloat), targets, /*weight=*/{},
                                  at::Reduction::None);
  };
  const Tensor& share = logits.mix_own_share;
  Tensor mixed = share * per_row(logits.logits_x_mixed, logits.targets_x) +
                 (1.0 - share) * per_row(logits.logits_x_mixed,
                                         logits.targets_x_partner);
  return at::cat({per_row(rows.logits, rows.targets), mixed}).mean();
}

Tensor PseudoLabelCrossEntropy(const Tensor& logits_strong, const Tensor& probs,
                               bool soft) {
  TORCH_CHECK(logits_strong.sizes() == probs.sizes(),
              "strong views' logits and pseudo-labels differ in shape: ",
              logits_strong.sizes(), " vs ", probs.sizes());
  const Tensor logits = logits_strong.to(at::kFloat);
  const Tensor targets = probs.detach().to(at::kFloat);
  if (soft) return -(targets * at::log_softmax(logits, 1)).sum(1);
  return at::cross_entropy_loss(logits, targets.argmax(1), /*weight=*/{},
                                at::Reduction::None);
}

Tensor PseudoLabelLoss(const SemiSupervisedLogits& logits,
                       const Tensor& strong_logits, const Tensor& probs,
                       const Tensor& weight, bool soft) {
  Tensor rows = PseudoLabelCrossEntropy(strong_logits, probs, soft) * weight;
  if (!logits.logits_u_mixed.defined()) return rows.mean();
  const Tensor& share = logits.mix_u_own_share;
  const Tensor& z = logits.logits_u_mixed;
  Tensor mixed =
      share * weight * PseudoLabelCrossEntropy(z, probs, soft) +
      (1.0 - share) * weight.roll(1, 0) *
          PseudoLabelCrossEntropy(z, probs.roll(1, 0), soft);
  return at::cat({rows, mixed}).mean();
}

absl::StatusOr<std::unique_ptr<PseudoLabelling>> PseudoLabelling::Create(
    const SemiSupervisedOptions& options, int64_t num_classes,
    torch::Device device, int64_t embedding_dim, uint64_t seed) {
  RETURN_IF_ERROR(ValidateSemiSupervisedOptions(options));
  if (num_classes < 2) {
    return absl::InvalidArgumentError("num_classes must be at least 2");
  }
  std::unique_ptr<GraphContrast> contrast;
  if (options.contrast.weight > 0.0) {
    ASSIGN_OR_RETURN(contrast,
                     GraphContrast::Create(options.contrast, embedding_dim,
                                           num_classes, device, seed));
  }
  ProjectionHead pseudo_head{nullptr};
  if (options.pseudo_head) {
    if (embedding_dim <= 0) {
      return absl::InvalidArgumentError(
          "the pseudo head needs the model's embedding size (> 0)");
    }
    ProjectionHeadOptions head;
    head.input_dim = embedding_dim;
    head.hidden_dim = 2 * embedding_dim;  // DST's width
    head.output_dim = num_classes;
    // Not the contrast head's draws when both are on.
    head.init_seed = seed ^ 0x9e3779b97f4a7c15ULL;
    pseudo_head = ProjectionHead(head);
    pseudo_head->to(device);
    pseudo_head->train();
  }
  DistributionAlignmentOptions alignment;
  alignment.enabled = options.distribution_alignment;
  alignment.momentum = options.alignment_momentum;
  alignment.num_classes = num_classes;
  try {
    return std::unique_ptr<PseudoLabelling>(new PseudoLabelling(
        DistributionAlignment(alignment, device), std::move(contrast),
        std::move(pseudo_head), options.teacher_weight));
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bad distribution alignment: ", e.what_without_backtrace()));
  }
}

PseudoLabels PseudoLabelling::Label(const SemiSupervisedLogits& logits) {
  PseudoLabels out;
  out.probs = alignment_.Align(
      at::softmax(logits.logits_u_weak.detach().to(at::kFloat), 1));
  if (logits.teacher_probs.defined()) {
    out.probs = (1.0 - teacher_weight_) * out.probs +
                teacher_weight_ * logits.teacher_probs.to(at::kFloat);
  }
  if (contrast_ != nullptr) {
    out.projections = contrast_->Project(
        logits.embedding_u_weak, logits.embedding_u_strong, logits.embedding_x,
        logits.embedding_u_strong_second);
    out.probs = contrast_->SmoothPseudoLabels(out.projections, out.probs,
                                              logits.targets_x);
  }
  return out;
}

Tensor PseudoLabelling::StrongLogits(const SemiSupervisedLogits& logits) {
  if (pseudo_head_.is_empty()) return logits.logits_u_strong;
  return pseudo_head_->forward(logits.embedding_u_strong).to(at::kFloat);
}

void PseudoLabelling::AddTerms(const PseudoLabels& labels,
                               ObjectiveLoss& loss) {
  if (contrast_ == nullptr) return;
  GraphContrastLoss term = contrast_->Loss(labels.projections, labels.probs);
  loss.total = loss.total + contrast_->options().weight * term.loss;
  loss.scalars.push_back(term.loss);
  loss.scalars.push_back(term.mean_neighbours);
}

std::vector<std::string> PseudoLabelling::MetricNames(
    std::vector<std::string> names) const {
  if (contrast_ != nullptr) {
    names.push_back("loss_c");
    names.push_back("contrast_neighbours");
  }
  return names;
}

std::vector<torch::nn::Module*> PseudoLabelling::TrainedModules() {
  std::vector<torch::nn::Module*> modules;
  if (contrast_ != nullptr) modules.push_back(contrast_->head());
  if (!pseudo_head_.is_empty()) modules.push_back(pseudo_head_.ptr().get());
  return modules;
}

void PseudoLabelling::Save(torch::serialize::OutputArchive& archive) const {
  alignment_.Save(archive, "alignment");
  if (contrast_ != nullptr) contrast_->Save(archive, "contrast");
  if (!pseudo_head_.is_empty()) {
    WriteProjectionHead(pseudo_head_, archive, "pseudo_head");
  }
}

void PseudoLabelling::Load(torch::serialize::InputArchive& archive) {
  alignment_.Load(archive, "alignment");
  if (contrast_ != nullptr) contrast_->Load(archive, "contrast");
  if (!pseudo_head_.is_empty()) {
    ReadProjectionHead(pseudo_head_, archive, "pseudo_head");
  }
}

}  // namespace trainer
