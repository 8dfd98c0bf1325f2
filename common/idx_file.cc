#include "common/idx_file.h"

#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace common {
namespace {

// Reads the whole (possibly gzipped) file. gzread passes plain files through.
absl::StatusOr<std::vector<uint8_t>> ReadAll(const std::string& path) {
  gzFile file = gzopen(path.c_str(), "rb");
  if (file == nullptr) {
    return absl::NotFoundError(absl::StrCat("cannot open ", path));
  }
  std::vector<uint8_t> bytes;
  uint8_t buffer[1 << 16];
  while (true) {
    int n = gzread(file, buffer, sizeof(buffer));
    if (n < 0) {
      int err = 0;
      std::string message = gzerror(file, &err);
      gzclose(file);
      return absl::DataLossError(
          absl::StrCat("cannot read ", path, ": ", message));
    }
    if (n == 0) break;
    bytes.insert(bytes.end(), buffer, buffer + n);
  }
  gzclose(file);
  return bytes;
}

uint32_t BigEndian32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) |
         (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

}  // namespace

absl::StatusOr<IdxArray> ReadIdxFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, ReadAll(path));
  if (bytes.size() < 4) {
    return absl::DataLossError(absl::StrCat(path, ": shorter than an IDX header"));
  }
  if (bytes[0] != 0 || bytes[1] != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": bad IDX magic number (not an IDX file)"));
  }
  if (bytes[2] != 0x08) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": IDX element type ", static_cast<int>(bytes[2]),
        " is not supported (only unsigned byte, 8)"));
  }
  const int rank = bytes[3];
  if (rank < 1 || rank > 4) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": IDX rank ", rank, " is not in [1, 4]"));
  }
  const size_t header = 4 + 4 * static_cast<size_t>(rank);
  if (bytes.size() < header) {
    return absl::DataLossError(absl::StrCat(path, ": truncated IDX header"));
  }
  IdxArray array;
  // The number of values the dimensions announce. Up to four 32-bit
  // dimensions can multiply past 2^64: such a product must not wrap around
  // to a size the file happens to have.
  size_t total = 1;
  bool overflow = false;
  bool empty = false;
  for (int i = 0; i < rank; ++i) {
    uint32_t dim = BigEndian32(bytes.data() + 4 + 4 * i);
    array.dims.push_back(dim);
    if (dim == 0) {
      empty = true;
    } else if (total > std::numeric_limits<size_t>::max() / dim) {
      overflow = true;
    } else {
      total *= dim;
    }
  }
  if (empty) total = 0;
  if (overflow && !empty) {
    return absl::DataLossError(absl::StrCat(
        path, ": truncated: the dimensions ", absl::StrJoin(array.dims, "x"),
        " announce more values than any file holds"));
  }
  if (bytes.size() - header < total) {
    return absl::DataLossError(absl::StrCat(path, ": truncated: expected ", total,
                                            " values, found ",
                                            bytes.size() - header));
  }
  if (bytes.size() - header > total) {
    return absl::DataLossError(absl::StrCat(
        path, ": ", bytes.size() - header - total, " trailing bytes"));
  }
  array.data.assign(bytes.begin() + header, bytes.end());
  return array;
}

namespace {

absl::StatusOr<IdxArray> ReadWithRank(const std::string& path, int rank,
                                      int64_t expected_count) {
  ASSIGN_OR_RETURN(IdxArray array, ReadIdxFile(path));
  if (static_cast<int>(array.dims.size()) != rank) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": expected a ", rank, "-d IDX array, found ",
                     array.dims.size(), "-d (wrong magic number)"));
  }
  if (expected_count > 0 && array.count() != expected_count) {
    return absl::FailedPreconditionError(absl::StrCat(
        path, ": expected ", expected_count, " items, found ", array.count()));
  }
  return array;
}

}  // namespace

absl::StatusOr<std::vector<uint8_t>> ReadIdxLabels(const std::string& path,
                                                   int64_t expected_count) {
  ASSIGN_OR_RETURN(IdxArray array, ReadWithRank(path, 1, expected_count));
  return std::move(array.data);
}

absl::StatusOr<IdxArray> ReadIdxImages(const std::string& path,
                                       int64_t expected_count) {
  return ReadWithRank(path, 3, expected_count);
}

absl::Status WriteIdxFile(const std::string& path, const IdxArray& array) {
  const size_t rank = array.dims.size();
  if (rank < 1 || rank > 4) {
    return absl::InvalidArgumentError(
        absl::StrCat("IDX rank ", rank, " is not in [1, 4]"));
  }
  size_t total = 1;
  for (int64_t dim : array.dims) {
    if (dim < 0 || dim > int64_t{0xffffffff}) {
      return absl::InvalidArgumentError(
          absl::StrCat("IDX dimension ", dim, " does not fit 32 bits"));
    }
    total *= static_cast<size_t>(dim);
  }
  if (total != array.data.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("dimensions ", absl::StrJoin(array.dims, "x"), " hold ",
                     total, " values, data has ", array.data.size()));
  }
  std::vector<uint8_t> header = {0, 0, 0x08, static_cast<uint8_t>(rank)};
  for (int64_t dim : array.dims) {
    const uint32_t d = static_cast<uint32_t>(dim);
    header.insert(header.end(), {static_cast<uint8_t>(d >> 24),
                                 static_cast<uint8_t>(d >> 16),
                                 static_cast<uint8_t>(d >> 8),
                                 static_cast<uint8_t>(d)});
  }
  const bool gzip = absl::EndsWith(path, ".gz");
  const std::string partial = path + ".partial";
  gzFile file = gzopen(partial.c_str(), gzip ? "wb" : "wbT");
  if (file == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot create ", partial));
  }
  // gzwrite takes an unsigned count; write in chunks well below its limit.
  auto write = [&](const std::vector<uint8_t>& bytes) {
    constexpr size_t kChunk = size_t{1} << 24;
    for (size_t at = 0; at < bytes.size(); at += kChunk) {
      const unsigned n =
          static_cast<unsigned>(std::min(kChunk, bytes.size() - at));
      if (gzwrite(file, bytes.data() + at, n) != static_cast<int>(n)) {
        return false;
      }
    }
    return true;
  };
  const bool written = write(header) && write(array.data);
  const bool closed = gzclose(file) == Z_OK;
  if (!written || !closed) {
    std::remove(partial.c_str());
    return absl::UnavailableError(absl::StrCat("cannot write ", partial));
  }
  if (std::rename(partial.c_str(), path.c_str()) != 0) {
    std::remove(partial.c_str());
    return absl::UnavailableError(
        absl::StrCat("cannot rename ", partial, " to ", path));
  }
  return absl::OkStatus();
}

}  // namespace common
