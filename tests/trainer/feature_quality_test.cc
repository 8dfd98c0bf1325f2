#include "trainer/select/feature_quality.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "common/status_matchers.h"

namespace trainer {
namespace {

using ::common::IsOk;
using ::common::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<int64_t> ToVector(const torch::Tensor& t) {
  const torch::Tensor cpu = t.to(torch::kCPU, torch::kLong).contiguous();
  return std::vector<int64_t>(cpu.data_ptr<int64_t>(),
                              cpu.data_ptr<int64_t>() + cpu.numel());
}

// Reference in 2-d: class 0 along +x, class 1 along +y, class 2 along -x.
// Lengths differ: only directions matter.
torch::Tensor Reference() {
  return torch::tensor({1.0f, 0.0f,    //
                        3.0f, 0.3f,    //
                        0.0f, 2.0f,    //
                        -0.2f, 1.0f,   //
                        -5.0f, 0.0f})  //
      .view({5, 2});
}
torch::Tensor ReferenceLabels() {
  return torch::tensor({0, 0, 1, 1, 2}, torch::kLong);
}

TEST(KnnClassifyTest, VotesOfTheNearestNeighbours) {
  const torch::Tensor query = torch::tensor({2.0f, 0.1f,    //
                                             0.1f, 4.0f,    //
                                             -1.0f, -0.1f,  //
                                             0.7f, 0.7f})
                                  .view({4, 2});
  KnnOptions options;
  options.k = 2;
  absl::StatusOr<torch::Tensor> classes =
      KnnClassify(Reference(), ReferenceLabels(), query, options);
  ASSERT_THAT(classes, IsOk());
  EXPECT_EQ(classes->scalar_type(), torch::kLong);
  // The last query is 45 degrees from (1, 0) and (0, 2) but its second
  // neighbour (3, 0.3) is class 0: 2 votes for class 0.
  EXPECT_THAT(ToVector(*classes), ElementsAre(0, 1, 2, 0));
}

TEST(KnnClassifyTest, ACloseNeighbourOutweighsFarOnesAtLowTemperature) {
  // The query is 10 degrees from the class-0 point, 60 and 40 degrees from
  // the class-1 points.
  const double pi = 3.14159265358979323846;
  const auto at = [pi](double degrees) {
    return std::vector<float>{static_cast<float>(std::cos(degrees * pi / 180)),
                              static_cast<float>(std::sin(degrees * pi / 180))};
  };
  std::vector<float> flat;
  for (double a : {10.0, 60.0, -40.0}) {
    const std::vector<float> p = at(a);
    flat.insert(flat.end(), p.begin(), p.end());
  }
  const torch::Tensor reference = torch::tensor(flat).view({3, 2});
  const torch::Tensor labels = torch::tensor({0, 1, 1}, torch::kLong);
  const torch::Tensor query = torch::tensor({1.0f, 0.0f}).view({1, 2});
  KnnOptions options;
  options.k = 3;
  options.temperature = 0.07;
  EXPECT_THAT(ToVector(*KnnClassify(reference, labels, query, options)),
              ElementsAre(0));
  options.temperature = 100;  // nearly equal weights: the majority wins
  EXPECT_THAT(ToVector(*KnnClassify(reference, labels, query, options)),
              ElementsAre(1));
}

TEST(KnnClassifyTest, KOfOneIsTheNearestNeighbour) {
  torch::manual_seed(3);
  const torch::Tensor reference = torch::randn({50, 6});
  const torch::Tensor labels = torch::randint(7, {50}, torch::kLong);
  const torch::Tensor query = torch::randn({200, 6});
  KnnOptions options;
  options.k = 1;
  options.num_classes = 7;
  absl::StatusOr<torch::Tensor> classes =
      KnnClassify(reference, labels, query, options);
  ASSERT_THAT(classes, IsOk());
  const torch::Tensor r = reference / reference.norm(2, {1}, true);
  const torch::Tensor q = query / query.norm(2, {1}, true);
  const torch::Tensor nearest = q.mm(r.t()).argmax(1);
  EXPECT_EQ(ToVector(*classes), ToVector(labels.index_select(0, nearest)));
}

TEST(KnnClassifyTest, ChunksDoNotChangeTheAnswerAndKIsClamped) {
  torch::manual_seed(4);
  const torch::Tensor reference = torch::randn({30, 5}, torch::kDouble);
  const torch::Tensor labels = torch::randint(10, {30}, torch::kInt);
  const torch::Tensor query = torch::randn({101, 5});
  KnnOptions whole;
  whole.k = 50;  // more than the 30 reference points
  whole.chunk_size = 1000;
  KnnOptions chunked = whole;
  chunked.chunk_size = 7;
  absl::StatusOr<torch::Tensor> a =
      KnnClassify(reference, labels, query, whole);
  absl::StatusOr<torch::Tensor> b =
      KnnClassify(reference, labels, query, chunked);
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(a->size(0), 101);
  EXPECT_EQ(ToVector(*a), ToVector(*b));

  absl::StatusOr<torch::Tensor> none =
      KnnClassify(reference, labels, torch::zeros({0, 5}), whole);
  ASSERT_THAT(none, IsOk());
  EXPECT_EQ(none->numel(), 0);
}

TEST(KnnClassifyTest, RejectsBadInput) {
  const torch::Tensor query = torch::ones({2, 2});
  KnnOptions options;
  EXPECT_THAT(KnnClassify(torch::zeros({0, 2}), torch::zeros({0}, torch::kLong),
                          query, options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "reference embeddings must be a floating point "
                       "[L >= 1, D >= 1] tensor, got Float [0, 2]"));
  EXPECT_THAT(KnnClassify(Reference(), torch::tensor({0, 1}, torch::kLong),
                          query, options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "reference labels must be an integer [5] tensor, got "
                       "Long [2]"));
  EXPECT_THAT(
      KnnClassify(Reference(), ReferenceLabels(), torch::ones({2, 3}), options),
      StatusIs(absl::StatusCode::kInvalidArgument,
               "query embeddings must be a floating point [N, 2] "
               "tensor, got Float [2, 3]"));
  options.num_classes = 2;
  EXPECT_THAT(KnnClassify(Reference(), ReferenceLabels(), query, options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "reference labels must lie in [0, 2), got values in "
                       "[0, 2]"));
  options = KnnOptions();
  EXPECT_THAT(KnnClassify(Reference(), -ReferenceLabels(), query, options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("got values in [-2, 0]")));
  options.temperature = 0;
  EXPECT_THAT(KnnClassify(Reference(), ReferenceLabels(), query, options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("temperature > 0")));
}

}  // namespace
}  // namespace trainer
