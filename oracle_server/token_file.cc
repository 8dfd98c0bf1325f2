#include "oracle_server/token_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace oracle_server {

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read token file ", path));
  }
  std::string token((std::istreambuf_iterator<char>(in)),
                    std::istreambuf_iterator<char>());
  while (!token.empty() &&
         (token.back() == '\n' || token.back() == '\r' || token.back() == ' ' ||
          token.back() == '\t')) {
    token.pop_back();
  }
  if (token.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("token file ", path, " is empty"));
  }
  for (char c : token) {
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) {
      return absl::InvalidArgumentError(absl::StrCat(
          "token file ", path, " holds whitespace or control characters"));
    }
  }
  return token;
}

absl::Status WriteTokenFile(const std::string& path, const std::string& token) {
  ::unlink(path.c_str());
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                        S_IRUSR | S_IWUSR);
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot create ", path, ": ", std::strerror(errno)));
  }
  const std::string content = absl::StrCat(token, "\n");
  const ssize_t written = ::write(fd, content.data(), content.size());
  const int write_errno = errno;
  const bool closed = ::close(fd) == 0;
  if (written != static_cast<ssize_t>(content.size()) || !closed) {
    return absl::UnavailableError(
        absl::StrCat("cannot write ", path, ": ", std::strerror(write_errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> GenerateToken() {
  std::ifstream random("/dev/urandom", std::ios::binary);
  char bytes[32];
  if (!random.read(bytes, sizeof(bytes))) {
    return absl::UnavailableError("cannot read /dev/urandom");
  }
  return absl::BytesToHexString(absl::string_view(bytes, sizeof(bytes)));
}

}  // namespace oracle_server
