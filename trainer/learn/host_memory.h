// Whether the process keeps the host memory LibTorch frees, for reuse.
//
// LibTorch allocates CPU tensors with malloc. With glibc's defaults a block
// above the mmap threshold (128 KiB at first, adapting up to 32 MiB) gets a
// mapping of its own that is unmapped when freed, and the heap's free top is
// handed back to the kernel beyond the trim threshold. A forward pass over a
// batch of images allocates activations of megabytes to tens of megabytes,
// so every batch faults its pages in afresh: on the project's 2-core VM
// (2026-12-07) a short CPU run of the main job took 15 million minor page
// faults and spent twice as long outside its training steps (evaluations,
// embeddings, PCA) as in them. RetainFreedHostMemory raises both thresholds
// so that freed blocks stay in the process for the next allocation. The
// cost: the process keeps its peak resident memory instead of returning it.
// Results do not change (no computation depends on where memory lies).
#ifndef TRAINER_LEARN_HOST_MEMORY_H_
#define TRAINER_LEARN_HOST_MEMORY_H_

#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"

namespace trainer {

struct HostMemoryOptions {
  // Blocks below this size come from the heap instead of their own mapping.
  int mmap_threshold_bytes = 1 << 30;
  // The heap's free top goes back to the kernel only beyond this.
  int trim_threshold_bytes = 1 << 30;
};

// Whether the environment already tunes glibc's malloc (any of
// MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_, MALLOC_TOP_PAD_ set, or
// GLIBC_TUNABLES naming a glibc.malloc tunable); `getenv` looks a variable
// up (null when unset).
bool MallocTunedByEnvironment(
    absl::FunctionRef<const char*(const char*)> getenv);

// Sets glibc malloc's mmap and trim thresholds to `options` unless
// MallocTunedByEnvironment(getenv) (the user's settings stand). Returns a
// line for the log saying what holds now. INVALID_ARGUMENT for a
// non-positive threshold; INTERNAL if glibc refuses one; UNIMPLEMENTED
// where the C library is not glibc (nothing is changed). Call once, early in
// main: it changes the whole process.
absl::StatusOr<std::string> RetainFreedHostMemory(
    const HostMemoryOptions& options,
    absl::FunctionRef<const char*(const char*)> getenv);

// The same with this process's environment (std::getenv).
absl::StatusOr<std::string> RetainFreedHostMemory(
    const HostMemoryOptions& options = {});

}  // namespace trainer

#endif  // TRAINER_LEARN_HOST_MEMORY_H_
