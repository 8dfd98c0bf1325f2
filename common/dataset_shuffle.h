// A copy of an IDX data set whose training images and labels are permuted
// together: the same data in another file order. Used to check that results
// do not depend on the order of the training file (issue 8): point both the
// oracle and the trainer at the copy.
#ifndef COMMON_DATASET_SHUFFLE_H_
#define COMMON_DATASET_SHUFFLE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace common {

struct DatasetShuffleOptions {
  // Folder with the four Fashion-MNIST .gz files (kTrainImagesFile, ...).
  std::string source_dir;
  // Folder to write the copy into; created if missing, must not hold any of
  // the files written (nothing is overwritten).
  std::string out_dir;
  // Seeds the permutation; the same seed gives the same order everywhere.
  uint64_t seed = 1;
  // When positive, only the first `prefix` training items are permuted
  // (among themselves) and the rest keep their places: with a trainer and
  // oracle limited to the first `prefix` items (--train_limit) the pool
  // stays the same set of images and only its order changes. 0 permutes
  // every item.
  int64_t prefix = 0;
};

// A uniformly random permutation of 0..n-1 drawn from `seed` (Fisher-Yates
// over mt19937_64 with unbiased bounded draws, so it is the same on every
// platform and standard library).
std::vector<int64_t> SeededPermutation(int64_t n, uint64_t seed);

// Writes into out_dir: the training images and labels with
// new[i] = old[permutation[i]], the test images and labels unchanged (byte
// copies), and kPermutationFile (line i: permutation[i], the original index
// of new item i). With a prefix, permutation[i] = i from the prefix on.
// Returns the permutation. INVALID_ARGUMENT if out_dir is source_dir or
// empty, if prefix is negative or more than the training items, ALREADY_EXISTS
// if out_dir holds one of those files, NOT_FOUND / DATA_LOSS /
// FAILED_PRECONDITION from reading the source (FAILED_PRECONDITION when image
// and label counts differ), or the write's error (UNAVAILABLE, or the errno's
// code from WriteFileAtomically) if a file cannot be written. On error no file
// of the copy is left complete under its final name except those written before
// the failure.
absl::StatusOr<std::vector<int64_t>> ShuffleDataset(
    const DatasetShuffleOptions& options);

inline constexpr char kPermutationFile[] = "permutation.txt";

}  // namespace common

#endif  // COMMON_DATASET_SHUFFLE_H_
