#include "common/idx_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "common/status_matchers.h"

namespace common {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string TempPath(const std::string& name) {
  return (std::filesystem::path(::testing::TempDir()) / name).string();
}

void WriteGz(const std::string& path, const std::vector<uint8_t>& bytes) {
  gzFile file = gzopen(path.c_str(), "wb");
  ASSERT_NE(file, nullptr);
  ASSERT_EQ(gzwrite(file, bytes.data(), bytes.size()),
            static_cast<int>(bytes.size()));
  gzclose(file);
}

std::vector<uint8_t> Header(uint8_t rank, const std::vector<uint32_t>& dims) {
  std::vector<uint8_t> bytes = {0, 0, 0x08, rank};
  for (uint32_t d : dims) {
    bytes.push_back(d >> 24);
    bytes.push_back((d >> 16) & 0xff);
    bytes.push_back((d >> 8) & 0xff);
    bytes.push_back(d & 0xff);
  }
  return bytes;
}

TEST(IdxFileTest, ReadsGzippedLabels) {
  std::vector<uint8_t> bytes = Header(1, {3});
  bytes.insert(bytes.end(), {7, 0, 9});
  const std::string path = TempPath("labels.gz");
  WriteGz(path, bytes);
  auto labels = ReadIdxLabels(path, 3);
  ASSERT_THAT(labels, IsOk());
  EXPECT_THAT(*labels, ElementsAre(7, 0, 9));
}

TEST(IdxFileTest, ReadsImagesWithDims) {
  std::vector<uint8_t> bytes = Header(3, {2, 2, 3});
  for (int i = 0; i < 12; ++i) bytes.push_back(i);
  const std::string path = TempPath("images.gz");
  WriteGz(path, bytes);
  auto images = ReadIdxImages(path, 0);
  ASSERT_THAT(images, IsOk());
  EXPECT_THAT(images->dims, ElementsAre(2, 2, 3));
  EXPECT_EQ(images->data.size(), 12u);
  EXPECT_EQ(images->data[11], 11);
}

TEST(IdxFileTest, TruncatedIsDataLoss) {
  std::vector<uint8_t> bytes = Header(1, {5});
  bytes.insert(bytes.end(), {1, 2});
  const std::string path = TempPath("short.gz");
  WriteGz(path, bytes);
  EXPECT_THAT(ReadIdxLabels(path, 0),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("truncated")));
}

// Found by fuzz/idx_file_fuzzer: 65536^4 = 2^64 wrapped around to 0, so a
// header-only file was read as an empty array with those dimensions.
TEST(IdxFileTest, DimensionsWhoseProductOverflowsAreDataLoss) {
  const std::string path = TempPath("overflow.gz");
  WriteGz(path, Header(4, {65536, 65536, 65536, 65536}));
  EXPECT_THAT(ReadIdxFile(path),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("65536x65536x65536x65536")));
  WriteGz(path, Header(3, {0x80000000u, 0x80000000u, 4}));
  EXPECT_THAT(ReadIdxImages(path, 0),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("truncated")));
}

TEST(IdxFileTest, ZeroDimensionIsEmptyArray) {
  const std::string path = TempPath("zero.gz");
  WriteGz(path, Header(3, {0, 0xffffffffu, 0xffffffffu}));
  absl::StatusOr<IdxArray> images = ReadIdxImages(path, 0);
  ASSERT_TRUE(images.ok()) << images.status();
  EXPECT_THAT(images->dims, ElementsAre(0, 0xffffffffu, 0xffffffffu));
  EXPECT_TRUE(images->data.empty());
}

TEST(IdxFileTest, WrongMagicIsInvalidArgument) {
  std::vector<uint8_t> bytes = {0x1f, 0x00, 0x08, 0x01, 0, 0, 0, 0};
  const std::string path = TempPath("magic.gz");
  WriteGz(path, bytes);
  EXPECT_THAT(ReadIdxLabels(path, 0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("magic")));
}

TEST(IdxFileTest, ImageFileIsNotALabelFile) {
  std::vector<uint8_t> bytes = Header(3, {1, 1, 1});
  bytes.push_back(0);
  const std::string path = TempPath("rank.gz");
  WriteGz(path, bytes);
  EXPECT_THAT(ReadIdxLabels(path, 0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("1-d")));
}

TEST(IdxFileTest, WrongCountIsFailedPrecondition) {
  std::vector<uint8_t> bytes = Header(1, {2});
  bytes.insert(bytes.end(), {1, 2});
  const std::string path = TempPath("count.gz");
  WriteGz(path, bytes);
  EXPECT_THAT(ReadIdxLabels(path, 3),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("expected 3 items, found 2")));
}

TEST(IdxFileTest, MissingFileIsNotFound) {
  EXPECT_THAT(ReadIdxLabels(TempPath("does-not-exist.gz"), 0),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST(IdxFileTest, WriteThenReadRoundTripsGzippedAndPlain) {
  IdxArray images{{2, 2, 3}, {}};
  for (int i = 0; i < 12; ++i) images.data.push_back(static_cast<uint8_t>(i * 20));
  for (const std::string name : {"written.gz", "written.idx"}) {
    const std::string path = TempPath(name);
    ASSERT_THAT(WriteIdxFile(path, images), IsOk());
    EXPECT_FALSE(std::filesystem::exists(path + ".partial"));
    auto read = ReadIdxImages(path, 2);
    ASSERT_THAT(read, IsOk()) << name;
    EXPECT_EQ(read->dims, images.dims);
    EXPECT_EQ(read->data, images.data);
  }
  // The plain file is plain: header bytes as the format says.
  std::FILE* plain = std::fopen(TempPath("written.idx").c_str(), "rb");
  ASSERT_NE(plain, nullptr);
  uint8_t magic[4] = {};
  ASSERT_EQ(std::fread(magic, 1, 4, plain), 4u);
  std::fclose(plain);
  EXPECT_THAT(magic, ElementsAre(0, 0, 0x08, 3));
}

TEST(IdxFileTest, WriteRejectsDimsThatDoNotDescribeTheData) {
  const std::string path = TempPath("bad.gz");
  EXPECT_THAT(WriteIdxFile(path, IdxArray{{2, 3}, {1, 2, 3}}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(WriteIdxFile(path, IdxArray{{}, {}}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(IdxFileTest, WriteToAMissingFolderIsUnavailableAndLeavesNothing) {
  const std::string path = TempPath("no-such-folder/labels.gz");
  EXPECT_THAT(WriteIdxFile(path, IdxArray{{1}, {4}}),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(IdxFileTest, ReadsTheRealFashionMnistLabels) {
  const std::string path =
      std::string(kDefaultDatasetDir) + "/" + kTestLabelsFile;
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " not installed";
  auto labels = ReadIdxLabels(path, kTestCount);
  ASSERT_THAT(labels, IsOk());
  std::vector<int> per_class(kNumClasses, 0);
  for (uint8_t label : *labels) {
    ASSERT_LT(label, kNumClasses);
    ++per_class[label];
  }
  for (int count : per_class) EXPECT_EQ(count, 1000);
}

}  // namespace
}  // namespace common
