#include "trainer/learn/cpu_threads.h"

#include <ATen/Parallel.h>
#include <sched.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace trainer {

std::optional<int> CpusFromCgroupQuota(absl::string_view cpu_max) {
  std::vector<absl::string_view> fields =
      absl::StrSplit(cpu_max, absl::ByAnyChar(" \t\n"), absl::SkipEmpty());
  int64_t quota = 0;
  int64_t period = 0;
  if (fields.size() != 2 || !absl::SimpleAtoi(fields[0], &quota) ||
      !absl::SimpleAtoi(fields[1], &period) || quota <= 0 || period <= 0) {
    return std::nullopt;  // "max <period>" lands here too: no quota
  }
  return static_cast<int>((quota + period - 1) / period);
}

int AvailableCpus(const std::string& cgroup_cpu_max) {
  int cpus = 1;
  cpu_set_t mask;
  CPU_ZERO(&mask);
  if (sched_getaffinity(0, sizeof(mask), &mask) == 0) {
    cpus = CPU_COUNT(&mask);
  }
  std::ifstream in(cgroup_cpu_max);
  if (in) {
    std::stringstream text;
    text << in.rdbuf();
    if (std::optional<int> quota = CpusFromCgroupQuota(text.str());
        quota.has_value() && *quota < cpus) {
      cpus = *quota;
    }
  }
  return cpus < 1 ? 1 : cpus;
}

absl::StatusOr<CpuThreads> ChooseCpuThreads(int requested,
                                            const char* omp_num_threads,
                                            int available) {
  if (requested < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cpu_threads must be 0 (automatic) or positive, got ", requested));
  }
  if (requested > 0) return CpuThreads{requested, "--cpu_threads"};
  if (omp_num_threads != nullptr) {
    int threads = 0;
    if (!absl::SimpleAtoi(omp_num_threads, &threads) || threads <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("OMP_NUM_THREADS must be a positive integer, got '",
                       omp_num_threads, "'"));
    }
    return CpuThreads{threads, "OMP_NUM_THREADS"};
  }
  return CpuThreads{available < 1 ? 1 : available, "available CPUs"};
}

std::string DescribeOpenMpWaiting(
    absl::FunctionRef<const char*(const char*)> getenv) {
  // GOMP_SPINCOUNT, when set, gives the spin count whatever the policy.
  if (const char* spins = getenv("GOMP_SPINCOUNT"); spins != nullptr) {
    return absl::StrCat("idle OpenMP threads spin GOMP_SPINCOUNT=", spins,
                        " times, then sleep");
  }
  if (const char* policy = getenv("OMP_WAIT_POLICY"); policy != nullptr) {
    return absl::StrCat("idle OpenMP threads wait as OMP_WAIT_POLICY=",
                        policy, " says");
  }
  return "idle OpenMP threads spin 300,000 times before they sleep "
         "(libgomp's default; GOMP_SPINCOUNT=1000 ran 1.3x as fast on a "
         "2-core VM: docs/BENCHMARKS.md, \"Idle OpenMP threads\")";
}

std::string DescribeOpenMpWaiting() {
  return DescribeOpenMpWaiting(
      [](const char* name) -> const char* { return std::getenv(name); });
}

absl::StatusOr<CpuThreads> SetCpuThreads(int requested) {
  absl::StatusOr<CpuThreads> choice = ChooseCpuThreads(
      requested, std::getenv("OMP_NUM_THREADS"), AvailableCpus());
  if (choice.ok()) at::set_num_threads(choice->threads);
  return choice;
}

}  // namespace trainer
