// Test helpers for the oracle tests: small synthetic IDX label files and
// store options that import them.
#ifndef TESTS_ORACLE_SERVER_ORACLE_TEST_DATA_H_
#define TESTS_ORACLE_SERVER_ORACLE_TEST_DATA_H_

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "oracle_server/sqlite_label_store.h"

namespace oracle_server {
namespace testdata {

// Matches an OK absl::StatusOr whose value matches `matcher`.
MATCHER_P(IsOkAndHolds, matcher, "is OK and holds a matching value") {
  if (!arg.ok()) {
    *result_listener << "whose status is " << arg.status().ToString();
    return false;
  }
  return ::testing::ExplainMatchResult(matcher, *arg, result_listener);
}

// A fresh, empty directory under the test temp dir, unique per test and
// process, removed with everything in it on destruction.
class TestDir {
 public:
  TestDir() {
    const ::testing::TestInfo* info =
        ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = (std::filesystem::path(::testing::TempDir()) /
             ("oracle_test." + std::to_string(getpid()) + "." +
              info->test_suite_name() + "." + info->name()))
                .string();
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TestDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TestDir(const TestDir&) = delete;
  TestDir& operator=(const TestDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Writes `labels` as a gzipped 1-d IDX file (magic 0x00000801).
inline void WriteIdxLabels(const std::string& path,
                           const std::vector<uint8_t>& labels) {
  std::vector<uint8_t> bytes = {0, 0, 0x08, 0x01};
  const uint32_t count = static_cast<uint32_t>(labels.size());
  for (int shift = 24; shift >= 0; shift -= 8) {
    bytes.push_back((count >> shift) & 0xff);
  }
  bytes.insert(bytes.end(), labels.begin(), labels.end());
  gzFile file = gzopen(path.c_str(), "wb");
  ASSERT_NE(file, nullptr) << path;
  ASSERT_EQ(gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(file), Z_OK);
}

// The synthetic train label of sample `id`.
inline uint8_t TrainLabel(int64_t id) { return (id * 7 + 3) % 10; }
// The synthetic test label of sample `id`.
inline uint8_t TestLabel(int64_t id) { return id % 10; }

inline std::vector<uint8_t> TrainLabels(int64_t count) {
  std::vector<uint8_t> labels;
  for (int64_t i = 0; i < count; ++i) labels.push_back(TrainLabel(i));
  return labels;
}

inline std::vector<uint8_t> TestLabels(int64_t count) {
  std::vector<uint8_t> labels;
  for (int64_t i = 0; i < count; ++i) labels.push_back(TestLabel(i));
  return labels;
}

// Writes synthetic train/test label files into `dir` and returns options
// that import them into `db_path` (":memory:" by default).
inline StoreOptions SyntheticStoreOptions(
    const std::string& dir, int64_t train_count = 1000, int64_t test_count = 50,
    const std::string& db_path = ":memory:") {
  StoreOptions options;
  options.db_path = db_path;
  options.train_labels_path = dir + "/train-labels.gz";
  options.test_labels_path = dir + "/test-labels.gz";
  options.train_count = train_count;
  options.test_count = test_count;
  WriteIdxLabels(options.train_labels_path, TrainLabels(train_count));
  WriteIdxLabels(options.test_labels_path, TestLabels(test_count));
  return options;
}

}  // namespace testdata
}  // namespace oracle_server

#endif  // TESTS_ORACLE_SERVER_ORACLE_TEST_DATA_H_
