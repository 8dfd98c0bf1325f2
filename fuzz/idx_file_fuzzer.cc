// Fuzzes the IDX reader (common/idx_file.h) on arbitrary file contents, plain
// or gzipped: it must return a status, never crash, and what it returns as OK
// must be self-consistent (as many values as the dimensions say).
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "common/idx_file.h"
#include "fuzz/fuzz_support.h"

namespace {

// Exactly product(dims) values, without overflow.
void CheckConsistent(const common::IdxArray& array) {
  unsigned __int128 total = 1;
  for (int64_t dim : array.dims) {
    if (dim < 0) fuzz::Fail("negative IDX dimension");
    total *= static_cast<uint64_t>(dim);
    if (total > (unsigned __int128){1} << 64)
      total = (unsigned __int128){1} << 64;
  }
  if (total != array.data.size()) {
    fuzz::Fail("IDX array holds " + std::to_string(array.data.size()) +
               " values but its dimensions say otherwise");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string* path =
      new std::string(fuzz::ScratchDir() + "/input.idx");
  fuzz::WriteFile(*path, data, size);

  absl::StatusOr<common::IdxArray> array = common::ReadIdxFile(*path);
  if (array.ok()) CheckConsistent(*array);

  absl::StatusOr<common::IdxArray> images = common::ReadIdxImages(*path, 0);
  if (images.ok()) {
    CheckConsistent(*images);
    if (images->dims.size() != 3) fuzz::Fail("images are not 3-d");
  }
  absl::StatusOr<std::vector<uint8_t>> labels = common::ReadIdxLabels(*path, 0);
  if (labels.ok() && (!array.ok() || array->dims.size() != 1 ||
                      labels->size() != static_cast<size_t>(array->dims[0]))) {
    fuzz::Fail("labels disagree with the 1-d array");
  }
  return 0;
}
