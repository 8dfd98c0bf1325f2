#include "trainer/report/png_encoder.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "common/status_matchers.h"

namespace trainer {
namespace {

using ::common::IsOk;
using ::common::StatusIs;
using ::testing::HasSubstr;
using ::testing::StartsWith;

uint32_t ReadBigEndian32(const std::string& bytes, size_t offset) {
  return (static_cast<uint32_t>(static_cast<uint8_t>(bytes[offset])) << 24) |
         (static_cast<uint32_t>(static_cast<uint8_t>(bytes[offset + 1]))
          << 16) |
         (static_cast<uint32_t>(static_cast<uint8_t>(bytes[offset + 2])) << 8) |
         static_cast<uint32_t>(static_cast<uint8_t>(bytes[offset + 3]));
}

struct Chunk {
  std::string type;
  std::string data;
  bool crc_ok = false;
};

// Splits a PNG file after its 8-byte signature into chunks.
std::vector<Chunk> ParseChunks(const std::string& png) {
  std::vector<Chunk> chunks;
  size_t offset = 8;
  while (offset + 12 <= png.size()) {
    const uint32_t length = ReadBigEndian32(png, offset);
    Chunk chunk;
    chunk.type = png.substr(offset + 4, 4);
    chunk.data = png.substr(offset + 8, length);
    const uint32_t crc = ReadBigEndian32(png, offset + 8 + length);
    chunk.crc_ok =
        crc == crc32(0L,
                     reinterpret_cast<const Bytef*>(png.data() + offset + 4),
                     4 + length);
    chunks.push_back(chunk);
    offset += 12 + length;
  }
  EXPECT_EQ(offset, png.size());
  return chunks;
}

TEST(PngEncoderTest, EncodesGrayscaleImage) {
  const std::vector<uint8_t> pixels = {0, 128, 255, 1, 2, 3};
  absl::StatusOr<std::string> png = EncodeGrayscalePng(pixels, 3, 2);
  ASSERT_THAT(png, IsOk());
  EXPECT_EQ(png->substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));

  const std::vector<Chunk> chunks = ParseChunks(*png);
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_EQ(chunks[0].type, "IHDR");
  EXPECT_EQ(chunks[0].data,
            std::string("\0\0\0\x03\0\0\0\x02\x08\0\0\0\0", 13));
  EXPECT_EQ(chunks[1].type, "IDAT");
  EXPECT_EQ(chunks[2].type, "IEND");
  EXPECT_EQ(chunks[2].data, "");
  for (const Chunk& chunk : chunks) EXPECT_TRUE(chunk.crc_ok) << chunk.type;

  // Each row is prefixed with filter type 0.
  std::vector<Bytef> raw(8);
  uLongf raw_size = raw.size();
  ASSERT_EQ(uncompress(raw.data(), &raw_size,
                       reinterpret_cast<const Bytef*>(chunks[1].data.data()),
                       chunks[1].data.size()),
            Z_OK);
  EXPECT_EQ(std::vector<Bytef>(raw.begin(), raw.begin() + raw_size),
            (std::vector<Bytef>{0, 0, 128, 255, 0, 1, 2, 3}));
}

TEST(PngEncoderTest, RejectsMismatchedDimensions) {
  const std::vector<uint8_t> pixels(5, 0);
  EXPECT_THAT(EncodeGrayscalePng(pixels, 3, 2),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("needs 6 pixels, got 5")));
  EXPECT_THAT(EncodeGrayscalePng({}, 0, 0),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(GrayscalePngDataUri(pixels, -1, -5),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(PngEncoderTest, DataUriIsBase64OfThePng) {
  const std::vector<uint8_t> pixels(28 * 28, 200);
  absl::StatusOr<std::string> uri = GrayscalePngDataUri(pixels, 28, 28);
  ASSERT_THAT(uri, IsOk());
  constexpr char kPrefix[] = "data:image/png;base64,";
  ASSERT_THAT(*uri, StartsWith(kPrefix));
  std::string decoded;
  ASSERT_TRUE(absl::Base64Unescape(uri->substr(sizeof(kPrefix) - 1), &decoded));
  EXPECT_EQ(decoded, *EncodeGrayscalePng(pixels, 28, 28));
}

}  // namespace
}  // namespace trainer
