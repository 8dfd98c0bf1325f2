// A classifier layer fitted to a few labelled embeddings before any
// labelled training: the nearest class mean written as a linear layer, its
// temperature chosen by leave-one-out likelihood on the same samples. A
// fine-tuned model that starts from a self-supervised embedding then starts
// from a head that already classifies (the linear-probe-then-fine-tune
// idea), instead of a random layer whose first pseudo-labels are noise.
#ifndef TRAINER_LEARN_PROTOTYPE_HEAD_H_
#define TRAINER_LEARN_PROTOTYPE_HEAD_H_

#include <torch/types.h>

#include <cstdint>

#include "absl/status/statusor.h"

namespace trainer {

// A linear layer's parameters: logits = embeddings.matmul(weight.t()) + bias.
struct PrototypeHead {
  torch::Tensor weight;  // [num_classes, D] float32, on the embeddings' device
  torch::Tensor bias;    // [num_classes] float32
  // The fitted temperature T (see FitPrototypeHead).
  double temperature = 0;
  // Classes with at least one labelled sample.
  int64_t classes_present = 0;
  // Labelled samples the temperature was fitted on (those whose class has
  // at least two samples); 0 means the fallback temperature.
  int64_t samples_scored = 0;
};

// Fits the head to `embeddings` [L, D] (floating point) and their `labels`
// [L] (int64 in [0, num_classes)). With m_c the mean embedding of class c,
// the logit of class c is (m_c . e - |m_c|^2 / 2) / T: the softmax of these
// equals the softmax of -|e - m_c|^2 / (2T), so the largest logit is the
// nearest class mean. T minimises the mean leave-one-out cross-entropy of
// the samples whose class has two or more (each scored against its class's
// mean without itself), over a log-spaced grid around the mean squared
// distance from a sample to the other classes' means; with no such sample
// T is that mean squared distance. A class without samples gets a zero
// weight row and, as bias, the mean over the samples of their lowest
// present-class logit: it starts below the classes that have labels, as
// unlikely as a far class. Deterministic for equal inputs.
// INVALID_ARGUMENT for mismatched or empty inputs, labels out of range or
// num_classes < 2.
absl::StatusOr<PrototypeHead> FitPrototypeHead(const torch::Tensor& embeddings,
                                               const torch::Tensor& labels,
                                               int64_t num_classes);

}  // namespace trainer

#endif  // TRAINER_LEARN_PROTOTYPE_HEAD_H_
