// Secret tokens kept in files: the operator's admin token and the experiment
// tokens handed to trainers.
#ifndef ORACLE_SERVER_TOKEN_FILE_H_
#define ORACLE_SERVER_TOKEN_FILE_H_

#include <string>

#include "absl/status/statusor.h"

namespace oracle_server {

// The token in `path`: its content without trailing whitespace (so a final
// newline does not count). NOT_FOUND if the file cannot be read,
// INVALID_ARGUMENT if it is empty or the token holds whitespace or control
// characters.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

// Writes `token` and a newline to `path`, created with mode 0600 (an existing
// file is replaced). UNAVAILABLE if it cannot be written.
absl::Status WriteTokenFile(const std::string& path, const std::string& token);

// A new random token: 64 lower-case hex digits (256 bits from
// /dev/urandom). UNAVAILABLE if the random source cannot be read.
absl::StatusOr<std::string> GenerateToken();

}  // namespace oracle_server

#endif  // ORACLE_SERVER_TOKEN_FILE_H_
