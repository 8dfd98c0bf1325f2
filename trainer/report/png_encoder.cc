#include "trainer/report/png_encoder.h"

#include <zlib.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace trainer {
namespace {

void AppendBigEndian32(uint32_t value, std::string* out) {
  out->push_back(static_cast<char>(value >> 24));
  out->push_back(static_cast<char>((value >> 16) & 0xff));
  out->push_back(static_cast<char>((value >> 8) & 0xff));
  out->push_back(static_cast<char>(value & 0xff));
}

// Appends one chunk: length, type, data, CRC-32 over type and data.
void AppendChunk(const char type[4], const std::string& data,
                 std::string* out) {
  AppendBigEndian32(static_cast<uint32_t>(data.size()), out);
  const size_t type_start = out->size();
  out->append(type, 4);
  out->append(data);
  const uLong crc =
      crc32(0L, reinterpret_cast<const Bytef*>(out->data() + type_start),
            static_cast<uInt>(4 + data.size()));
  AppendBigEndian32(static_cast<uint32_t>(crc), out);
}

}  // namespace

absl::StatusOr<std::string> EncodeGrayscalePng(absl::Span<const uint8_t> pixels,
                                               int width, int height) {
  if (width <= 0 || height <= 0 ||
      pixels.size() != static_cast<size_t>(width) * height) {
    return absl::InvalidArgumentError(absl::StrCat(
        "PNG: ", width, "x", height, " image needs ",
        static_cast<int64_t>(width) * height, " pixels, got ", pixels.size()));
  }
  // Each scanline is prefixed by its filter type (0 = none).
  std::vector<Bytef> raw;
  raw.reserve(static_cast<size_t>(width + 1) * height);
  for (int y = 0; y < height; ++y) {
    raw.push_back(0);
    raw.insert(raw.end(), pixels.begin() + static_cast<size_t>(y) * width,
               pixels.begin() + static_cast<size_t>(y + 1) * width);
  }
  uLongf compressed_size = compressBound(static_cast<uLong>(raw.size()));
  std::string compressed(compressed_size, '\0');
  const int rc =
      compress2(reinterpret_cast<Bytef*>(compressed.data()), &compressed_size,
                raw.data(), static_cast<uLong>(raw.size()), Z_BEST_COMPRESSION);
  if (rc != Z_OK) {
    return absl::InternalError(
        absl::StrCat("PNG: zlib compress2 failed: ", rc));
  }
  compressed.resize(compressed_size);

  std::string header;
  AppendBigEndian32(static_cast<uint32_t>(width), &header);
  AppendBigEndian32(static_cast<uint32_t>(height), &header);
  header.push_back(8);  // Bit depth.
  header.push_back(0);  // Color type: grayscale.
  header.push_back(0);  // Compression: deflate.
  header.push_back(0);  // Filter method: adaptive.
  header.push_back(0);  // Interlace: none.

  std::string png("\x89PNG\r\n\x1a\n", 8);
  AppendChunk("IHDR", header, &png);
  AppendChunk("IDAT", compressed, &png);
  AppendChunk("IEND", "", &png);
  return png;
}

absl::StatusOr<std::string> GrayscalePngDataUri(
    absl::Span<const uint8_t> pixels, int width, int height) {
  ASSIGN_OR_RETURN(const std::string png,
                   EncodeGrayscalePng(pixels, width, height));
  return absl::StrCat("data:image/png;base64,", absl::Base64Escape(png));
}

}  // namespace trainer
