// Reader for the IDX format used by (Fashion-)MNIST, optionally gzipped.
#ifndef COMMON_IDX_FILE_H_
#define COMMON_IDX_FILE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace common {

// An unsigned-byte IDX array: `dims` as stored (e.g. {60000, 28, 28}) and the
// values in row-major order.
struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;

  int64_t count() const { return dims.empty() ? 0 : dims[0]; }
};

// Reads `path` (gzip or plain; detected by content). Only the ubyte element
// type (0x08) is supported. Returns NOT_FOUND if the file cannot be opened,
// DATA_LOSS if it is truncated or has trailing bytes, INVALID_ARGUMENT for a
// bad magic number or element type.
absl::StatusOr<IdxArray> ReadIdxFile(const std::string& path);

// Reads a label file (1-d IDX, magic 0x00000801). If `expected_count` > 0 the
// count must match (else FAILED_PRECONDITION). Each label must be < 256.
absl::StatusOr<std::vector<uint8_t>> ReadIdxLabels(const std::string& path,
                                                   int64_t expected_count);

// Reads an image file (3-d IDX, magic 0x00000803). If `expected_count` > 0
// the count must match (else FAILED_PRECONDITION).
absl::StatusOr<IdxArray> ReadIdxImages(const std::string& path,
                                       int64_t expected_count);

// Writes `array` as an unsigned-byte IDX file: gzipped when `path` ends in
// ".gz", plain otherwise. The file is written beside `path` first and renamed
// over it only when complete, so a failure leaves no partial file. Returns
// INVALID_ARGUMENT if dims do not describe data (rank 1-4, each dimension
// < 2^32, their product == data.size()), UNAVAILABLE if it cannot be written.
absl::Status WriteIdxFile(const std::string& path, const IdxArray& array);

// Fashion-MNIST as shipped by Debian's dataset-fashion-mnist.
inline constexpr char kDefaultDatasetDir[] = "/usr/share/datasets/fashion-mnist";
inline constexpr char kTrainImagesFile[] = "train-images-idx3-ubyte.gz";
inline constexpr char kTrainLabelsFile[] = "train-labels-idx1-ubyte.gz";
inline constexpr char kTestImagesFile[] = "t10k-images-idx3-ubyte.gz";
inline constexpr char kTestLabelsFile[] = "t10k-labels-idx1-ubyte.gz";
inline constexpr int64_t kTrainCount = 60000;
inline constexpr int64_t kTestCount = 10000;
inline constexpr int kNumClasses = 10;

}  // namespace common

#endif  // COMMON_IDX_FILE_H_
