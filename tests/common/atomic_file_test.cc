#include "common/atomic_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "common/status_matchers.h"

namespace common {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

fs::path FreshDir(const std::string& name) {
  fs::path dir = fs::path(::testing::TempDir()) / ("atomic_file_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string Read(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(WriteFileAtomicallyTest, WritesAndReplacesLeavingNoTemporaryFile) {
  const fs::path dir = FreshDir("replace");
  const fs::path path = dir / "file.txt";
  ASSERT_THAT(WriteFileAtomically(path.string(), "first\n"), IsOk());
  EXPECT_EQ(Read(path), "first\n");
  const std::string binary("a\0b\n", 4);
  ASSERT_THAT(WriteFileAtomically(path.string(), binary), IsOk());
  EXPECT_EQ(Read(path), binary);
  int entries = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    (void)entry;
    ++entries;
  }
  EXPECT_EQ(entries, 1);
  struct stat info;
  ASSERT_EQ(stat(path.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0644u);
}

TEST(WriteFileAtomicallyTest, MissingDirectoryIsNotFoundAndNamesTheFile) {
  const fs::path path = FreshDir("missing") / "no-such-dir" / "file.txt";
  EXPECT_THAT(WriteFileAtomically(path.string(), "x"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no-such-dir")));
  EXPECT_FALSE(fs::exists(path));
}

TEST(WriteFileAtomicallyTest, FailureLeavesTheOldContent) {
  // A directory where the file should be: the rename fails, the directory
  // (the "old content") stays and no temporary file is left.
  const fs::path dir = FreshDir("blocked");
  const fs::path path = dir / "target";
  fs::create_directories(path / "inside");
  EXPECT_FALSE(WriteFileAtomically(path.string(), "x").ok());
  EXPECT_TRUE(fs::is_directory(path / "inside"));
  int entries = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    (void)entry;
    ++entries;
  }
  EXPECT_EQ(entries, 1);
}

}  // namespace
}  // namespace common
