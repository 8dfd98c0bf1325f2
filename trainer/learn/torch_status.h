// The one mapping from LibTorch exceptions to absl::Status used by every
// trainer library.
#ifndef TRAINER_LEARN_TORCH_STATUS_H_
#define TRAINER_LEARN_TORCH_STATUS_H_

#include <c10/util/Exception.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace trainer {

// RESOURCE_EXHAUSTED for out-of-memory, INVALID_ARGUMENT for index, value
// and type errors, INTERNAL otherwise; the message is "<what>: <error>".
absl::Status TorchErrorToStatus(const c10::Error& e, absl::string_view what);

}  // namespace trainer

#endif  // TRAINER_LEARN_TORCH_STATUS_H_
