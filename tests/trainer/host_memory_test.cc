#include "trainer/learn/host_memory.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <string>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "common/status_matchers.h"

namespace trainer {
namespace {

using ::common::StatusIs;
using ::testing::HasSubstr;

// A getenv over `vars`.
auto Lookup(const std::map<std::string, std::string>& vars) {
  return [&vars](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
}

TEST(MallocTunedByEnvironmentTest, NoMallocVariables) {
  std::map<std::string, std::string> vars = {
      {"OMP_NUM_THREADS", "1"}, {"GLIBC_TUNABLES", "glibc.pthread.rseq=0"}};
  EXPECT_FALSE(MallocTunedByEnvironment(Lookup(vars)));
  EXPECT_FALSE(MallocTunedByEnvironment(Lookup({})));
}

TEST(MallocTunedByEnvironmentTest, EachMallocVariable) {
  for (const char* name :
       {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_"}) {
    std::map<std::string, std::string> vars = {{name, "1048576"}};
    EXPECT_TRUE(MallocTunedByEnvironment(Lookup(vars))) << name;
  }
  std::map<std::string, std::string> tunables = {
      {"GLIBC_TUNABLES", "glibc.pthread.rseq=0:glibc.malloc.trim_threshold=1"}};
  EXPECT_TRUE(MallocTunedByEnvironment(Lookup(tunables)));
}

TEST(RetainFreedHostMemoryTest, RejectsNonPositiveThresholds) {
  HostMemoryOptions options;
  options.mmap_threshold_bytes = 0;
  EXPECT_THAT(RetainFreedHostMemory(options),
              StatusIs(absl::StatusCode::kInvalidArgument));
  options = HostMemoryOptions();
  options.trim_threshold_bytes = -1;
  EXPECT_THAT(RetainFreedHostMemory(options),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

#if defined(__GLIBC__)
// A 64 MiB block: above the largest mmap threshold glibc adapts to on its
// own (32 MiB), so with glibc's defaults it gets a mapping of its own.
constexpr size_t kBlock = size_t{64} << 20;

// Puts glibc's default thresholds back (whatever the environment or an
// earlier test set) and returns the heap's free top to the kernel, so that a
// large block cannot be served from memory an earlier test kept.
void GlibcDefaults() {
  ASSERT_EQ(mallopt(M_MMAP_THRESHOLD, 128 * 1024), 1);
  ASSERT_EQ(mallopt(M_TRIM_THRESHOLD, 128 * 1024), 1);
  malloc_trim(0);
}

// Whether a fresh kBlock allocation gets a mapping of its own.
bool BlockIsMapped() {
  const size_t mapped_before = mallinfo2().hblks;
  // Written through a volatile pointer so that the compiler cannot drop
  // the allocation.
  volatile char* block = static_cast<volatile char*>(std::malloc(kBlock));
  if (block == nullptr) return false;
  block[0] = 1;
  const bool mapped = mallinfo2().hblks > mapped_before;
  std::free(const_cast<char*>(block));
  return mapped;
}

TEST(RetainFreedHostMemoryTest, LargeBlocksComeFromTheHeapAndStayAfterFree) {
  GlibcDefaults();
  ASSERT_TRUE(BlockIsMapped());
  absl::StatusOr<std::string> line =
      RetainFreedHostMemory(HostMemoryOptions(), Lookup({}));
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_THAT(*line, HasSubstr("kept for reuse"));
  EXPECT_FALSE(BlockIsMapped());
  // Freed, the block stays in the heap for the next allocation.
  EXPECT_GE(mallinfo2().fordblks, kBlock);
}

TEST(RetainFreedHostMemoryTest, LeavesMallocTunedByTheEnvironmentAlone) {
  GlibcDefaults();
  std::map<std::string, std::string> vars = {{"MALLOC_TOP_PAD_", "0"}};
  absl::StatusOr<std::string> line =
      RetainFreedHostMemory(HostMemoryOptions(), Lookup(vars));
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_THAT(*line, HasSubstr("environment"));
  EXPECT_TRUE(BlockIsMapped());
}
#endif

}  // namespace
}  // namespace trainer
