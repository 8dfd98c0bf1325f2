// Replacing a file's content so that readers see the old or the new file,
// never a part of one.
#ifndef COMMON_ATOMIC_FILE_H_
#define COMMON_ATOMIC_FILE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace common {

// Writes `content` to `path` atomically: a temporary file in the same
// directory (mode 0644) is written, synced and renamed over `path`. On error
// the temporary file is removed and `path` is untouched; the status carries
// the errno's code (e.g. NOT_FOUND for a missing directory) and names the
// file.
absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view content);

}  // namespace common

#endif  // COMMON_ATOMIC_FILE_H_
