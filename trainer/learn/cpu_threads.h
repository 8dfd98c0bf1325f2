// How many threads LibTorch's CPU operators use. LibTorch 1.x defaults to
// half the hardware threads on x86-64 (it assumes two per core), so on a
// machine without simultaneous multithreading, such as the 2-core VM this
// project is developed on, a trainer left to that default uses one core of
// two. The trainer instead uses every CPU it may run on, unless told
// otherwise (its --cpu_threads flag, or OMP_NUM_THREADS, which sweeps that
// run several trainers at once set to share the cores).
#ifndef TRAINER_LEARN_CPU_THREADS_H_
#define TRAINER_LEARN_CPU_THREADS_H_

#include <optional>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace trainer {

// The CPUs a cgroup v2 quota allows, from the text of its `cpu.max` file
// ("<quota> <period>" in microseconds, or "max <period>" for none): the
// quota divided by the period, rounded up. nullopt for no quota or text
// that is not in that form.
std::optional<int> CpusFromCgroupQuota(absl::string_view cpu_max);

// The CPUs this process may run on: its affinity mask's count, capped by
// the quota in `cgroup_cpu_max` (a cgroup v2 `cpu.max` file; ignored when
// it cannot be read). At least 1.
int AvailableCpus(const std::string& cgroup_cpu_max = "/sys/fs/cgroup/cpu.max");

// Where a thread count came from, for logs and reports.
struct CpuThreads {
  int threads = 1;
  // "--cpu_threads", "OMP_NUM_THREADS" or "available CPUs".
  std::string source;
};

// The thread count for `requested` (a --cpu_threads value): itself when
// positive; when 0, the value of OMP_NUM_THREADS (`omp_num_threads`, null
// when unset) if it is set, else `available`. INVALID_ARGUMENT for a
// negative request or an OMP_NUM_THREADS that is not a positive integer.
absl::StatusOr<CpuThreads> ChooseCpuThreads(int requested,
                                            const char* omp_num_threads,
                                            int available);

// How idle OpenMP threads wait between LibTorch's parallel regions, for the
// log: libgomp reads OMP_WAIT_POLICY and GOMP_SPINCOUNT once, when the
// process starts, so only whoever starts the trainer can change it. Unset,
// an idle thread spins 300,000 times before it sleeps; on the project's
// 2-core VM (2026-12-07) GOMP_SPINCOUNT=1000 ran the CPU recipe about
// 1.3 times as fast, and scripts/run.sh and scripts/bench_labels.sh set it
// for CPU runs (docs/BENCHMARKS.md, "Idle OpenMP threads"). `getenv` looks a
// variable up (null when unset).
std::string DescribeOpenMpWaiting(
    absl::FunctionRef<const char*(const char*)> getenv);

// The same with this process's environment (std::getenv).
std::string DescribeOpenMpWaiting();

// ChooseCpuThreads with this process's environment and AvailableCpus(),
// then at::set_num_threads with the result. Call once, before any other
// LibTorch work. Errors as for ChooseCpuThreads.
absl::StatusOr<CpuThreads> SetCpuThreads(int requested);

}  // namespace trainer

#endif  // TRAINER_LEARN_CPU_THREADS_H_
