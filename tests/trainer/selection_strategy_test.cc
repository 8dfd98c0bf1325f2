#include "trainer/select/selection_strategy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/status_matchers.h"
#include "trainer/select/label_free_features.h"

namespace trainer {
namespace {

using ::common::IsOk;
using ::common::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr double kPi = 3.14159265358979323846;

std::unique_ptr<SelectionStrategy> Make(const std::string& spec,
                                        const StrategyOptions& options = {}) {
  absl::StatusOr<std::unique_ptr<SelectionStrategy>> strategy =
      MakeSelectionStrategy(spec, options);
  EXPECT_THAT(strategy, IsOk());
  return strategy.ok() ? std::move(*strategy) : nullptr;
}

// One 2-d embedding per angle (degrees) with the given lengths: strategies
// normalise, so only the angle matters.
torch::Tensor OnCircle(const std::vector<double>& degrees,
                       const std::vector<double>& lengths) {
  torch::Tensor t = torch::empty({static_cast<int64_t>(degrees.size()), 2});
  for (size_t i = 0; i < degrees.size(); ++i) {
    t[i][0] = lengths[i] * std::cos(degrees[i] * kPi / 180);
    t[i][1] = lengths[i] * std::sin(degrees[i] * kPi / 180);
  }
  return t;
}

// n pool ids 1000, 1001, ... with random 8-d embeddings; ids 1000..1009
// labelled.
PoolState RandomPool(int64_t n) {
  PoolState pool;
  for (int64_t i = 0; i < n; ++i) pool.pool_ids.push_back(1000 + i);
  torch::manual_seed(7);
  pool.embeddings = torch::randn({n, 8});
  pool.probabilities = torch::softmax(torch::randn({n, 10}), 1);
  for (int64_t i = 0; i < 10; ++i) pool.labelled_ids.push_back(1000 + i);
  pool.round = 1;
  pool.seed = 42;
  return pool;
}

// True if `ids` are distinct, all in the pool and none labelled.
void ExpectValidSelection(const PoolState& pool,
                          const std::vector<int64_t>& ids, size_t count) {
  EXPECT_EQ(ids.size(), count);
  const std::set<int64_t> unique(ids.begin(), ids.end());
  EXPECT_EQ(unique.size(), ids.size());
  const std::set<int64_t> in_pool(pool.pool_ids.begin(), pool.pool_ids.end());
  const std::set<int64_t> labelled(pool.labelled_ids.begin(),
                                   pool.labelled_ids.end());
  for (int64_t id : ids) {
    EXPECT_TRUE(in_pool.count(id)) << id << " is not in the pool";
    EXPECT_FALSE(labelled.count(id)) << id << " is labelled";
  }
}

TEST(MakeSelectionStrategyTest, NamesAreTheSpecs) {
  for (const std::string spec :
       {"random", "kcenter", "typiclust", "typiclust_balanced", "margin",
        "probcover", "grpc://localhost:50061"}) {
    std::unique_ptr<SelectionStrategy> strategy = Make(spec);
    ASSERT_NE(strategy, nullptr);
    EXPECT_EQ(strategy->name(), spec);
  }
}

TEST(MakeSelectionStrategyTest, UnknownSpecListsTheValidOnes) {
  EXPECT_THAT(MakeSelectionStrategy("entropy", StrategyOptions()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "unknown selection strategy \"entropy\"; valid: "
                       "random | kcenter | typiclust | typiclust_balanced | "
                       "margin | probcover | grpc://host:port"));
  EXPECT_THAT(MakeSelectionStrategy("grpc://", StrategyOptions()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("names no host:port")));
}

TEST(MakeSelectionStrategyTest, RejectsOptionsOutOfRange) {
  StrategyOptions options;
  options.typicality_neighbors = 0;
  EXPECT_THAT(MakeSelectionStrategy("typiclust", options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("typicality_neighbors >= 1")));
}

TEST(SelectionStrategyTest, CountOverAvailableIsInvalidForEveryStrategy) {
  PoolState pool;
  pool.pool_ids = {1, 2, 3, 4};
  pool.embeddings = torch::randn({4, 3});
  pool.labelled_ids = {2};
  for (const std::string spec :
       {"random", "kcenter", "typiclust", "margin", "probcover"}) {
    EXPECT_THAT(Make(spec)->Select(pool, 4),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         "asked for 4 ids but only 3 unlabelled pool ids "
                         "remain"))
        << spec;
    EXPECT_THAT(Make(spec)->Select(pool, -1),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         "count must not be negative, got -1"))
        << spec;
    absl::StatusOr<std::vector<int64_t>> none = Make(spec)->Select(pool, 0);
    ASSERT_THAT(none, IsOk()) << spec;
    EXPECT_THAT(*none, IsEmpty()) << spec;
  }
}

TEST(SelectionStrategyTest, RejectsMismatchedTensorsAndRepeatedIds) {
  PoolState pool;
  pool.pool_ids = {1, 2, 3};
  pool.embeddings = torch::randn({4, 3});
  EXPECT_THAT(Make("kcenter")->Select(pool, 1),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "embeddings must be a floating point [3, D >= 1] "
                       "tensor, got Float [4, 3]"));
  pool.embeddings = torch::randn({3, 3});
  pool.probabilities = torch::ones({3, 1});
  EXPECT_THAT(Make("margin")->Select(pool, 1),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "probabilities must be a floating point [3, C >= 2] "
                       "tensor, got Float [3, 1]"));
  pool.pool_ids = {1, 2, 1};
  EXPECT_THAT(Make("random")->Select(pool, 1),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "pool id 1 appears more than once"));
}

TEST(SelectionStrategyTest, RejectsNonFiniteEmbeddingsAndProbabilities) {
  // A diverged model's NaNs made k-center's argmax pick the same or a
  // labelled row again; every strategy that reads the tensors refuses them.
  PoolState pool = RandomPool(50);
  pool.embeddings[20][3] = std::nan("");
  for (const std::string spec :
       {"kcenter", "typiclust", "typiclust_balanced", "probcover"}) {
    EXPECT_THAT(Make(spec)->Select(pool, 5),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("embeddings contain NaN or infinite")))
        << spec;
  }
  pool.embeddings[20][3] = std::numeric_limits<float>::infinity();
  EXPECT_THAT(Make("kcenter")->Select(pool, 5),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("lower --lr")));
  pool = RandomPool(50);
  pool.probabilities[7][1] = std::nan("");
  EXPECT_THAT(Make("margin")->Select(pool, 5),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("probabilities contain NaN or infinite")));
  // All NaN, as a diverged model predicts: still refused, not 5 picks of
  // row 0.
  pool.probabilities.fill_(std::nan(""));
  EXPECT_THAT(Make("margin")->Select(pool, 5),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("probabilities contain NaN or infinite")));
}

TEST(RandomStrategyTest, DistinctUnlabelledAndSeeded) {
  PoolState pool = RandomPool(50);
  pool.embeddings = torch::Tensor();  // random needs none
  std::unique_ptr<SelectionStrategy> random = Make("random");
  absl::StatusOr<std::vector<int64_t>> first = random->Select(pool, 20);
  ASSERT_THAT(first, IsOk());
  ExpectValidSelection(pool, *first, 20);
  EXPECT_EQ(*random->Select(pool, 20), *first);
  EXPECT_EQ(*Make("random")->Select(pool, 20), *first);

  PoolState other_round = pool;
  other_round.round = 2;
  EXPECT_NE(*random->Select(other_round, 20), *first);
  PoolState other_seed = pool;
  other_seed.seed = 43;
  EXPECT_NE(*random->Select(other_seed, 20), *first);
}

TEST(RandomStrategyTest, TakesEverythingLeftWhenAskedForAll) {
  PoolState pool = RandomPool(15);
  absl::StatusOr<std::vector<int64_t>> ids = Make("random")->Select(pool, 5);
  ASSERT_THAT(ids, IsOk());
  EXPECT_EQ(std::set<int64_t>(ids->begin(), ids->end()),
            (std::set<int64_t>{1010, 1011, 1012, 1013, 1014}));
}

TEST(KCenterStrategyTest, TakesTheFarthestPointFromTheLabelledSet) {
  // Angles (degrees) of ids 40..44; 40 is labelled. Lengths differ to show
  // that only directions count.
  PoolState pool;
  pool.pool_ids = {40, 41, 42, 43, 44};
  pool.embeddings = OnCircle({0, 10, 100, 180, 200}, {1, 5, 0.2, 3, 1});
  pool.labelled_ids = {40};
  absl::StatusOr<std::vector<int64_t>> ids = Make("kcenter")->Select(pool, 2);
  ASSERT_THAT(ids, IsOk());
  // 180 degrees is farthest from 0; then 100 is 80 from 180 (10 is 10 from 0,
  // 200 is 20 from 180).
  EXPECT_THAT(*ids, ElementsAre(43, 42));
}

TEST(KCenterStrategyTest, StartsNearTheMeanWithoutLabels) {
  // Unit vectors at 0, 5, -5 and 90 degrees average to about 18.4 degrees:
  // 5 is nearest; then 90 is farthest from it.
  PoolState pool;
  pool.pool_ids = {7, 8, 9, 10};
  pool.embeddings = OnCircle({0, 5, -5, 90}, {1, 1, 1, 1});
  absl::StatusOr<std::vector<int64_t>> ids = Make("kcenter")->Select(pool, 2);
  ASSERT_THAT(ids, IsOk());
  EXPECT_THAT(*ids, ElementsAre(8, 10));
}

TEST(KCenterStrategyTest, ValidOnARandomPool) {
  PoolState pool = RandomPool(500);
  StrategyOptions options;
  options.max_block_elements = 1000;  // several blocks
  absl::StatusOr<std::vector<int64_t>> ids =
      Make("kcenter", options)->Select(pool, 100);
  ASSERT_THAT(ids, IsOk());
  ExpectValidSelection(pool, *ids, 100);
}

// Two clusters in 3-d: A around the x axis (ids 100..110) and B around the
// y axis (ids 200..208). Each has a centre point (A: 100, B: 203) ringed by
// six points at radius 0.05, plus outliers at radius 0.3: the centre has the
// smallest mean distance to its nearest neighbours.
PoolState TwoClusters() {
  // (radius, angle in degrees) around the axis; radius 0 is the centre.
  const std::vector<std::pair<double, double>> a = {
      {0, 0},      {0.05, 0}, {0.05, 60}, {0.05, 120}, {0.05, 180}, {0.05, 240},
      {0.05, 300}, {0.3, 30}, {0.3, 120}, {0.3, 210},  {0.3, 300}};
  const std::vector<std::pair<double, double>> b = {
      {0.05, 0},   {0.05, 60},  {0.05, 120}, {0, 0},    {0.05, 180},
      {0.05, 240}, {0.05, 300}, {0.3, 90},   {0.3, 270}};
  const auto ring = [](double radius, double degrees) {
    return std::make_pair(
        static_cast<float>(radius * std::cos(degrees * kPi / 180)),
        static_cast<float>(radius * std::sin(degrees * kPi / 180)));
  };
  PoolState pool;
  std::vector<torch::Tensor> rows;
  for (size_t i = 0; i < a.size(); ++i) {
    const auto [u, v] = ring(a[i].first, a[i].second);
    pool.pool_ids.push_back(100 + i);
    rows.push_back(torch::tensor({1.0f, u, v}));
  }
  for (size_t i = 0; i < b.size(); ++i) {
    const auto [u, v] = ring(b[i].first, b[i].second);
    pool.pool_ids.push_back(200 + i);
    rows.push_back(torch::tensor({u, 1.0f, v}));
  }
  pool.embeddings = torch::stack(rows);
  pool.seed = 3;
  return pool;
}

TEST(TypiclustStrategyTest, TakesTheDensestPointOfEachClusterLargestFirst) {
  PoolState pool = TwoClusters();
  absl::StatusOr<std::vector<int64_t>> ids = Make("typiclust")->Select(pool, 2);
  ASSERT_THAT(ids, IsOk());
  // A (11 points) before B (9).
  EXPECT_THAT(*ids, ElementsAre(100, 203));
}

TEST(TypiclustStrategyTest, PrefersTheClusterWithoutALabel) {
  PoolState pool = TwoClusters();
  pool.labelled_ids = {105};  // in A
  absl::StatusOr<std::vector<int64_t>> ids = Make("typiclust")->Select(pool, 1);
  ASSERT_THAT(ids, IsOk());
  EXPECT_THAT(*ids, ElementsAre(203));
}

TEST(TypiclustStrategyTest, ValidWithSubsampledReferences) {
  PoolState pool = TwoClusters();
  StrategyOptions options;
  options.typicality_max_references = 8;
  absl::StatusOr<std::vector<int64_t>> ids =
      Make("typiclust", options)->Select(pool, 2);
  ASSERT_THAT(ids, IsOk());
  ExpectValidSelection(pool, *ids, 2);
}

TEST(TypiclustStrategyTest, ValidAndDeterministicOnARandomPool) {
  PoolState pool = RandomPool(600);
  StrategyOptions options;
  options.typicality_max_references = 30;
  options.max_block_elements = 2000;
  absl::StatusOr<std::vector<int64_t>> ids =
      Make("typiclust", options)->Select(pool, 40);
  ASSERT_THAT(ids, IsOk());
  ExpectValidSelection(pool, *ids, 40);
  EXPECT_EQ(*Make("typiclust", options)->Select(pool, 40), *ids);
}

TEST(TypiclustStrategyTest, MoreIdsThanClustersVisitsClustersAgain) {
  PoolState pool = TwoClusters();
  StrategyOptions options;
  options.max_clusters = 2;
  absl::StatusOr<std::vector<int64_t>> ids =
      Make("typiclust", options)->Select(pool, 6);
  ASSERT_THAT(ids, IsOk());
  ExpectValidSelection(pool, *ids, 6);
  // Alternates A, B, A, B, ... starting with each cluster's centre.
  EXPECT_EQ((*ids)[0], 100);
  EXPECT_EQ((*ids)[1], 203);
  for (size_t i = 0; i < ids->size(); ++i) {
    EXPECT_EQ((*ids)[i] / 100, i % 2 == 0 ? 1 : 2) << i;
  }
}

// Ids 50..55 at the given angles; 50 is labelled (angle 0). Margins: 51 0.01,
// 52 0.02, 53 0.03, 54 0.04, 55 0.9.
PoolState MarginPool() {
  PoolState pool;
  pool.pool_ids = {50, 51, 52, 53, 54, 55};
  pool.embeddings = OnCircle({0, 90, 91, 45, 10, 180}, {1, 1, 1, 1, 1, 1});
  pool.probabilities = torch::tensor({0.9f, 0.05f, 0.05f,     //
                                      0.495f, 0.485f, 0.02f,  //
                                      0.49f, 0.47f, 0.04f,    //
                                      0.485f, 0.455f, 0.06f,  //
                                      0.48f, 0.44f, 0.08f,    //
                                      0.95f, 0.05f, 0.0f})
                           .view({6, 3});
  pool.labelled_ids = {50};
  return pool;
}

TEST(MarginStrategyTest, TakesTheSmallestMargins) {
  StrategyOptions options;
  options.margin_candidates_factor = 1;
  absl::StatusOr<std::vector<int64_t>> ids =
      Make("margin", options)->Select(MarginPool(), 2);
  ASSERT_THAT(ids, IsOk());
  EXPECT_EQ(std::set<int64_t>(ids->begin(), ids->end()),
            (std::set<int64_t>{51, 52}));
}

TEST(MarginStrategyTest, KeepsTheBatchDiverse) {
  StrategyOptions options;
  options.margin_candidates_factor = 2;
  std::unique_ptr<SelectionStrategy> margin = Make("margin", options);
  absl::StatusOr<std::vector<int64_t>> ids = margin->Select(MarginPool(), 2);
  ASSERT_THAT(ids, IsOk());
  // Candidates are the 4 lowest margins (51..54). 52 (91 degrees) is farthest
  // from the labelled 50; then 53 (45) beats 51, which duplicates 52. 55 is
  // far but confident.
  EXPECT_THAT(*ids, ElementsAre(52, 53));
  EXPECT_EQ(margin->last_note(), "");
}

TEST(MarginStrategyTest, FallsBackToTypiclustWithoutProbabilities) {
  PoolState pool = TwoClusters();
  std::unique_ptr<SelectionStrategy> margin = Make("margin");
  absl::StatusOr<std::vector<int64_t>> ids = margin->Select(pool, 2);
  ASSERT_THAT(ids, IsOk());
  EXPECT_THAT(*ids, ElementsAre(100, 203));
  EXPECT_EQ(margin->last_note(),
            "margin: no probabilities yet, selected by typiclust");
}

// Five well-separated blobs in 8-d: blob b has kBlobSizes[b] points around
// 10 * e_b (noise 0.3 per axis), ids 100 * (b + 1) + i. blob_of[k] is the
// blob of pool row k.
constexpr int64_t kBlobSizes[] = {40, 30, 20, 15, 10};

PoolState Blobs(std::vector<int64_t>* blob_of) {
  PoolState pool;
  torch::manual_seed(11);
  std::vector<torch::Tensor> parts;
  for (int64_t b = 0; b < 5; ++b) {
    torch::Tensor centre = torch::zeros({1, 8});
    centre[0][b] = 10;
    parts.push_back(centre + 0.3 * torch::randn({kBlobSizes[b], 8}));
    for (int64_t i = 0; i < kBlobSizes[b]; ++i) {
      pool.pool_ids.push_back(100 * (b + 1) + i);
      if (blob_of != nullptr) blob_of->push_back(b);
    }
  }
  pool.embeddings = torch::cat(parts);
  pool.seed = 5;
  return pool;
}

int64_t BlobOfId(int64_t id) { return id / 100 - 1; }

StrategyOptions FiveClasses() {
  StrategyOptions options;
  options.probcover_clusters = 5;
  return options;
}

// The delta printed in a probcover note ("probcover: delta 1.23 (...").
double NoteDelta(const std::string& note) {
  const std::string prefix = "probcover: delta ";
  EXPECT_EQ(note.rfind(prefix, 0), 0u) << note;
  return std::stod(note.substr(prefix.size()));
}

TEST(ProbCoverStrategyTest, PicksOnePointPerBlobLargestFirst) {
  PoolState pool = Blobs(nullptr);
  std::unique_ptr<SelectionStrategy> probcover =
      Make("probcover", FiveClasses());
  absl::StatusOr<std::vector<int64_t>> ids = probcover->Select(pool, 5);
  ASSERT_THAT(ids, IsOk());
  ExpectValidSelection(pool, *ids, 5);
  for (int64_t b = 0; b < 5; ++b) EXPECT_EQ(BlobOfId((*ids)[b]), b) << b;
  EXPECT_THAT(probcover->last_note(), HasSubstr("coverage 0% -> 100%"));
}

TEST(ProbCoverStrategyTest, PicksTheBlobsWithoutALabel) {
  PoolState pool = Blobs(nullptr);
  pool.labelled_ids = {105, 303};  // blobs 0 and 2
  std::unique_ptr<SelectionStrategy> probcover =
      Make("probcover", FiveClasses());
  absl::StatusOr<std::vector<int64_t>> ids = probcover->Select(pool, 3);
  ASSERT_THAT(ids, IsOk());
  ExpectValidSelection(pool, *ids, 3);
  EXPECT_EQ(BlobOfId((*ids)[0]), 1);
  EXPECT_EQ(BlobOfId((*ids)[1]), 3);
  EXPECT_EQ(BlobOfId((*ids)[2]), 4);
  EXPECT_THAT(probcover->last_note(), HasSubstr("coverage 53% -> 100%"));
}

TEST(ProbCoverStrategyTest, AutomaticDeltaLiesBetweenIntraAndInterBlob) {
  std::vector<int64_t> blob_of;
  PoolState pool = Blobs(&blob_of);
  std::unique_ptr<SelectionStrategy> probcover =
      Make("probcover", FiveClasses());
  ASSERT_THAT(probcover->Select(pool, 1), IsOk());
  const double delta = NoteDelta(probcover->last_note());

  const torch::Tensor x =
      pool.embeddings / pool.embeddings.norm(2, {1}, /*keepdim=*/true);
  const torch::Tensor d = torch::cdist(x, x);
  const torch::Tensor blob = torch::tensor(blob_of);
  const torch::Tensor same = blob.unsqueeze(1).eq(blob.unsqueeze(0));
  const double max_intra = d.masked_select(same).max().item<double>();
  const double mean_inter =
      d.masked_select(same.logical_not()).mean().item<double>();
  EXPECT_GT(delta, max_intra);
  EXPECT_LT(delta, mean_inter);
}

TEST(ProbCoverStrategyTest, ColdStartIsDeterministicForASeed) {
  PoolState pool = RandomPool(400);
  pool.labelled_ids.clear();
  pool.round = 0;
  StrategyOptions options;
  options.max_block_elements = 3000;  // several blocks
  std::unique_ptr<SelectionStrategy> probcover = Make("probcover", options);
  absl::StatusOr<std::vector<int64_t>> ids = probcover->Select(pool, 20);
  ASSERT_THAT(ids, IsOk());
  ExpectValidSelection(pool, *ids, 20);
  const std::string note = probcover->last_note();
  EXPECT_THAT(note, HasSubstr("(auto: purity 0.95 over 10 k-means clusters "
                              "on 400 balls)"));
  std::unique_ptr<SelectionStrategy> again = Make("probcover", options);
  EXPECT_EQ(*again->Select(pool, 20), *ids);
  EXPECT_EQ(again->last_note(), note);
}

TEST(ProbCoverStrategyTest, GraphBlocksAndPuritySampleDoNotChangeAGivenDelta) {
  PoolState pool = RandomPool(300);
  StrategyOptions one_block;
  one_block.probcover_delta = 0.9;
  StrategyOptions many_blocks = one_block;
  many_blocks.max_block_elements = 700;
  absl::StatusOr<std::vector<int64_t>> ids =
      Make("probcover", one_block)->Select(pool, 30);
  ASSERT_THAT(ids, IsOk());
  ExpectValidSelection(pool, *ids, 30);
  EXPECT_EQ(*Make("probcover", many_blocks)->Select(pool, 30), *ids);
}

TEST(ProbCoverStrategyTest, FillsUpAtRandomOnceEverythingIsCovered) {
  PoolState pool = Blobs(nullptr);
  StrategyOptions options;
  options.probcover_delta = 2.5;  // every ball holds the whole pool
  std::unique_ptr<SelectionStrategy> probcover = Make("probcover", options);
  absl::StatusOr<std::vector<int64_t>> ids = probcover->Select(pool, 4);
  ASSERT_THAT(ids, IsOk());
  ExpectValidSelection(pool, *ids, 4);
  EXPECT_EQ((*ids)[0], 100);  // the first position among equal gains
  EXPECT_EQ(probcover->last_note(),
            "probcover: delta 2.5 (given), 13225 edges, coverage 0% -> 100%, "
            "3 ids at random (all covered)");
}

TEST(ProbCoverStrategyTest, EdgeCap) {
  PoolState pool = Blobs(nullptr);
  StrategyOptions options;
  options.probcover_delta = 2.5;
  options.probcover_max_edges = 1000;
  EXPECT_THAT(Make("probcover", options)->Select(pool, 1),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("more than probcover_max_edges = 1000")));

  // An automatic delta shrinks to fit instead.
  options = FiveClasses();
  options.probcover_max_edges = 1000;
  std::unique_ptr<SelectionStrategy> probcover = Make("probcover", options);
  absl::StatusOr<std::vector<int64_t>> ids = probcover->Select(pool, 5);
  ASSERT_THAT(ids, IsOk());
  ExpectValidSelection(pool, *ids, 5);
  EXPECT_THAT(probcover->last_note(), HasSubstr("to fit probcover_max_edges"));
}

TEST(ProbCoverStrategyTest, RejectsBadInput) {
  StrategyOptions options;
  options.probcover_delta = -0.5;
  EXPECT_THAT(MakeSelectionStrategy("probcover", options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("probcover_delta >= 0")));
  options = StrategyOptions();
  options.probcover_purity = 1.5;
  EXPECT_THAT(MakeSelectionStrategy("probcover", options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("0 < probcover_purity <= 1")));

  PoolState empty;
  empty.embeddings = torch::zeros({0, 8});
  EXPECT_THAT(Make("probcover")->Select(empty, 1),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "asked for 1 ids but only 0 unlabelled pool ids "
                       "remain"));
  PoolState no_embeddings = Blobs(nullptr);
  no_embeddings.embeddings = torch::Tensor();
  EXPECT_THAT(
      Make("probcover")->Select(no_embeddings, 1),
      StatusIs(absl::StatusCode::kInvalidArgument, "embeddings are undefined"));
}

TEST(TypiclustStrategyTest, ColdStartPicksOnePointPerBlob) {
  PoolState pool = Blobs(nullptr);
  absl::StatusOr<std::vector<int64_t>> ids = Make("typiclust")->Select(pool, 5);
  ASSERT_THAT(ids, IsOk());
  ExpectValidSelection(pool, *ids, 5);
  std::set<int64_t> blobs;
  for (int64_t id : *ids) blobs.insert(BlobOfId(id));
  EXPECT_EQ(blobs.size(), 5u);
  // The largest cluster first.
  EXPECT_EQ(BlobOfId((*ids)[0]), 0);
}

// The blob of each id.
std::vector<int64_t> BlobsOf(const std::vector<int64_t>& ids) {
  std::vector<int64_t> blobs;
  for (int64_t id : ids) blobs.push_back(BlobOfId(id));
  return blobs;
}

// Blobs with `classes` class probabilities: 0.8 for class 0 in blobs 0-2,
// class 1 in blob 3 and class 2 in blob 4, `rest` for the others; and one
// bought label: id 400 (blob 3), class 1.
PoolState ClassedBlobs(int64_t classes = 3, float rest = 0.1f) {
  PoolState pool = Blobs(nullptr);
  const int64_t predicted[] = {0, 0, 0, 1, 2};
  const int64_t n = pool.pool_ids.size();
  pool.probabilities = torch::full({n, classes}, rest);
  for (int64_t i = 0; i < n; ++i) {
    pool.probabilities[i][predicted[BlobOfId(pool.pool_ids[i])]] = 0.8f;
  }
  pool.labelled_ids = {400};
  pool.labelled_labels = {1};
  return pool;
}

TEST(BalancedTypiclustStrategyTest, GivesEachPickToTheClassWithFewestLabels) {
  PoolState pool = ClassedBlobs();
  // Labels per class before: 0 / 1 / 0. Typiclust takes the four clusters
  // without a label, largest first: blobs 0, 1, 2 (all class 0) and 4.
  absl::StatusOr<std::vector<int64_t>> plain =
      Make("typiclust")->Select(pool, 4);
  ASSERT_THAT(plain, IsOk());
  EXPECT_THAT(BlobsOf(*plain), ElementsAre(0, 1, 2, 4));
  // Balanced: class 0 (blob 0, the larger of the tied classes' clusters),
  // class 2 (blob 4), class 0 again (blob 1: 1/1/1, the tie goes to the
  // cluster without labels), then class 1 (blob 3, 2/1/1) instead of a
  // third class-0 cluster.
  std::unique_ptr<SelectionStrategy> balanced = Make("typiclust_balanced");
  absl::StatusOr<std::vector<int64_t>> ids = balanced->Select(pool, 4);
  ASSERT_THAT(ids, IsOk());
  ExpectValidSelection(pool, *ids, 4);
  EXPECT_THAT(BlobsOf(*ids), ElementsAre(0, 4, 1, 3));
  EXPECT_EQ(balanced->last_note(),
            "typiclust_balanced: picks per predicted class 2/1/1; labels per "
            "class after them 2/2/1");
  // The same pool and seed give the same picks.
  EXPECT_EQ(*Make("typiclust_balanced")->Select(pool, 4), *ids);
}

TEST(BalancedTypiclustStrategyTest, ReachesAClassNoClusterIsPredictedAs) {
  // Four classes; no blob is predicted as class 3, but blob 2 leans to it
  // most. Picks: class 0 (blob 0), class 3 (blob 2, by its mean
  // probability), class 2 (blob 4), class 0 (blob 1).
  PoolState pool = ClassedBlobs(/*classes=*/4, /*rest=*/0.05f);
  for (size_t i = 0; i < pool.pool_ids.size(); ++i) {
    if (BlobOfId(pool.pool_ids[i]) == 2) pool.probabilities[i][3] = 0.15f;
  }
  std::unique_ptr<SelectionStrategy> balanced = Make("typiclust_balanced");
  absl::StatusOr<std::vector<int64_t>> ids = balanced->Select(pool, 4);
  ASSERT_THAT(ids, IsOk());
  EXPECT_THAT(BlobsOf(*ids), ElementsAre(0, 2, 4, 1));
  EXPECT_EQ(balanced->last_note(),
            "typiclust_balanced: picks per predicted class 2/0/1/1; labels "
            "per class after them 2/1/1/1");
}

TEST(BalancedTypiclustStrategyTest, FallsBackToTypiclustWithoutPredictionsOrLabels) {
  PoolState pool = ClassedBlobs();
  pool.labelled_labels.clear();
  std::unique_ptr<SelectionStrategy> balanced = Make("typiclust_balanced");
  absl::StatusOr<std::vector<int64_t>> ids = balanced->Select(pool, 3);
  ASSERT_THAT(ids, IsOk());
  EXPECT_EQ(*ids, *Make("typiclust")->Select(pool, 3));
  EXPECT_THAT(balanced->last_note(), HasSubstr("selected by typiclust"));
  pool = ClassedBlobs();
  pool.probabilities = torch::Tensor();
  ids = balanced->Select(pool, 3);
  ASSERT_THAT(ids, IsOk());
  EXPECT_EQ(*ids, *Make("typiclust")->Select(pool, 3));
}

TEST(BalancedTypiclustStrategyTest, RejectsLabelsThatDoNotFit) {
  PoolState pool = ClassedBlobs();
  pool.labelled_labels = {3};  // three classes: 0..2
  EXPECT_THAT(Make("typiclust_balanced")->Select(pool, 2),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("outside the 3 classes")));
  pool.labelled_labels = {1, 1};
  EXPECT_THAT(Make("typiclust_balanced")->Select(pool, 2),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("2 entries for 1 labelled ids")));
}

TEST(BalancedTypiclustStrategyTest, ValidOnARandomPoolAndFillsPastTheClusters) {
  PoolState pool = RandomPool(300);
  pool.labelled_labels.assign(pool.labelled_ids.size(), 0);
  absl::StatusOr<std::vector<int64_t>> ids =
      Make("typiclust_balanced")->Select(pool, 120);
  ASSERT_THAT(ids, IsOk());
  ExpectValidSelection(pool, *ids, 120);
}

// Records the query and answers with the first `count` unlabelled pool ids.
class FakeSelectorClient final : public SelectorClient {
 public:
  explicit FakeSelectorClient(SelectorQuery* seen) : seen_(seen) {}
  absl::StatusOr<std::vector<int64_t>> Select(
      const SelectorQuery& query) override {
    *seen_ = query;
    const std::set<int64_t> labelled(query.labelled_ids.begin(),
                                     query.labelled_ids.end());
    std::vector<int64_t> ids;
    for (int64_t id : query.pool_ids) {
      if (static_cast<int64_t>(ids.size()) < query.count &&
          !labelled.count(id)) {
        ids.push_back(id);
      }
    }
    return ids;
  }

 private:
  SelectorQuery* seen_;
};

TEST(GrpcSelectionStrategyTest, SendsThePoolAsPlainVectors) {
  PoolState pool;
  pool.pool_ids = {5, 6, 7};
  pool.embeddings =
      torch::arange(6, torch::kDouble).view({3, 2});  // converted to float
  pool.probabilities = torch::tensor({0.25f, 0.75f, 0.5f, 0.5f, 1.0f, 0.0f})
                           .view({2, 3})
                           .t();  // non-contiguous [3, 2]
  pool.labelled_ids = {5};
  pool.labelled_labels = {1};
  pool.round = 3;
  pool.seed = 9;
  SelectorQuery seen;
  GrpcSelectionStrategy strategy("grpc://fake:1",
                                 std::make_unique<FakeSelectorClient>(&seen));
  absl::StatusOr<std::vector<int64_t>> ids = strategy.Select(pool, 2);
  ASSERT_THAT(ids, IsOk());
  EXPECT_THAT(*ids, ElementsAre(6, 7));
  EXPECT_EQ(seen.count, 2);
  EXPECT_THAT(seen.pool_ids, ElementsAre(5, 6, 7));
  EXPECT_EQ(seen.embedding_dim, 2);
  EXPECT_THAT(seen.embeddings, ElementsAre(0, 1, 2, 3, 4, 5));
  EXPECT_EQ(seen.num_classes, 2);
  EXPECT_THAT(seen.probabilities,
              ElementsAre(0.25f, 0.5f, 0.75f, 1.0f, 0.5f, 0.0f));
  EXPECT_THAT(seen.labelled_ids, ElementsAre(5));
  EXPECT_THAT(seen.labelled_labels, ElementsAre(1));
  EXPECT_EQ(seen.round, 3);
  EXPECT_EQ(seen.seed, 9u);

  pool.probabilities = torch::Tensor();
  ASSERT_THAT(strategy.Select(pool, 1), IsOk());
  EXPECT_EQ(seen.num_classes, 0);
  EXPECT_THAT(seen.probabilities, IsEmpty());
}

TEST(LabelFreeFeaturesTest, ProjectsOnTheTopComponentsAndNormalises) {
  // 4-pixel images: pixel 0 varies most (+-2), pixel 1 less (+-1), pixels 2
  // and 3 are constant. The two components are the first two pixel axes.
  const std::vector<std::pair<float, float>> deviations = {
      {2, 1}, {2, -1}, {-2, 1}, {-2, -1}, {0, 0.5}, {0, -0.5}};
  torch::Tensor images = torch::empty({6, 1, 2, 2});
  for (int i = 0; i < 6; ++i) {
    images[i][0][0][0] = 0.5f + 0.1f * deviations[i].first;
    images[i][0][0][1] = 0.5f + 0.1f * deviations[i].second;
    images[i][0][1][0] = 0.3f;
    images[i][0][1][1] = 0.7f;
  }
  absl::StatusOr<torch::Tensor> features = LabelFreeFeatures(images, 2);
  ASSERT_THAT(features, IsOk());
  ASSERT_EQ(features->sizes(), torch::IntArrayRef({6, 2}));
  for (int i = 0; i < 6; ++i) {
    const double a = deviations[i].first, b = deviations[i].second;
    const double norm = std::sqrt(a * a + b * b);
    EXPECT_NEAR((*features)[i][0].item<float>(), a / norm, 1e-4) << i;
    EXPECT_NEAR((*features)[i][1].item<float>(), b / norm, 1e-4) << i;
  }
}

TEST(LabelFreeFeaturesTest, RejectsBadDims) {
  const torch::Tensor images = torch::rand({10, 1, 28, 28});
  EXPECT_THAT(LabelFreeFeatures(images, 0),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "dims must be in [1, 784], got 0"));
  EXPECT_THAT(LabelFreeFeatures(images, 785),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "dims must be in [1, 784], got 785"));
  EXPECT_THAT(
      LabelFreeFeatures(torch::rand({1, 1, 28, 28}), 8),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("N >= 2")));
}

TEST(LabelFreeFeaturesTest, UnitRowsAtMnistShape) {
  torch::manual_seed(1);
  LabelFreeFeatureOptions options;
  options.dims = 32;
  options.max_fit_images = 300;  // strided fit subset
  absl::StatusOr<torch::Tensor> features =
      LabelFreeFeatures(torch::rand({1000, 1, 28, 28}), options);
  ASSERT_THAT(features, IsOk());
  ASSERT_EQ(features->sizes(), torch::IntArrayRef({1000, 32}));
  EXPECT_TRUE(
      torch::allclose(features->norm(2, {1}), torch::ones({1000}), 1e-4, 1e-5));
}

}  // namespace
}  // namespace trainer
