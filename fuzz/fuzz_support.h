// Helpers shared by the fuzz targets: a scratch directory and small IDX
// label files for the oracle's store.
#ifndef FUZZ_FUZZ_SUPPORT_H_
#define FUZZ_FUZZ_SUPPORT_H_

#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <vector>

namespace fuzz {

// Aborts with `message`: how a fuzz target reports a broken invariant.
[[noreturn]] inline void Fail(const std::string& message) {
  std::fprintf(stderr, "fuzz invariant broken: %s\n", message.c_str());
  std::abort();
}

// A fresh directory for this process (under /dev/shm when it exists, so that
// per-input files cost no disk I/O), removed when the process exits normally
// (a crashing run leaves it, with a few small files).
inline const std::string& ScratchDir() {
  static const std::string* dir = [] {
    const char* base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : nullptr;
    if (base == nullptr) base = std::getenv("TMPDIR");
    if (base == nullptr) base = "/tmp";
    std::string pattern = std::string(base) + "/fewlabels_fuzz.XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) Fail("mkdtemp " + pattern);
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(ScratchDir(), ignored);
    });
    return new std::string(pattern);
  }();
  return *dir;
}

inline void WriteFile(const std::string& path, const void* data, size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
  if (!out) Fail("cannot write " + path);
}

// Writes a plain (not gzipped) 1-d IDX label file holding label i % 10 for
// sample i.
inline void WriteIdxLabels(const std::string& path, uint32_t count) {
  std::vector<uint8_t> bytes = {0, 0, 0x08, 0x01};
  for (int shift = 24; shift >= 0; shift -= 8) {
    bytes.push_back((count >> shift) & 0xff);
  }
  for (uint32_t i = 0; i < count; ++i) bytes.push_back((i * 7 + 3) % 10);
  WriteFile(path, bytes.data(), bytes.size());
}

}  // namespace fuzz

#endif  // FUZZ_FUZZ_SUPPORT_H_
