#ifndef COMMON_SHA256_H_
#define COMMON_SHA256_H_

#include <string>

#include "absl/strings/string_view.h"

namespace common {

// Lower-case hex SHA-256 of `data` (64 characters).
std::string Sha256Hex(absl::string_view data);

}  // namespace common

#endif  // COMMON_SHA256_H_
