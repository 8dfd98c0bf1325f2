#include "trainer/select/selection_strategy.h"

#include <torch/utils.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <limits>
#include <numeric>
#include <queue>
#include <random>
#include <tuple>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "trainer/learn/torch_status.h"

namespace trainer {

SelectionStrategy::~SelectionStrategy() = default;

std::string SelectionStrategy::last_note() const { return ""; }

namespace {

constexpr char kGrpcScheme[] = "grpc://";

// Positions (row indices into the pool) split by whether they are labelled.
struct PoolIndex {
  std::vector<int64_t> available;  // unlabelled positions, ascending
  std::vector<int64_t> labelled;   // labelled positions, ascending
};

// Checks the ids and count; INVALID_ARGUMENT naming the first problem.
absl::StatusOr<PoolIndex> IndexPool(const PoolState& pool, int64_t count) {
  if (count < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("count must not be negative, got ", count));
  }
  const absl::flat_hash_set<int64_t> labelled(pool.labelled_ids.begin(),
                                              pool.labelled_ids.end());
  absl::flat_hash_set<int64_t> seen;
  seen.reserve(pool.pool_ids.size());
  PoolIndex index;
  for (size_t i = 0; i < pool.pool_ids.size(); ++i) {
    const int64_t id = pool.pool_ids[i];
    if (!seen.insert(id).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("pool id ", id, " appears more than once"));
    }
    (labelled.contains(id) ? index.labelled : index.available)
        .push_back(static_cast<int64_t>(i));
  }
  if (count > static_cast<int64_t>(index.available.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat("asked for ", count, " ids but only ",
                     index.available.size(), " unlabelled pool ids remain"));
  }
  return index;
}

// E.g. "Float [3, 2]".
std::string DescribeTensor(const torch::Tensor& t) {
  return absl::StrCat(c10::toString(t.scalar_type()), " [",
                      absl::StrJoin(t.sizes(), ", "), "]");
}

// INVALID_ARGUMENT unless every value of `t` is finite: NaN or infinite
// features come from a diverged model, and on them argmax/topk pick
// repeated or labelled rows.
absl::Status CheckFinite(const torch::Tensor& t, const std::string& what) {
  if (t.isfinite().all().item<bool>()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      what, " contain NaN or infinite values: the model has diverged; lower "
            "--lr"));
}

absl::Status CheckEmbeddings(const PoolState& pool) {
  const torch::Tensor& e = pool.embeddings;
  if (!e.defined())
    return absl::InvalidArgumentError("embeddings are undefined");
  if (e.dim() != 2 || e.size(0) != static_cast<int64_t>(pool.pool_ids.size()) ||
      e.size(1) < 1 || !e.is_floating_point()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "embeddings must be a floating point [", pool.pool_ids.size(),
        ", D >= 1] tensor, got ", DescribeTensor(e)));
  }
  return CheckFinite(e, "embeddings");
}

absl::Status CheckProbabilities(const PoolState& pool) {
  const torch::Tensor& p = pool.probabilities;
  if (p.dim() != 2 || p.size(0) != static_cast<int64_t>(pool.pool_ids.size()) ||
      p.size(1) < 2 || !p.is_floating_point()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "probabilities must be a floating point [", pool.pool_ids.size(),
        ", C >= 2] tensor, got ", DescribeTensor(p)));
  }
  return CheckFinite(p, "probabilities");
}

std::vector<int64_t> IdsAt(const PoolState& pool,
                           const std::vector<int64_t>& positions) {
  std::vector<int64_t> ids;
  ids.reserve(positions.size());
  for (int64_t p : positions) ids.push_back(pool.pool_ids[p]);
  return ids;
}

// A generator that depends on both the run's seed and the round.
std::mt19937_64 MakeRng(uint64_t seed, int round) {
  std::seed_seq seq{static_cast<uint32_t>(seed),
                    static_cast<uint32_t>(seed >> 32),
                    static_cast<uint32_t>(round)};
  return std::mt19937_64(seq);
}

// Uniform in [0, n), n > 0, by rejection: the same sequence on every
// standard library (std::uniform_int_distribution is not).
uint64_t UniformBelow(std::mt19937_64& rng, uint64_t n) {
  const uint64_t limit = std::numeric_limits<uint64_t>::max() -
                         std::numeric_limits<uint64_t>::max() % n;
  uint64_t r;
  do {
    r = rng();
  } while (r >= limit);
  return r % n;
}

// The first `k` entries of `values` become a uniform random k-subset, in
// random order (partial Fisher-Yates); the vector is truncated to k.
void SampleInPlace(std::vector<int64_t>& values, int64_t k,
                   std::mt19937_64& rng) {
  const uint64_t n = values.size();
  for (uint64_t i = 0; i < static_cast<uint64_t>(k); ++i) {
    std::swap(values[i], values[i + UniformBelow(rng, n - i)]);
  }
  values.resize(k);
}

torch::Tensor ToTensor(const std::vector<int64_t>& values,
                       const torch::Device& device) {
  return torch::tensor(values, torch::kLong).to(device);
}

std::vector<int64_t> ToVector(const torch::Tensor& t) {
  torch::Tensor cpu = t.to(torch::kCPU, torch::kLong).contiguous();
  return std::vector<int64_t>(cpu.data_ptr<int64_t>(),
                              cpu.data_ptr<int64_t>() + cpu.numel());
}

torch::Tensor MaskOf(const std::vector<int64_t>& positions, int64_t n,
                     const torch::Device& device) {
  torch::Tensor mask = torch::zeros(
      {n}, torch::TensorOptions().dtype(torch::kBool).device(device));
  if (!positions.empty())
    mask.index_fill_(0, ToTensor(positions, device), true);
  return mask;
}

// Rows scaled to unit L2 norm, float32, on the input's device.
torch::Tensor Normalise(const torch::Tensor& x) {
  torch::Tensor f = x.to(torch::kFloat);
  return f / f.norm(2, {1}, /*keepdim=*/true).clamp_min(1e-12);
}

// [a, b] squared L2 distances between the rows of a [a, D] and b [b, D].
torch::Tensor SquaredDistances(const torch::Tensor& a, const torch::Tensor& b) {
  torch::Tensor d = a.pow(2).sum(1, /*keepdim=*/true) +
                    b.pow(2).sum(1).unsqueeze(0) - 2 * a.mm(b.t());
  return d.clamp_min_(0);
}

// [b, N] squared distances from the rows of xb [b, D] to the rows of x, given
// x_t = x.t() and x_sq = [1, N] squared row norms of x: one addmm and an
// in-place add, no other [b, N] temporaries. Entries may be slightly
// negative through rounding.
torch::Tensor SquaredDistancesTo(const torch::Tensor& xb,
                                 const torch::Tensor& x_t,
                                 const torch::Tensor& x_sq) {
  return torch::addmm(x_sq, xb, x_t, /*beta=*/1, /*alpha=*/-2)
      .add_(xb.pow(2).sum(1, /*keepdim=*/true));
}

// Greedy k-center: starting from the centers (or, if there are none, from
// the candidate nearest the candidates' mean), repeatedly takes the candidate
// farthest from its nearest center and makes it a center. x: [N, D] float;
// candidate: [N] bool on x's device. Returns `count` candidate positions in
// the order taken; count must not exceed the candidates. One matrix-vector
// product per pick, no host synchronisation inside the loop.
std::vector<int64_t> GreedyKCenter(const torch::Tensor& x,
                                   const torch::Tensor& candidate,
                                   const std::vector<int64_t>& centers,
                                   int64_t count, int64_t max_block_elements) {
  if (count == 0) return {};
  const int64_t n = x.size(0);
  const torch::Tensor x_sq = x.pow(2).sum(1);
  torch::Tensor min_dist =
      torch::full({n}, std::numeric_limits<float>::infinity(), x.options());
  const auto take = [&](const torch::Tensor& idx) {
    const torch::Tensor c = x.index_select(0, idx).squeeze(0);
    const torch::Tensor d = (x_sq + c.dot(c) - 2 * x.mv(c)).clamp_min_(0);
    min_dist = torch::minimum(min_dist, d);
    min_dist.index_fill_(0, idx, -1.0);
  };

  if (!centers.empty()) {
    const torch::Tensor center_pos = ToTensor(centers, x.device());
    const int64_t block = std::max<int64_t>(1, max_block_elements / n);
    for (int64_t start = 0; start < center_pos.size(0); start += block) {
      const torch::Tensor c =
          x.index_select(0, center_pos.slice(0, start, start + block));
      min_dist = torch::minimum(min_dist, SquaredDistances(x, c).amin(1));
    }
  }
  // Centers and non-candidates get -1, below every real distance, forever.
  min_dist.masked_fill_(candidate.logical_not(), -1.0);

  torch::Tensor selected =
      torch::empty({count}, x.options().dtype(torch::kLong));
  int64_t k = 0;
  if (centers.empty()) {
    const torch::Tensor w = candidate.to(torch::kFloat).unsqueeze(1);
    const torch::Tensor mean = (x * w).sum(0, /*keepdim=*/true) / w.sum();
    torch::Tensor d = SquaredDistances(x, mean).squeeze(1);
    d.masked_fill_(candidate.logical_not(),
                   std::numeric_limits<float>::infinity());
    const torch::Tensor first = d.argmin().view({1});
    selected.narrow(0, 0, 1).copy_(first);
    take(first);
    k = 1;
  }
  for (; k < count; ++k) {
    const torch::Tensor next = min_dist.argmax().view({1});
    selected.narrow(0, k, 1).copy_(next);
    take(next);
  }
  return ToVector(selected);
}

// Index of the nearest center for each row of x, [N] long.
torch::Tensor AssignToCenters(const torch::Tensor& x,
                              const torch::Tensor& centers,
                              int64_t max_block_elements) {
  const int64_t n = x.size(0);
  const int64_t block =
      std::max<int64_t>(1, max_block_elements / centers.size(0));
  // argmin_c |x - c|^2 = argmin_c (|c|^2 - 2 x.c): one addmm per block.
  const torch::Tensor c_sq = centers.pow(2).sum(1).unsqueeze(0);
  const torch::Tensor centers_t = centers.t();
  std::vector<torch::Tensor> parts;
  for (int64_t start = 0; start < n; start += block) {
    const torch::Tensor xb = x.slice(0, start, start + block);
    parts.push_back(
        torch::addmm(c_sq, xb, centers_t, /*beta=*/1, /*alpha=*/-2).argmin(1));
  }
  return torch::cat(parts);
}

// k-means on the rows of x [N, D] float: k-means++ seeding (sampled on the
// host from `rng`) then Lloyd's iterations until at most tolerance * N rows
// change cluster or `iterations` center updates were made. An emptied cluster
// keeps its center.
// Returns the cluster of each row, [N] long on x's device; fewer than k
// clusters are used when x has fewer than k distinct rows.
torch::Tensor KMeans(const torch::Tensor& x, int64_t k, int iterations,
                     double tolerance, std::mt19937_64& rng,
                     int64_t max_block_elements) {
  const int64_t n = x.size(0);
  std::vector<int64_t> seeds = {static_cast<int64_t>(UniformBelow(rng, n))};
  const torch::Tensor x_sq = x.pow(2).sum(1);
  const auto dist_to = [&](int64_t pos) {
    const torch::Tensor c = x[pos];
    return (x_sq + c.dot(c) - 2 * x.mv(c)).clamp_min_(0);
  };
  torch::Tensor min_d2 = dist_to(seeds[0]);
  while (static_cast<int64_t>(seeds.size()) < k) {
    const torch::Tensor w = min_d2.to(torch::kCPU, torch::kDouble).contiguous();
    const double* weights = w.data_ptr<double>();
    const double total = std::accumulate(weights, weights + n, 0.0);
    if (!(total > 0.0)) break;
    const double r = static_cast<double>(rng() >> 11) * 0x1.0p-53 * total;
    double acc = 0.0;
    int64_t pick = -1;
    for (int64_t i = 0; i < n; ++i) {
      if (weights[i] <= 0.0) continue;
      pick = i;
      acc += weights[i];
      if (acc > r) break;
    }
    seeds.push_back(pick);
    min_d2 = torch::minimum(min_d2, dist_to(pick));
  }

  torch::Tensor centers = x.index_select(0, ToTensor(seeds, x.device()));
  const int64_t clusters = centers.size(0);
  torch::Tensor assign = AssignToCenters(x, centers, max_block_elements);
  const torch::Tensor ones = torch::ones({n}, x.options());
  for (int it = 0; it < iterations; ++it) {
    const torch::Tensor sums = torch::zeros({clusters, x.size(1)}, x.options())
                                   .index_add_(0, assign, x);
    const torch::Tensor counts =
        torch::zeros({clusters}, x.options()).index_add_(0, assign, ones);
    centers = torch::where((counts > 0).unsqueeze(1),
                           sums / counts.clamp_min(1).unsqueeze(1), centers);
    torch::Tensor next = AssignToCenters(x, centers, max_block_elements);
    const int64_t changed = next.ne(assign).sum().item<int64_t>();
    assign = std::move(next);
    if (changed <= tolerance * n) break;
  }
  return assign;
}

// The member with the highest typicality, 1 / (mean L2 distance to its k
// nearest other members), k = min(typicality_neighbors, references / 2).
// The references are at most typicality_max_references members drawn from
// `rng` (all members when fewer); every member is scored against them.
// members: positions into x, not empty.
int64_t MostTypical(const torch::Tensor& x, const std::vector<int64_t>& members,
                    const StrategyOptions& options, std::mt19937_64& rng) {
  const int64_t n = members.size();
  if (n == 1) return members[0];
  std::vector<int64_t> refs(n);
  std::iota(refs.begin(), refs.end(), 0);
  if (n > options.typicality_max_references) {
    SampleInPlace(refs, options.typicality_max_references, rng);
  }
  const int64_t m = refs.size();
  const int64_t k = std::max<int64_t>(
      1, std::min<int64_t>(options.typicality_neighbors, m / 2));
  // self_ref[i]: the reference column that is member i itself, or -1.
  std::vector<int64_t> self_ref(n, -1);
  for (int64_t j = 0; j < m; ++j) self_ref[refs[j]] = j;

  const torch::Device device = x.device();
  const torch::Tensor points = x.index_select(0, ToTensor(members, device));
  const torch::Tensor ref_points =
      points.index_select(0, ToTensor(refs, device));
  const int64_t block = std::max<int64_t>(1, options.max_block_elements / m);
  std::vector<torch::Tensor> mean_dist;
  for (int64_t start = 0; start < n; start += block) {
    const int64_t end = std::min(n, start + block);
    torch::Tensor d2 =
        SquaredDistances(points.slice(0, start, end), ref_points);
    std::vector<int64_t> rows, cols;
    for (int64_t i = start; i < end; ++i) {
      if (self_ref[i] < 0) continue;
      rows.push_back(i - start);
      cols.push_back(self_ref[i]);
    }
    if (!rows.empty()) {
      d2.index_put_({ToTensor(rows, device), ToTensor(cols, device)},
                    std::numeric_limits<float>::infinity());
    }
    const torch::Tensor nearest =
        std::get<0>(d2.topk(k, /*dim=*/1, /*largest=*/false));
    mean_dist.push_back(nearest.sqrt().mean(1));
  }
  return members[torch::cat(mean_dist).argmin().item<int64_t>()];
}

// Turns torch exceptions into a Status and disables autograd.
class TorchStrategy : public SelectionStrategy {
 public:
  absl::StatusOr<std::vector<int64_t>> Select(const PoolState& pool,
                                              int64_t count) final {
    torch::NoGradGuard no_grad;
    try {
      return SelectImpl(pool, count);
    } catch (const c10::Error& e) {
      return TorchErrorToStatus(e, name());
    }
  }

 protected:
  virtual absl::StatusOr<std::vector<int64_t>> SelectImpl(const PoolState& pool,
                                                          int64_t count) = 0;
};

class RandomStrategy final : public TorchStrategy {
 public:
  std::string name() const override { return "random"; }

 protected:
  absl::StatusOr<std::vector<int64_t>> SelectImpl(const PoolState& pool,
                                                  int64_t count) override {
    ASSIGN_OR_RETURN(PoolIndex index, IndexPool(pool, count));
    std::mt19937_64 rng = MakeRng(pool.seed, pool.round);
    SampleInPlace(index.available, count, rng);
    return IdsAt(pool, index.available);
  }
};

class KCenterStrategy final : public TorchStrategy {
 public:
  explicit KCenterStrategy(const StrategyOptions& options)
      : options_(options) {}
  std::string name() const override { return "kcenter"; }

 protected:
  absl::StatusOr<std::vector<int64_t>> SelectImpl(const PoolState& pool,
                                                  int64_t count) override {
    ASSIGN_OR_RETURN(PoolIndex index, IndexPool(pool, count));
    RETURN_IF_ERROR(CheckEmbeddings(pool));
    const torch::Tensor x = Normalise(pool.embeddings);
    const torch::Tensor candidate =
        MaskOf(index.available, x.size(0), x.device());
    return IdsAt(pool, GreedyKCenter(x, candidate, index.labelled, count,
                                     options_.max_block_elements));
  }

 private:
  const StrategyOptions options_;
};

// Typiclust's clusters for one selection: K-means with K = min(|labelled| +
// count, max_clusters, N) on the normalised embeddings of the whole pool,
// and the order of preference among them: fewer labelled points first, then
// larger first; clusters of at most min_cluster_size points only once the
// others are used up (order[primary..]).
struct TypiclustClusters {
  torch::Tensor x;                             // normalised embeddings
  std::vector<int64_t> assign;                 // cluster of each pool row
  std::vector<int64_t> size, labelled;         // per cluster
  std::vector<std::vector<int64_t>> unpicked;  // per cluster: available rows
  std::vector<int64_t> order;
  size_t primary = 0;
};

TypiclustClusters ClusterPool(const PoolState& pool, const PoolIndex& index,
                              int64_t count, const StrategyOptions& options,
                              std::mt19937_64& rng) {
  TypiclustClusters c;
  c.x = Normalise(pool.embeddings);
  const int64_t n = c.x.size(0);
  const int64_t k =
      std::min<int64_t>({static_cast<int64_t>(index.labelled.size()) + count,
                         options.max_clusters, n});
  c.assign = ToVector(KMeans(c.x, k, options.kmeans_iterations,
                             options.kmeans_tolerance, rng,
                             options.max_block_elements));
  const int64_t clusters =
      *std::max_element(c.assign.begin(), c.assign.end()) + 1;
  c.size.assign(clusters, 0);
  c.labelled.assign(clusters, 0);
  c.unpicked.resize(clusters);
  for (int64_t i = 0; i < n; ++i) ++c.size[c.assign[i]];
  for (int64_t p : index.labelled) ++c.labelled[c.assign[p]];
  for (int64_t p : index.available) c.unpicked[c.assign[p]].push_back(p);
  c.order.resize(clusters);
  std::iota(c.order.begin(), c.order.end(), 0);
  std::sort(c.order.begin(), c.order.end(), [&](int64_t a, int64_t b) {
    return std::tie(c.labelled[a], c.size[b], a) <
           std::tie(c.labelled[b], c.size[a], b);
  });
  const auto small_last = std::stable_partition(
      c.order.begin(), c.order.end(),
      [&](int64_t cluster) { return c.size[cluster] > options.min_cluster_size; });
  c.primary = small_last - c.order.begin();
  return c;
}

// Takes the most typical unpicked point of `cluster` into `selected`.
void TakeMostTypical(TypiclustClusters& c, int64_t cluster,
                     const StrategyOptions& options, std::mt19937_64& rng,
                     std::vector<int64_t>& selected) {
  std::vector<int64_t>& members = c.unpicked[cluster];
  const int64_t pick = MostTypical(c.x, members, options, rng);
  members.erase(std::find(members.begin(), members.end(), pick));
  selected.push_back(pick);
}

// Typiclust's round robin: visits the clusters in order, taking the most
// typical unpicked point of each, until `selected` holds `count` rows.
void RoundRobin(TypiclustClusters& c, int64_t count,
                const StrategyOptions& options, std::mt19937_64& rng,
                std::vector<int64_t>& selected) {
  bool all_clusters = c.primary == 0;
  while (static_cast<int64_t>(selected.size()) < count) {
    bool progress = false;
    const size_t visit = all_clusters ? c.order.size() : c.primary;
    for (size_t i = 0;
         i < visit && static_cast<int64_t>(selected.size()) < count; ++i) {
      if (c.unpicked[c.order[i]].empty()) continue;
      TakeMostTypical(c, c.order[i], options, rng, selected);
      progress = true;
    }
    if (!progress) all_clusters = true;
  }
}

class TypiclustStrategy final : public TorchStrategy {
 public:
  explicit TypiclustStrategy(const StrategyOptions& options)
      : options_(options) {}
  std::string name() const override { return "typiclust"; }

 protected:
  // The clusters of ClusterPool, visited round robin in their order; each
  // visit takes the most typical point among the cluster's unlabelled,
  // unselected points. Differences from the authors' code: k-means++ and
  // Lloyd's on the device instead of scikit-learn, plain rather than squared
  // L2 distances in the typicality, and typicality measured against at most
  // typicality_max_references points of a cluster (only clusters larger than
  // that are affected: with 2000 references, an estimate of each point's
  // 20-NN density that keeps the cost linear in the cluster's size).
  absl::StatusOr<std::vector<int64_t>> SelectImpl(const PoolState& pool,
                                                  int64_t count) override {
    ASSIGN_OR_RETURN(PoolIndex index, IndexPool(pool, count));
    RETURN_IF_ERROR(CheckEmbeddings(pool));
    if (count == 0) return std::vector<int64_t>();
    std::mt19937_64 rng = MakeRng(pool.seed, pool.round);
    TypiclustClusters clusters = ClusterPool(pool, index, count, options_, rng);
    std::vector<int64_t> selected;
    selected.reserve(count);
    RoundRobin(clusters, count, options_, rng, selected);
    return IdsAt(pool, selected);
  }

 private:
  const StrategyOptions options_;
};

class BalancedTypiclustStrategy final : public TorchStrategy {
 public:
  explicit BalancedTypiclustStrategy(const StrategyOptions& options)
      : options_(options), fallback_(options) {}
  std::string name() const override { return "typiclust_balanced"; }
  std::string last_note() const override { return note_; }

 protected:
  // The clusters of ClusterPool, each with a predicted class: the argmax of
  // its members' mean probability. Each pick goes to the class with the
  // fewest labels so far (bought plus picked; ties: the class whose best
  // cluster has fewer labels, then the larger cluster, then the lower
  // class), taking the most typical unpicked point of that class's best
  // cluster (fewest labelled and picked points, then largest; small
  // clusters last; when no cluster predicted as that class has points left,
  // the cluster with the highest mean probability of it), so that a class
  // the model stopped predicting still gets labels.
  absl::StatusOr<std::vector<int64_t>> SelectImpl(const PoolState& pool,
                                                  int64_t count) override {
    note_.clear();
    if (!pool.probabilities.defined() || pool.labelled_labels.empty()) {
      note_ = "typiclust_balanced: no predictions or labels yet, selected by "
              "typiclust";
      return fallback_.Select(pool, count);
    }
    ASSIGN_OR_RETURN(PoolIndex index, IndexPool(pool, count));
    RETURN_IF_ERROR(CheckEmbeddings(pool));
    RETURN_IF_ERROR(CheckProbabilities(pool));
    const int64_t classes = pool.probabilities.size(1);
    if (pool.labelled_labels.size() != pool.labelled_ids.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "labelled_labels has ", pool.labelled_labels.size(),
          " entries for ", pool.labelled_ids.size(), " labelled ids"));
    }
    std::vector<int64_t> have(classes, 0);
    for (int64_t label : pool.labelled_labels) {
      if (label < 0 || label >= classes) {
        return absl::InvalidArgumentError(absl::StrCat(
            "label ", label, " is outside the ", classes,
            " classes of the probabilities"));
      }
      ++have[label];
    }
    if (count == 0) return std::vector<int64_t>();
    std::mt19937_64 rng = MakeRng(pool.seed, pool.round);
    TypiclustClusters c = ClusterPool(pool, index, count, options_, rng);
    const int64_t num_clusters = c.size.size();
    const torch::Tensor probs =
        pool.probabilities.to(torch::kCPU, torch::kFloat).contiguous();
    const torch::Tensor sums =
        torch::zeros({num_clusters, classes})
            .index_add_(0, torch::tensor(c.assign, torch::kLong), probs);
    const std::vector<int64_t> cluster_class = ToVector(sums.argmax(1));

    // rank[cluster]: its place in c.order (small clusters come last).
    std::vector<int64_t> taken = c.labelled, rank(num_clusters);
    for (size_t i = 0; i < c.order.size(); ++i) rank[c.order[i]] = i;
    const auto small = [&](int64_t cluster) {
      return static_cast<size_t>(rank[cluster]) >= c.primary;
    };
    // The best cluster of `cls` with points left: among those predicted as
    // `cls`, and when none is left (a class the model no longer predicts
    // for any cluster), the one with the highest mean probability of `cls`;
    // -1 when no cluster has points left.
    const torch::Tensor mean_tensor =
        (sums / torch::tensor(c.size, torch::kFloat).clamp_min(1).unsqueeze(1))
            .contiguous();
    const std::vector<float> mean_probs(
        mean_tensor.data_ptr<float>(),
        mean_tensor.data_ptr<float>() + mean_tensor.numel());
    const auto best_cluster = [&](int64_t cls) {
      int64_t best = -1;
      for (int64_t k = 0; k < num_clusters; ++k) {
        if (cluster_class[k] != cls || c.unpicked[k].empty()) continue;
        if (best < 0 ||
            std::make_tuple(small(k), taken[k], -c.size[k], rank[k]) <
                std::make_tuple(small(best), taken[best], -c.size[best],
                                rank[best])) {
          best = k;
        }
      }
      if (best >= 0) return best;
      float most = -1;
      for (int64_t k = 0; k < num_clusters; ++k) {
        if (c.unpicked[k].empty()) continue;
        const float p = mean_probs[k * classes + cls];
        if (p > most) {
          most = p;
          best = k;
        }
      }
      return best;
    };
    std::vector<int64_t> selected, picked_for(classes, 0);
    selected.reserve(count);
    while (static_cast<int64_t>(selected.size()) < count) {
      int64_t cls = -1, cluster = -1;
      for (int64_t k = 0; k < classes; ++k) {
        const int64_t candidate = best_cluster(k);
        if (candidate < 0) continue;
        if (cls < 0 ||
            std::make_tuple(have[k], small(candidate), taken[candidate],
                            -c.size[candidate], k) <
                std::make_tuple(have[cls], small(cluster), taken[cluster],
                                -c.size[cluster], cls)) {
          cls = k;
          cluster = candidate;
        }
      }
      if (cls < 0) break;
      TakeMostTypical(c, cluster, options_, rng, selected);
      ++have[cls];
      ++taken[cluster];
      ++picked_for[cls];
    }
    RoundRobin(c, count, options_, rng, selected);
    note_ = absl::StrCat("typiclust_balanced: picks per predicted class ",
                         absl::StrJoin(picked_for, "/"),
                         "; labels per class after them ",
                         absl::StrJoin(have, "/"));
    return IdsAt(pool, selected);
  }

 private:
  const StrategyOptions options_;
  TypiclustStrategy fallback_;
  std::string note_;
};

class MarginStrategy final : public TorchStrategy {
 public:
  explicit MarginStrategy(const StrategyOptions& options)
      : options_(options), fallback_(options) {}
  std::string name() const override { return "margin"; }
  std::string last_note() const override { return note_; }

 protected:
  absl::StatusOr<std::vector<int64_t>> SelectImpl(const PoolState& pool,
                                                  int64_t count) override {
    note_.clear();
    if (!pool.probabilities.defined()) {
      note_ = "margin: no probabilities yet, selected by typiclust";
      std::cerr << note_ << std::endl;
      return fallback_.Select(pool, count);
    }
    ASSIGN_OR_RETURN(PoolIndex index, IndexPool(pool, count));
    RETURN_IF_ERROR(CheckEmbeddings(pool));
    RETURN_IF_ERROR(CheckProbabilities(pool));
    if (count == 0) return std::vector<int64_t>();
    const torch::Tensor x = Normalise(pool.embeddings);
    const torch::Tensor top2 = std::get<0>(
        pool.probabilities.to(x.device(), torch::kFloat).topk(2, /*dim=*/1));
    torch::Tensor margin = top2.select(1, 0) - top2.select(1, 1);
    const torch::Tensor available =
        MaskOf(index.available, x.size(0), x.device());
    margin.masked_fill_(available.logical_not(),
                        std::numeric_limits<float>::infinity());
    const int64_t candidates = std::min<int64_t>(
        index.available.size(), options_.margin_candidates_factor * count);
    const torch::Tensor lowest =
        std::get<1>(margin.topk(candidates, /*dim=*/0, /*largest=*/false));
    const torch::Tensor candidate =
        torch::zeros_like(available).index_fill_(0, lowest, true);
    return IdsAt(pool, GreedyKCenter(x, candidate, index.labelled, count,
                                     options_.max_block_elements));
  }

 private:
  const StrategyOptions options_;
  TypiclustStrategy fallback_;
  std::string note_;
};

// probcover's largest block of pair distances on CPU (elements).
constexpr int64_t kCpuBlockElements = int64_t{1} << 20;

// The delta-ball graph in CSR form: row i's out-neighbours (the positions
// within delta of i, i itself included) are cols[row_start[i],
// row_start[i + 1]).
struct BallGraph {
  std::vector<int64_t> row_start;
  std::vector<int32_t> cols;
};

// Builds the graph of x [N, D] (float, rows of unit norm) block by block on
// x's device: no more than max_block_elements distances exist at once.
// RESOURCE_EXHAUSTED once it would hold more than max_edges edges.
absl::StatusOr<BallGraph> BuildBallGraph(const torch::Tensor& x, double delta,
                                         int64_t max_edges,
                                         int64_t max_block_elements) {
  const int64_t n = x.size(0);
  if (n > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat("probcover: pool of ", n, " points is too large"));
  }
  const double threshold = delta * delta;
  const int64_t block = std::max<int64_t>(1, max_block_elements / n);
  const torch::Tensor x_t = x.t();
  const torch::Tensor x_sq = x.pow(2).sum(1).unsqueeze(0);
  BallGraph graph;
  graph.row_start.reserve(n + 1);
  graph.row_start.push_back(0);
  for (int64_t start = 0; start < n; start += block) {
    torch::Tensor d2 =
        SquaredDistancesTo(x.slice(0, start, start + block), x_t, x_sq);
    d2.diagonal(/*offset=*/start, 0, 1).fill_(0);  // a ball holds its centre
    const torch::Tensor within = d2.lt(threshold);
    const std::vector<int64_t> counts = ToVector(within.sum(1));
    const int64_t edges =
        std::accumulate(counts.begin(), counts.end(), static_cast<int64_t>(0));
    if (static_cast<int64_t>(graph.cols.size()) + edges > max_edges) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "probcover: the ball graph of delta ", delta, " on ", n,
          " points has more than probcover_max_edges = ", max_edges,
          " edges; use a smaller delta or raise the cap"));
    }
    for (int64_t c : counts)
      graph.row_start.push_back(graph.row_start.back() + c);
    // nonzero() lists the entries row by row, columns ascending.
    const torch::Tensor cols =
        within.nonzero().select(1, 1).to(torch::kCPU, torch::kInt).contiguous();
    graph.cols.insert(graph.cols.end(), cols.data_ptr<int32_t>(),
                      cols.data_ptr<int32_t>() + cols.numel());
  }
  return graph;
}

// How the automatic delta came about.
struct DeltaChoice {
  double delta = 0;
  double pure_delta = 0;  // the largest delta keeping the purity
  bool capped = false;    // delta < pure_delta to respect the edge cap
  int64_t sample = 0;     // balls measured
};

// ProbCover's label-free delta: k-means pseudo-labels on x [N, D] (unit
// rows), then, on a sample of balls, the largest delta at which at least
// options.probcover_purity of them hold one pseudo-label only. A ball around
// i is pure exactly while delta <= r_i, the distance from i to the nearest
// point of another cluster, so that delta is a quantile of the r_i. It is
// lowered if the sample's pair distances predict more than 80 % of
// probcover_max_edges edges, and never exceeds 2 (every pair but antipodes).
DeltaChoice ChooseDelta(const torch::Tensor& x, const StrategyOptions& options,
                        int64_t block_elements, std::mt19937_64& rng) {
  const int64_t n = x.size(0);
  const torch::Tensor assign = KMeans(
      x, std::min<int64_t>(options.probcover_clusters, n),
      options.kmeans_iterations, options.kmeans_tolerance, rng, block_elements);
  std::vector<int64_t> rows(n);
  std::iota(rows.begin(), rows.end(), 0);
  if (n > options.probcover_purity_sample) {
    SampleInPlace(rows, options.probcover_purity_sample, rng);
    std::sort(rows.begin(), rows.end());
  }
  const int64_t s = rows.size();
  const torch::Tensor sample = ToTensor(rows, x.device());

  // A histogram of squared pair distances, in [0, 4].
  constexpr int64_t kBins = 4000;
  constexpr double kMaxDistance = 2.0;
  constexpr double kMaxSquared = kMaxDistance * kMaxDistance;
  torch::Tensor histogram = torch::zeros({kBins}, x.options());
  const torch::Tensor x_t = x.t();
  const torch::Tensor x_sq = x.pow(2).sum(1).unsqueeze(0);
  std::vector<torch::Tensor> nearest_other;
  const int64_t block = std::max<int64_t>(1, block_elements / n);
  for (int64_t start = 0; start < s; start += block) {
    const torch::Tensor pos = sample.slice(0, start, start + block);
    torch::Tensor d2 =
        SquaredDistancesTo(x.index_select(0, pos), x_t, x_sq).clamp_min_(0);
    const torch::Tensor same =
        assign.index_select(0, pos).unsqueeze(1).eq(assign.unsqueeze(0));
    nearest_other.push_back(
        d2.masked_fill(same, std::numeric_limits<float>::infinity()).amin(1));
    histogram +=
        torch::histc(d2.clamp_max_(kMaxSquared), kBins, 0, kMaxSquared);
  }
  torch::Tensor r = std::get<0>(torch::cat(nearest_other)
                                    .sqrt()
                                    .sort(
                                        /*dim=*/0, /*descending=*/true));
  const int64_t keep = std::clamp<int64_t>(
      static_cast<int64_t>(std::ceil(options.probcover_purity * s)), 1, s);
  DeltaChoice choice;
  choice.sample = s;
  choice.pure_delta = std::min(r[keep - 1].item<double>(), kMaxDistance);

  // Estimated edges for delta^2 at the upper end of bin b: the sample's pairs
  // up to there, scaled by n / s.
  const torch::Tensor cumulative =
      histogram.to(torch::kCPU, torch::kDouble).cumsum(0).contiguous();
  const double* pairs = cumulative.data_ptr<double>();
  const double budget = 0.8 * static_cast<double>(options.probcover_max_edges);
  const double bin_width = kMaxSquared / kBins;
  double cap_delta = std::sqrt(bin_width);  // the smallest delta tried
  for (int64_t b = 0; b < kBins; ++b) {
    if (pairs[b] * n / s > budget) break;
    cap_delta = std::sqrt((b + 1) * bin_width);
  }
  choice.capped = cap_delta < choice.pure_delta;
  choice.delta = std::min(choice.pure_delta, cap_delta);
  return choice;
}

class ProbCoverStrategy final : public TorchStrategy {
 public:
  explicit ProbCoverStrategy(const StrategyOptions& options)
      : options_(options) {}
  std::string name() const override { return "probcover"; }
  std::string last_note() const override { return note_; }

 protected:
  // Greedy maximum coverage (the authors' algorithm): positions within delta
  // of a labelled point start covered; each pick is the unlabelled point
  // whose ball holds the most uncovered points (ties: lowest position), and
  // covers them. Once every point is covered the rest of `count` is drawn at
  // random from the unlabelled points left. Differences from the authors'
  // code: an automatic delta (the paper's recipe, measured on a sample);
  // picks never fall on labelled points; lazy evaluation of the gains, which
  // gives the same picks as recomputing them all.
  absl::StatusOr<std::vector<int64_t>> SelectImpl(const PoolState& pool,
                                                  int64_t count) override {
    note_.clear();
    ASSIGN_OR_RETURN(PoolIndex index, IndexPool(pool, count));
    RETURN_IF_ERROR(CheckEmbeddings(pool));
    if (count == 0) return std::vector<int64_t>();
    const torch::Tensor x = Normalise(pool.embeddings);
    const int64_t n = x.size(0);
    std::mt19937_64 rng = MakeRng(pool.seed, pool.round);
    // On CPU, blocks of 4 MB: the allocator reuses them, where fresh pages
    // for each larger block cost more than the arithmetic (5x at 60,000).
    const int64_t block_elements =
        x.is_cpu() ? std::min(options_.max_block_elements, kCpuBlockElements)
                   : options_.max_block_elements;

    double delta = options_.probcover_delta;
    std::string delta_note = "given";
    if (delta == 0) {
      const DeltaChoice choice = ChooseDelta(x, options_, block_elements, rng);
      delta = choice.delta;
      delta_note = absl::StrCat(
          "auto: purity ", options_.probcover_purity, " over ",
          options_.probcover_clusters, " k-means clusters on ", choice.sample,
          " balls",
          choice.capped ? absl::StrCat(", lowered from ", choice.pure_delta,
                                       " to fit probcover_max_edges")
                        : "");
    }
    ASSIGN_OR_RETURN(
        BallGraph graph,
        BuildBallGraph(x, delta, options_.probcover_max_edges, block_elements));
    const auto ball = [&](int64_t i) {
      return std::make_pair(graph.cols.begin() + graph.row_start[i],
                            graph.cols.begin() + graph.row_start[i + 1]);
    };

    std::vector<char> covered(n, 0);
    for (int64_t p : index.labelled) {
      const auto [begin, end] = ball(p);
      for (auto it = begin; it != end; ++it) covered[*it] = 1;
    }
    const int64_t covered_before =
        std::count(covered.begin(), covered.end(), 1);
    const auto gain = [&](int64_t i) {
      const auto [begin, end] = ball(i);
      return static_cast<int64_t>(
          std::count_if(begin, end, [&](int32_t j) { return !covered[j]; }));
    };
    // (upper bound of the gain, -position): a point's gain only shrinks.
    std::priority_queue<std::pair<int64_t, int64_t>> bounds;
    for (int64_t p : index.available) {
      const int64_t g = gain(p);
      if (g > 0) bounds.emplace(g, -p);
    }
    std::vector<int64_t> selected;
    selected.reserve(count);
    while (static_cast<int64_t>(selected.size()) < count && !bounds.empty()) {
      const std::pair<int64_t, int64_t> top = bounds.top();
      bounds.pop();
      const std::pair<int64_t, int64_t> current(gain(-top.second), top.second);
      if (current.first == 0) continue;
      if (!bounds.empty() && current < bounds.top()) {
        bounds.push(current);
        continue;
      }
      const auto [begin, end] = ball(-current.second);
      for (auto it = begin; it != end; ++it) covered[*it] = 1;
      selected.push_back(-current.second);
    }
    const int64_t covered_after = std::count(covered.begin(), covered.end(), 1);
    const int64_t greedy = selected.size();
    if (greedy < count) {
      std::vector<int64_t> rest;
      const absl::flat_hash_set<int64_t> taken(selected.begin(),
                                               selected.end());
      for (int64_t p : index.available) {
        if (!taken.contains(p)) rest.push_back(p);
      }
      SampleInPlace(rest, count - greedy, rng);
      selected.insert(selected.end(), rest.begin(), rest.end());
    }
    const auto percent = [n](int64_t part) {
      return std::round(1000.0 * part / n) / 10;
    };
    note_ = absl::StrCat(
        "probcover: delta ", delta, " (", delta_note, "), ", graph.cols.size(),
        " edges, coverage ", percent(covered_before), "% -> ",
        percent(covered_after), "%",
        greedy < count
            ? absl::StrCat(", ", count - greedy, " ids at random (all covered)")
            : "");
    return IdsAt(pool, selected);
  }

 private:
  const StrategyOptions options_;
  std::string note_;
};

absl::Status ValidateOptions(const StrategyOptions& options) {
  if (options.kmeans_iterations < 0 || !(options.kmeans_tolerance >= 0) ||
      options.kmeans_tolerance >= 1 || options.max_clusters < 1 ||
      options.min_cluster_size < 0 || options.typicality_neighbors < 1 ||
      options.typicality_max_references < 2 ||
      options.margin_candidates_factor < 1 || !(options.probcover_delta >= 0) ||
      !(options.probcover_purity > 0 && options.probcover_purity <= 1) ||
      options.probcover_clusters < 1 || options.probcover_purity_sample < 1 ||
      options.probcover_max_edges < 1 || options.max_block_elements < 1 ||
      options.selector_deadline <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "StrategyOptions out of range: need kmeans_iterations >= 0, "
        "0 <= kmeans_tolerance < 1, "
        "max_clusters >= 1, min_cluster_size >= 0, typicality_neighbors >= 1, "
        "typicality_max_references >= 2, margin_candidates_factor >= 1, "
        "probcover_delta >= 0, 0 < probcover_purity <= 1, "
        "probcover_clusters >= 1, probcover_purity_sample >= 1, "
        "probcover_max_edges >= 1, max_block_elements >= 1, "
        "selector_deadline > 0");
  }
  return absl::OkStatus();
}

}  // namespace

GrpcSelectionStrategy::GrpcSelectionStrategy(
    std::string name, std::unique_ptr<SelectorClient> client)
    : name_(std::move(name)), client_(std::move(client)) {}

absl::StatusOr<std::vector<int64_t>> GrpcSelectionStrategy::Select(
    const PoolState& pool, int64_t count) {
  SelectorQuery query;
  try {
    const auto to_floats = [](const torch::Tensor& t) {
      const torch::Tensor cpu = t.to(torch::kCPU, torch::kFloat).contiguous();
      return std::vector<float>(cpu.data_ptr<float>(),
                                cpu.data_ptr<float>() + cpu.numel());
    };
    if (pool.embeddings.defined()) {
      RETURN_IF_ERROR(CheckEmbeddings(pool));
      query.embedding_dim = static_cast<int>(pool.embeddings.size(1));
      query.embeddings = to_floats(pool.embeddings);
    }
    if (pool.probabilities.defined()) {
      RETURN_IF_ERROR(CheckProbabilities(pool));
      query.num_classes = static_cast<int>(pool.probabilities.size(1));
      query.probabilities = to_floats(pool.probabilities);
    }
  } catch (const c10::Error& e) {
    return TorchErrorToStatus(e, name_);
  }
  query.count = count;
  query.pool_ids = pool.pool_ids;
  query.labelled_ids = pool.labelled_ids;
  query.labelled_labels = pool.labelled_labels;
  query.round = pool.round;
  query.seed = pool.seed;
  return client_->Select(query);
}

absl::StatusOr<std::unique_ptr<SelectionStrategy>> MakeSelectionStrategy(
    const std::string& spec, const StrategyOptions& options) {
  RETURN_IF_ERROR(ValidateOptions(options));
  if (spec == "random") return std::make_unique<RandomStrategy>();
  if (spec == "kcenter") return std::make_unique<KCenterStrategy>(options);
  if (spec == "typiclust") return std::make_unique<TypiclustStrategy>(options);
  if (spec == "typiclust_balanced") {
    return std::make_unique<BalancedTypiclustStrategy>(options);
  }
  if (spec == "margin") return std::make_unique<MarginStrategy>(options);
  if (spec == "probcover") return std::make_unique<ProbCoverStrategy>(options);
  if (absl::StartsWith(spec, kGrpcScheme)) {
    SelectorClientOptions client_options;
    client_options.target = spec.substr(sizeof(kGrpcScheme) - 1);
    client_options.call_deadline = options.selector_deadline;
    client_options.stop_requested = options.stop_requested;
    if (client_options.target.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "selection strategy \"", spec,
          "\" names no host:port; valid: ", kSelectionStrategySpecs));
    }
    ASSIGN_OR_RETURN(std::unique_ptr<SelectorClient> client,
                     MakeGrpcSelectorClient(client_options));
    return std::make_unique<GrpcSelectionStrategy>(spec, std::move(client));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown selection strategy \"", spec,
                   "\"; valid: ", kSelectionStrategySpecs));
}

}  // namespace trainer
