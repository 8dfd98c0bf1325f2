// CoMatch's memory-smoothed pseudo-labels (Li et al. 2021): a ring buffer
// of recent (projection, class distribution) pairs, namely the weak
// unlabelled views with their own pseudo-label distributions and the
// labelled images with their one-hot labels, and the smoothing that mixes
// each new pseudo-label distribution with those of its neighbours in the
// buffer:
//
//   q_i = alpha p_i + (1 - alpha) sum_k softmax_k(z_i . z_k / T) q_k
//
// An image whose projection sits among labelled images, or among confident
// neighbours of one class, leans towards that class: a label propagation
// over the last few steps, on the projection the graph contrast trains.
#ifndef TRAINER_OBJECTIVES_PSEUDO_LABEL_MEMORY_H_
#define TRAINER_OBJECTIVES_PSEUDO_LABEL_MEMORY_H_

#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>
#include <torch/types.h>

#include <cstdint>
#include <string>

namespace trainer {

struct PseudoLabelMemoryOptions {
  // Entries in the ring buffer (CoMatch: 2,560 for B 64, mu 7: five steps
  // of labelled and weak unlabelled images).
  int64_t size = 2560;
  // Size of the projections stored.
  int64_t dim = 64;
  int64_t num_classes = 10;
  // Softmax temperature of the similarities to the entries.
  double temperature = 0.2;
  // Weight of the image's own distribution (CoMatch: 0.9); 1 turns the
  // smoothing off.
  double alpha = 0.9;
};

// The smoothing alone, as pure tensor code (no host synchronisation).
// probs [U, C] and queries [U, D] (L2-normalised projections); the buffer's
// keys [K, D] (L2-normalised), their distributions key_probs [K, C] and
// key_valid [K] (bool: entries written so far). Returns
// alpha probs + (1 - alpha) softmax(queries keys^T / T) key_probs over the
// valid entries, float32 without gradient; with no valid entry, probs
// unchanged. Throws c10::Error on mismatched shapes.
torch::Tensor SmoothPseudoLabels(const torch::Tensor& probs,
                                 const torch::Tensor& queries,
                                 const torch::Tensor& keys,
                                 const torch::Tensor& key_probs,
                                 const torch::Tensor& key_valid,
                                 double temperature, double alpha);

// The ring buffer. Its state lives on one device and every update is in
// place without host reads, so a learner can capture steps in a CUDA graph.
// Not thread-safe.
class PseudoLabelMemory {
 public:
  // Throws c10::Error unless size, dim and num_classes are positive,
  // temperature > 0 and alpha is in [0, 1].
  PseudoLabelMemory(const PseudoLabelMemoryOptions& options,
                    torch::Device device);

  // SmoothPseudoLabels over the buffer as it is (the step's own entries are
  // pushed afterwards, as in CoMatch).
  torch::Tensor Smooth(const torch::Tensor& probs,
                       const torch::Tensor& queries) const;

  // Writes `keys` [N, D] (L2-normalised) and their distributions [N, C]
  // over the oldest entries, N <= size. Throws c10::Error on bad shapes.
  void Push(const torch::Tensor& keys, const torch::Tensor& key_probs);

  const PseudoLabelMemoryOptions& options() const { return options_; }
  const torch::Tensor& keys() const { return keys_; }            // [K, D]
  const torch::Tensor& key_probs() const { return key_probs_; }  // [K, C]
  const torch::Tensor& valid() const { return valid_; }          // [K] bool

  // The buffer under `key`; Load throws c10::Error when the archive lacks
  // it or its shapes differ.
  void Save(torch::serialize::OutputArchive& archive,
            const std::string& key) const;
  void Load(torch::serialize::InputArchive& archive, const std::string& key);

 private:
  PseudoLabelMemoryOptions options_;
  torch::Tensor keys_;
  torch::Tensor key_probs_;
  torch::Tensor valid_;
  torch::Tensor next_;  // 0-d int64: the entry the next push starts at
};

}  // namespace trainer

#endif  // TRAINER_OBJECTIVES_PSEUDO_LABEL_MEMORY_H_
