#include "trainer/learn/host_memory.h"

#include <cstdlib>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace trainer {

bool MallocTunedByEnvironment(
    absl::FunctionRef<const char*(const char*)> getenv) {
  for (const char* name :
       {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_"}) {
    if (getenv(name) != nullptr) return true;
  }
  const char* tunables = getenv("GLIBC_TUNABLES");
  return tunables != nullptr && absl::StrContains(tunables, "glibc.malloc.");
}

absl::StatusOr<std::string> RetainFreedHostMemory(
    const HostMemoryOptions& options,
    absl::FunctionRef<const char*(const char*)> getenv) {
  if (options.mmap_threshold_bytes <= 0 || options.trim_threshold_bytes <= 0) {
    return absl::InvalidArgumentError(
        "host memory thresholds must be positive");
  }
#if defined(__GLIBC__)
  if (MallocTunedByEnvironment(getenv)) {
    return std::string("malloc as the environment tunes it");
  }
  if (mallopt(M_MMAP_THRESHOLD, options.mmap_threshold_bytes) != 1) {
    return absl::InternalError(absl::StrCat(
        "glibc refused an mmap threshold of ", options.mmap_threshold_bytes));
  }
  if (mallopt(M_TRIM_THRESHOLD, options.trim_threshold_bytes) != 1) {
    return absl::InternalError(absl::StrCat(
        "glibc refused a trim threshold of ", options.trim_threshold_bytes));
  }
  return absl::StrCat("freed memory kept for reuse (malloc mmap threshold ",
                      options.mmap_threshold_bytes >> 20, " MiB, trim threshold ",
                      options.trim_threshold_bytes >> 20, " MiB)");
#else
  (void)getenv;
  return absl::UnimplementedError(
      "keeping freed memory needs glibc's malloc; left as it is");
#endif
}

absl::StatusOr<std::string> RetainFreedHostMemory(
    const HostMemoryOptions& options) {
  return RetainFreedHostMemory(
      options, [](const char* name) -> const char* { return std::getenv(name); });
}

}  // namespace trainer
