#include "trainer/learn/dataset.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/idx_file.h"
#include "common/status_matchers.h"

namespace trainer {
namespace {

using ::common::IsOk;
using ::common::StatusIs;

// Writes an uncompressed IDX file with the given magic, dims and bytes.
std::string WriteIdx(const std::string& name, uint32_t magic,
                     const std::vector<uint32_t>& dims,
                     const std::vector<uint8_t>& data) {
  const std::string path = testing::TempDir() + "/" + name;
  std::ofstream out(path, std::ios::binary);
  auto put32 = [&out](uint32_t v) {
    const char bytes[4] = {static_cast<char>(v >> 24),
                           static_cast<char>(v >> 16),
                           static_cast<char>(v >> 8), static_cast<char>(v)};
    out.write(bytes, 4);
  };
  put32(magic);
  for (uint32_t d : dims) put32(d);
  out.write(reinterpret_cast<const char*>(data.data()), data.size());
  return path;
}

TEST(LoadImagesTest, ScalesBytesToUnitRangeWithChannelDim) {
  const std::string path =
      WriteIdx("images.idx", 0x00000803, {2, 2, 3},
               {0, 255, 51, 102, 1, 254, 10, 20, 30, 40, 50, 60});
  auto images = LoadImages(path, 2, at::kCPU);
  ASSERT_THAT(images, IsOk());
  EXPECT_EQ(images->sizes(), (at::IntArrayRef{2, 1, 2, 3}));
  EXPECT_EQ(images->scalar_type(), at::kFloat);
  EXPECT_FLOAT_EQ((*images)[0][0][0][0].item<float>(), 0.0f);
  EXPECT_FLOAT_EQ((*images)[0][0][0][1].item<float>(), 1.0f);
  EXPECT_FLOAT_EQ((*images)[0][0][0][2].item<float>(), 0.2f);
  EXPECT_FLOAT_EQ((*images)[1][0][1][2].item<float>(), 60.0f / 255.0f);
}

TEST(LoadImagesTest, ReportsCountMismatchAndMissingFile) {
  const std::string path =
      WriteIdx("images3.idx", 0x00000803, {3, 1, 1}, {1, 2, 3});
  EXPECT_THAT(LoadImages(path, 4, at::kCPU),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(LoadImages(path, 0, at::kCPU), IsOk());
  EXPECT_THAT(LoadImages(testing::TempDir() + "/missing.idx", 0, at::kCPU),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST(LoadImagesTest, FashionMnistTestSet) {
  const std::string path =
      std::string(common::kDefaultDatasetDir) + "/" + common::kTestImagesFile;
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " not installed";
  auto images = LoadImages(path, common::kTestCount, at::kCPU);
  ASSERT_THAT(images, IsOk());
  EXPECT_EQ(images->sizes(), (at::IntArrayRef{10000, 1, 28, 28}));
  EXPECT_FLOAT_EQ(images->min().item<float>(), 0.0f);
  EXPECT_FLOAT_EQ(images->max().item<float>(), 1.0f);
  // The test set's mean is close to the training-set constant.
  EXPECT_NEAR(images->mean().item<float>(), kFashionMnistMean, 0.01);
}

}  // namespace
}  // namespace trainer
