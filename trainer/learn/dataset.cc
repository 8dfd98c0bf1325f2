#include "trainer/learn/dataset.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/idx_file.h"
#include "common/status_macros.h"

namespace trainer {
namespace {

// Copies `bytes` (owned by the caller for the duration of the call) to
// `device` as a uint8 tensor of shape `dims`.
absl::StatusOr<at::Tensor> BytesToDevice(const std::vector<uint8_t>& bytes,
                                         const std::vector<int64_t>& dims,
                                         c10::Device device) {
  try {
    at::Tensor host = at::from_blob(const_cast<uint8_t*>(bytes.data()), dims,
                                    at::TensorOptions().dtype(at::kByte));
    // clone() so the result never aliases `bytes`, also when device is CPU.
    return host.to(device, /*non_blocking=*/false, /*copy=*/true);
  } catch (const c10::Error& e) {
    return absl::UnavailableError(absl::StrCat("cannot copy to device ",
                                               device.str(), ": ",
                                               e.what_without_backtrace()));
  }
}

}  // namespace

absl::StatusOr<at::Tensor> LoadImages(const std::string& path,
                                      int64_t expected_count,
                                      c10::Device device) {
  ASSIGN_OR_RETURN(common::IdxArray images,
                   common::ReadIdxImages(path, expected_count));
  if (images.dims.size() != 3) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": expected 3 dimensions, got ", images.dims.size()));
  }
  const std::vector<int64_t> dims = {images.dims[0], 1, images.dims[1],
                                     images.dims[2]};
  ASSIGN_OR_RETURN(at::Tensor bytes, BytesToDevice(images.data, dims, device));
  return bytes.to(at::kFloat).div_(255.0f);
}

}  // namespace trainer
