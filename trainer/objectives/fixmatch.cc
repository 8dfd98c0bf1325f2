#include "trainer/objectives/fixmatch.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace trainer {

using torch::Tensor;

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
  if (o.strong.num_ops < 0 || o.strong.num_ops > kNumStrongOps ||
      o.strong.min_posterize_bits < 0 || o.strong.min_posterize_bits > 8) {
    return absl::InvalidArgumentError(
        absl::StrCat("strong.num_ops must be in [0, ", kNumStrongOps,
                     "] and strong.min_posterize_bits in [0, 8]"));
  }
  return ValidateGraphContrastOptions(o.contrast);
}

absl::StatusOr<std::unique_ptr<GraphContrast>> MakeGraphContrast(
    const SemiSupervisedOptions& options, int64_t embedding_dim,
    torch::Device device, uint64_t seed) {
  if (options.contrast.weight == 0.0) return nullptr;
  return GraphContrast::Create(options.contrast, embedding_dim, device, seed);
}

std::vector<std::string> WithContrastMetrics(std::vector<std::string> names,
                                             const GraphContrast* contrast) {
  if (contrast != nullptr) {
    names.push_back("loss_c");
    names.push_back("contrast_neighbours");
  }
  return names;
}

std::vector<torch::nn::Module*> ContrastModules(GraphContrast* contrast) {
  if (contrast == nullptr) return {};
  return {contrast->head()};
}

void SaveGraphContrast(const GraphContrast* contrast,
                       torch::serialize::OutputArchive& archive) {
  if (contrast != nullptr) contrast->Save(archive, "contrast_head");
}

void LoadGraphContrast(GraphContrast* contrast,
                       torch::serialize::InputArchive& archive) {
  if (contrast != nullptr) contrast->Load(archive, "contrast_head");
}

void AddGraphContrast(GraphContrast* contrast,
                      const SemiSupervisedLogits& logits, const Tensor& probs,
                      ObjectiveLoss& loss) {
  if (contrast == nullptr) return;
  GraphContrastLoss term = contrast->Loss(logits.embedding_u_weak,
                                          logits.embedding_u_strong, probs);
  loss.total = loss.total + contrast->options().weight * term.loss;
  loss.scalars.push_back(term.loss);
  loss.scalars.push_back(term.mean_neighbours);
}

DistributionAlignmentOptions AlignmentOptions(const SemiSupervisedOptions& o,
                                              int64_t num_classes) {
  DistributionAlignmentOptions alignment;
  alignment.enabled = o.distribution_alignment;
  alignment.momentum = o.alignment_momentum;
  alignment.num_classes = num_classes;
  return alignment;
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
  const auto index_options = torch::TensorOptions()
                                 .dtype(at::kLong)
                                 .device(data.unlabelled_images.device());
  Tensor labelled_index = at::randint(data.labelled_images.size(0), {b},
                                      context.generator, index_options);
  Tensor unlabelled_index = at::randint(data.unlabelled_images.size(0), {ub},
                                        context.generator, index_options);
  Tensor targets = data.labelled_targets.index_select(0, labelled_index);
  Tensor unlabelled = data.unlabelled_images.index_select(0, unlabelled_index);
  // One gather for the labelled batch, the weak unlabelled views and the
  // flip-and-shift base of the strong views (independent draws each).
  Tensor weak = WeakAugment(
      at::cat({data.labelled_images.index_select(0, labelled_index),
               unlabelled, unlabelled}),
      context.generator, options.weak);
  Tensor strong =
      StrongAugment(weak.narrow(0, b + ub, ub), context.generator,
                    options.strong);
  weak = weak.narrow(0, 0, b + ub);
  const bool joint = options.weak_forward == WeakViewForward::kJoint;
  Tensor inputs = joint ? at::cat({weak, strong})
                        : at::cat({weak.narrow(0, 0, b), strong});
  ModelOutput output = context.Forward(context.model, inputs);
  const Tensor& logits = output.logits;
  SemiSupervisedLogits out;
  out.logits_x = logits.narrow(0, 0, b);
  out.targets_x = targets;
  out.unlabelled_index = unlabelled_index;
  out.logits_u_strong = logits.narrow(0, logits.size(0) - ub, ub);
  out.embedding_u_strong =
      output.embedding.narrow(0, output.embedding.size(0) - ub, ub);
  if (joint) {
    out.logits_u_weak = logits.narrow(0, b, ub).detach();
    out.embedding_u_weak = output.embedding.narrow(0, b, ub);
  } else {
    torch::NoGradGuard no_grad;
    Classifier& teacher = options.weak_forward == WeakViewForward::kEma
                              ? context.ema
                              : context.model;
    ModelOutput weak_output = context.Forward(teacher, weak.narrow(0, b, ub));
    out.logits_u_weak = weak_output.logits;
    out.embedding_u_weak = weak_output.embedding;
  }
  return out;
}

FixMatchLoss ComputeFixMatchLoss(const Tensor& logits_x,
                                 const Tensor& targets_x,
                                 const Tensor& logits_u_weak,
                                 const Tensor& logits_u_strong,
                                 double threshold, double lambda_u) {
  return ComputeFixMatchLossFromProbs(
      logits_x, targets_x,
      at::softmax(logits_u_weak.detach().to(at::kFloat), 1), logits_u_strong,
      threshold, lambda_u);
}

FixMatchLoss ComputeFixMatchLossFromProbs(const Tensor& logits_x,
                                          const Tensor& targets_x,
                                          const Tensor& probs_u_weak,
                                          const Tensor& logits_u_strong,
                                          double threshold, double lambda_u) {
  TORCH_CHECK(probs_u_weak.sizes() == logits_u_strong.sizes(),
              "weak and strong views differ in shape: ", probs_u_weak.sizes(),
              " vs ", logits_u_strong.sizes());
  Tensor supervised =
      at::cross_entropy_loss(logits_x.to(at::kFloat), targets_x);
  auto [max_probs, pseudo_labels] = probs_u_weak.detach().max(1);
  Tensor mask = (max_probs >= threshold).to(at::kFloat);
  Tensor per_image =
      at::cross_entropy_loss(logits_u_strong.to(at::kFloat), pseudo_labels,
                             /*weight=*/{}, at::Reduction::None);
  Tensor unsupervised = (per_image * mask).mean();
  Tensor total = supervised + lambda_u * unsupervised;
  return {std::move(total), std::move(supervised), std::move(unsupervised),
          mask.mean()};
}

absl::StatusOr<std::unique_ptr<FixMatchObjective>> FixMatchObjective::Create(
    const FixMatchOptions& options, torch::Device device,
    int64_t embedding_dim, uint64_t seed) {
  RETURN_IF_ERROR(ValidateSemiSupervisedOptions(options.batch));
  if (!(options.threshold >= 0.0 && options.threshold <= 1.0)) {
    return absl::InvalidArgumentError("threshold must be in [0, 1]");
  }
  if (options.num_classes < 2) {
    return absl::InvalidArgumentError("num_classes must be >= 2");
  }
  ASSIGN_OR_RETURN(
      std::unique_ptr<GraphContrast> contrast,
      MakeGraphContrast(options.batch, embedding_dim, device, seed));
  return std::unique_ptr<FixMatchObjective>(
      new FixMatchObjective(options, device, std::move(contrast)));
}

FixMatchObjective::FixMatchObjective(const FixMatchOptions& options,
                                     torch::Device device,
                                     std::unique_ptr<GraphContrast> contrast)
    : options_(options),
      alignment_(AlignmentOptions(options.batch, options.num_classes), device),
      contrast_(std::move(contrast)) {}

ObjectiveLoss FixMatchObjective::Loss(const StepContext& context,
                                      const StepData& data) {
  SemiSupervisedLogits logits =
      SemiSupervisedForward(context, data, options_.batch);
  Tensor probs = alignment_.Align(
      at::softmax(logits.logits_u_weak.detach().to(at::kFloat), 1));
  FixMatchLoss loss = ComputeFixMatchLossFromProbs(
      logits.logits_x, logits.targets_x, probs, logits.logits_u_strong,
      options_.threshold, options_.batch.lambda_u);
  ObjectiveLoss out{loss.total,
                    {loss.supervised, loss.unsupervised, loss.mask_rate}};
  AddGraphContrast(contrast_.get(), logits, probs, out);
  return out;
}

void FixMatchObjective::Save(torch::serialize::OutputArchive& archive) const {
  alignment_.Save(archive, "alignment");
  SaveGraphContrast(contrast_.get(), archive);
}

void FixMatchObjective::Load(torch::serialize::InputArchive& archive) {
  alignment_.Load(archive, "alignment");
  LoadGraphContrast(contrast_.get(), archive);
}

}  // namespace trainer
