#include "trainer/learn/cpu_threads.h"

#include <ATen/Parallel.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <stdlib.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <string>

#include "common/status_matchers.h"

namespace trainer {
namespace {

using ::common::StatusIs;
using ::testing::HasSubstr;
using ::testing::Optional;

TEST(CpusFromCgroupQuotaTest, RoundsTheQuotaUp) {
  EXPECT_THAT(CpusFromCgroupQuota("200000 100000\n"), Optional(2));
  EXPECT_THAT(CpusFromCgroupQuota("150000 100000"), Optional(2));
  EXPECT_THAT(CpusFromCgroupQuota("50000 100000"), Optional(1));
  EXPECT_THAT(CpusFromCgroupQuota("100000 100000"), Optional(1));
}

TEST(CpusFromCgroupQuotaTest, NoQuotaOrOtherText) {
  EXPECT_EQ(CpusFromCgroupQuota("max 100000\n"), std::nullopt);
  EXPECT_EQ(CpusFromCgroupQuota(""), std::nullopt);
  EXPECT_EQ(CpusFromCgroupQuota("200000"), std::nullopt);
  EXPECT_EQ(CpusFromCgroupQuota("0 100000"), std::nullopt);
  EXPECT_EQ(CpusFromCgroupQuota("200000 0"), std::nullopt);
  EXPECT_EQ(CpusFromCgroupQuota("1 2 3"), std::nullopt);
}

int AffinityCount() {
  cpu_set_t mask;
  CPU_ZERO(&mask);
  EXPECT_EQ(sched_getaffinity(0, sizeof(mask), &mask), 0);
  return CPU_COUNT(&mask);
}

std::string WriteTemp(const std::string& name, const std::string& text) {
  std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

TEST(AvailableCpusTest, AffinityWithoutQuota) {
  EXPECT_EQ(AvailableCpus(WriteTemp("cpu.max.none", "max 100000\n")),
            AffinityCount());
  EXPECT_EQ(AvailableCpus(::testing::TempDir() + "/no-such-file"),
            AffinityCount());
}

TEST(AvailableCpusTest, QuotaCapsTheAffinity) {
  EXPECT_EQ(AvailableCpus(WriteTemp("cpu.max.one", "100000 100000\n")), 1);
  // A quota above the affinity count does not raise it.
  EXPECT_EQ(AvailableCpus(WriteTemp("cpu.max.many", "100000000 100000\n")),
            AffinityCount());
}

TEST(ChooseCpuThreadsTest, FlagThenEnvironmentThenAvailable) {
  absl::StatusOr<CpuThreads> flag = ChooseCpuThreads(3, "5", 8);
  ASSERT_TRUE(flag.ok()) << flag.status();
  EXPECT_EQ(flag->threads, 3);
  EXPECT_EQ(flag->source, "--cpu_threads");

  absl::StatusOr<CpuThreads> env = ChooseCpuThreads(0, "5", 8);
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->threads, 5);
  EXPECT_EQ(env->source, "OMP_NUM_THREADS");

  absl::StatusOr<CpuThreads> available = ChooseCpuThreads(0, nullptr, 8);
  ASSERT_TRUE(available.ok()) << available.status();
  EXPECT_EQ(available->threads, 8);
  EXPECT_EQ(available->source, "available CPUs");
}

TEST(ChooseCpuThreadsTest, RejectsBadValues) {
  EXPECT_THAT(ChooseCpuThreads(-1, nullptr, 2).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("cpu_threads")));
  for (const char* bad : {"", "0", "-2", "two", "2x"}) {
    EXPECT_THAT(ChooseCpuThreads(0, bad, 2).status(),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("OMP_NUM_THREADS")))
        << "'" << bad << "'";
  }
  // A flag wins over a bad environment value, as it is never read then.
  EXPECT_TRUE(ChooseCpuThreads(2, "two", 2).ok());
}

// An environment of the given variables, for DescribeOpenMpWaiting.
struct FakeEnvironment {
  std::map<std::string, std::string> variables;
  const char* operator()(const char* name) const {
    auto it = variables.find(name);
    return it == variables.end() ? nullptr : it->second.c_str();
  }
};

TEST(DescribeOpenMpWaitingTest, SpinCountThenPolicyThenDefault) {
  EXPECT_EQ(DescribeOpenMpWaiting(FakeEnvironment{
                {{"GOMP_SPINCOUNT", "1000"}, {"OMP_WAIT_POLICY", "ACTIVE"}}}),
            "idle OpenMP threads spin GOMP_SPINCOUNT=1000 times, then sleep");
  EXPECT_EQ(DescribeOpenMpWaiting(
                FakeEnvironment{{{"OMP_WAIT_POLICY", "PASSIVE"}}}),
            "idle OpenMP threads wait as OMP_WAIT_POLICY=PASSIVE says");
  std::string unset = DescribeOpenMpWaiting(FakeEnvironment{});
  EXPECT_THAT(unset, HasSubstr("spin 300,000 times"));
  EXPECT_THAT(unset, HasSubstr("GOMP_SPINCOUNT=1000"));
}

TEST(DescribeOpenMpWaitingTest, ReadsThisProcesssEnvironment) {
  setenv("GOMP_SPINCOUNT", "77", /*overwrite=*/1);
  EXPECT_THAT(DescribeOpenMpWaiting(), HasSubstr("GOMP_SPINCOUNT=77 times"));
  unsetenv("GOMP_SPINCOUNT");
}

TEST(SetCpuThreadsTest, SetsLibTorchsThreadCount) {
  unsetenv("OMP_NUM_THREADS");
  absl::StatusOr<CpuThreads> set = SetCpuThreads(0);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->threads, AvailableCpus());
  EXPECT_EQ(at::get_num_threads(), set->threads);

  // A count no machine's default gives by chance.
  ASSERT_TRUE(SetCpuThreads(3).ok());
  EXPECT_EQ(at::get_num_threads(), 3);
  ASSERT_TRUE(SetCpuThreads(1).ok());
  EXPECT_EQ(at::get_num_threads(), 1);

  EXPECT_FALSE(SetCpuThreads(-1).ok());
  EXPECT_EQ(at::get_num_threads(), 1) << "an error leaves the count alone";
}

}  // namespace
}  // namespace trainer
