// Selection strategies: which unlabelled train ids to buy labels for next.
#ifndef TRAINER_SELECT_SELECTION_STRATEGY_H_
#define TRAINER_SELECT_SELECTION_STRATEGY_H_

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "trainer/rpc/selector_client.h"

namespace trainer {

// What a strategy may look at. Row i of each tensor belongs to pool_ids[i].
struct PoolState {
  std::vector<int64_t> pool_ids;  // candidate train ids, labelled included
  torch::Tensor embeddings;       // [N, D] floating point, any device
  // [N, C] class probabilities, or undefined before any model was trained.
  torch::Tensor probabilities;
  std::vector<int64_t> labelled_ids;  // already bought; never selected
  // The bought labels of labelled_ids, in the same order, or empty (then
  // strategies that need them fall back). Sent to remote selectors too.
  std::vector<int64_t> labelled_labels;
  int round = 0;                      // active-learning round
  uint64_t seed = 0;                  // random choices depend on (seed, round)
};

// Knobs of the built-in strategies.
struct StrategyOptions {
  // typiclust: at most this many Lloyd iterations of k-means.
  int kmeans_iterations = 30;
  // typiclust: Lloyd's stops once at most this fraction of points changed
  // cluster in an iteration (0: only when none did).
  double kmeans_tolerance = 1e-3;
  // typiclust: at most this many clusters (the paper's cap).
  int64_t max_clusters = 500;
  // typiclust: clusters of at most this many points are skipped while larger
  // ones remain (the paper's 5).
  int64_t min_cluster_size = 5;
  // typiclust: neighbours in the typicality estimate (the paper's 20); a
  // cluster of n points uses min(this, n / 2).
  int typicality_neighbors = 20;
  // typiclust: a point's neighbours are looked for among at most this many
  // randomly chosen points of its cluster (all points when the cluster is
  // smaller).
  int64_t typicality_max_references = 2000;
  // margin: the count * this lowest-margin points are the candidates among
  // which k-center picks `count`.
  int64_t margin_candidates_factor = 10;
  // probcover: radius of the balls on L2-normalised embeddings (distances
  // lie in [0, 2]); 0 chooses it from the pool (see probcover_purity).
  double probcover_delta = 0;
  // probcover, automatic delta: the largest delta at which at least this
  // fraction of balls is pure (holds one k-means cluster only; the paper's
  // alpha = 0.95).
  double probcover_purity = 0.95;
  // probcover, automatic delta: k of the k-means whose clusters are the
  // pseudo-labels (the paper: the number of classes).
  int64_t probcover_clusters = 10;
  // probcover, automatic delta: purity and graph size are measured on at most
  // this many randomly chosen balls (all when the pool is smaller).
  int64_t probcover_purity_sample = 5000;
  // probcover: at most this many edges in the ball graph (4 bytes each). An
  // automatic delta shrinks to stay under 80 % of it (estimated); an explicit
  // one that exceeds it is RESOURCE_EXHAUSTED.
  int64_t probcover_max_edges = int64_t{1} << 26;
  // Largest block of pairwise distances computed at once (elements).
  int64_t max_block_elements = int64_t{1} << 24;
  // grpc://: deadline of one Select call on the remote selector.
  absl::Duration selector_deadline = absl::Minutes(10);
  // grpc://: polled while retrying an unreachable selector; once true the
  // call ends CANCELLED (SelectorClientOptions::stop_requested). Empty:
  // never.
  std::function<bool()> stop_requested;
};

// A way of choosing the ids to label next. Not thread-safe.
class SelectionStrategy {
 public:
  virtual ~SelectionStrategy();

  // The spec it was made from ("kcenter", "grpc://host:port", ...): the
  // strategy name recorded with each oracle query.
  virtual std::string name() const = 0;

  // Returns `count` distinct ids from pool.pool_ids, none in
  // pool.labelled_ids, in the order chosen. INVALID_ARGUMENT if count exceeds
  // the unlabelled pool ids or the tensors do not match pool_ids or hold NaN
  // or infinite values (a diverged model's);
  // RESOURCE_EXHAUSTED if the device ran out of memory; INTERNAL for other
  // torch errors. On CPU a deterministic function of (pool, count); on CUDA
  // float atomics in typiclust's k-means may break near-ties differently.
  virtual absl::StatusOr<std::vector<int64_t>> Select(const PoolState& pool,
                                                      int64_t count) = 0;

  // Why the last Select departed from name(), e.g. "margin: no probabilities
  // yet, selected by typiclust", or what it found (probcover: its delta and
  // the pool's coverage); empty when there is nothing to say.
  virtual std::string last_note() const;
};

// The specs MakeSelectionStrategy accepts, for flag help and error messages.
inline constexpr char kSelectionStrategySpecs[] =
    "random | kcenter | typiclust | typiclust_balanced | margin | probcover | "
    "grpc://host:port";

// Makes the strategy named by `spec`:
//   random          uniform without replacement, seeded by (seed, round)
//   kcenter         greedy k-center coreset on L2-normalised embeddings
//   typiclust       TypiClust (Hacohen et al. 2022): the most typical point
//                   of each of the largest clusters without a label
//   typiclust_balanced  typiclust's clusters, each labelled with the class
//                   the model predicts for it; each pick goes to the class
//                   with the fewest bought labels so far (typiclust until
//                   there are predictions and labels)
//   margin          smallest top-2 probability margin, made diverse by
//                   k-center; typiclust while there are no probabilities
//   probcover       ProbCover (Yehuda et al. 2022): greedy maximum coverage
//                   of the pool by balls of radius delta around the picks
//   grpc://host:port  an out-of-process selector (proto/selector.proto)
// INVALID_ARGUMENT listing the valid specs if `spec` is none of them.
absl::StatusOr<std::unique_ptr<SelectionStrategy>> MakeSelectionStrategy(
    const std::string& spec, const StrategyOptions& options);

// Sends the pool to an out-of-process selector: tensors are copied to CPU
// float32; num_classes is 0 while probabilities are undefined.
class GrpcSelectionStrategy final : public SelectionStrategy {
 public:
  // `name` is what name() returns, e.g. "grpc://localhost:50061".
  GrpcSelectionStrategy(std::string name,
                        std::unique_ptr<SelectorClient> client);

  std::string name() const override { return name_; }
  absl::StatusOr<std::vector<int64_t>> Select(const PoolState& pool,
                                              int64_t count) override;

 private:
  const std::string name_;
  const std::unique_ptr<SelectorClient> client_;
};

}  // namespace trainer

#endif  // TRAINER_SELECT_SELECTION_STRATEGY_H_
