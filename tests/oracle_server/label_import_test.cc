#include "oracle_server/label_import.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/sha256.h"
#include "common/status_matchers.h"
#include "tests/oracle_server/oracle_test_data.h"

namespace oracle_server {
namespace {

using ::common::IsOk;
using ::common::StatusIs;
using ::testing::HasSubstr;

TEST(LabelImportTest, ReadsLabelsAndRecordsTheirHash) {
  testdata::TestDir dir;
  const std::string path = dir.path() + "/labels.gz";
  testdata::WriteIdxLabels(path, testdata::TrainLabels(30));
  auto imported = ReadLabelFile(path, 30);
  ASSERT_THAT(imported, IsOk());
  EXPECT_EQ(imported->labels, testdata::TrainLabels(30));
  EXPECT_EQ(imported->info.source_path, path);
  EXPECT_EQ(imported->info.count, 30);
  const std::vector<uint8_t> labels = testdata::TrainLabels(30);
  EXPECT_EQ(imported->info.content_sha256,
            common::Sha256Hex(absl::string_view(
                reinterpret_cast<const char*>(labels.data()), labels.size())));
  EXPECT_EQ(LabelContentSha256(labels), imported->info.content_sha256);
}

TEST(LabelImportTest, RejectsWrongCountsAndValues) {
  testdata::TestDir dir;
  const std::string path = dir.path() + "/labels.gz";
  std::vector<uint8_t> labels = testdata::TestLabels(12);
  labels[11] = 12;
  testdata::WriteIdxLabels(path, labels);
  EXPECT_THAT(ReadLabelFile(path, 12),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("label 12 of sample 11 is not in [0, 10)")));
  EXPECT_THAT(ReadLabelFile(path, 13),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("expected 13 items, found 12")));
  EXPECT_THAT(ReadLabelFile(dir.path() + "/missing.gz", 12),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(CheckLabelValues("table t", {1, 2, 10}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("table t: label 10 of sample 2")));
}

TEST(LabelImportTest, ChecksLoadedLabelsAgainstTheRecordedHash) {
  const std::vector<uint8_t> labels = testdata::TrainLabels(30);
  DatasetSplitInfo recorded;
  recorded.source_path = "table:data.train";
  recorded.content_sha256 = LabelContentSha256(labels);
  recorded.count = 30;
  EXPECT_THAT(CheckLabelsMatchRecord("labels table data.train", Split::kTrain,
                                     recorded, labels),
              IsOk());
  std::vector<uint8_t> changed = labels;
  changed[0] = (changed[0] + 1) % 10;
  EXPECT_THAT(
      CheckLabelsMatchRecord("labels table data.train", Split::kTrain,
                             recorded, changed),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               ::testing::AllOf(
                   HasSubstr("labels table data.train: the train labels "
                             "changed since they were imported from "
                             "table:data.train"),
                   HasSubstr(recorded.content_sha256),
                   HasSubstr(LabelContentSha256(changed)))));
  changed.pop_back();
  EXPECT_THAT(CheckLabelsMatchRecord("database oracle.db", Split::kTest,
                                     recorded, changed),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("now are 29 labels")));
}

}  // namespace
}  // namespace oracle_server
