#include "common/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace common {
namespace {

absl::Status ErrnoError(int error_number, absl::string_view what,
                        absl::string_view path) {
  return absl::ErrnoToStatus(error_number, absl::StrCat(what, " ", path));
}

}  // namespace

absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view content) {
  std::string temp_path = path + ".tmp.XXXXXX";
  const int fd = mkstemp(temp_path.data());
  if (fd < 0) return ErrnoError(errno, "cannot create", temp_path);
  absl::Status status;
  if (fchmod(fd, 0644) != 0)
    status = ErrnoError(errno, "cannot chmod", temp_path);
  size_t written = 0;
  while (status.ok() && written < content.size()) {
    const ssize_t n =
        write(fd, content.data() + written, content.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      status = ErrnoError(errno, "cannot write", temp_path);
    } else {
      written += static_cast<size_t>(n);
    }
  }
  if (status.ok() && fsync(fd) != 0) {
    status = ErrnoError(errno, "cannot sync", temp_path);
  }
  if (close(fd) != 0 && status.ok()) {
    status = ErrnoError(errno, "cannot close", temp_path);
  }
  if (status.ok() && std::rename(temp_path.c_str(), path.c_str()) != 0) {
    status = ErrnoError(errno, "cannot rename to", path);
  }
  if (!status.ok()) unlink(temp_path.c_str());
  return status;
}

}  // namespace common
