// A minimal PNG encoder for 8-bit grayscale images (for inline data URIs).
#ifndef TRAINER_REPORT_PNG_ENCODER_H_
#define TRAINER_REPORT_PNG_ENCODER_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace trainer {

// Encodes `pixels` (row-major, `width` x `height`, 0 = black, 255 = white) as
// a complete PNG file, returned as bytes. Returns INVALID_ARGUMENT if the
// dimensions are not positive or do not match pixels.size(), INTERNAL if
// zlib fails.
absl::StatusOr<std::string> EncodeGrayscalePng(absl::Span<const uint8_t> pixels,
                                               int width, int height);

// Returns "data:image/png;base64,..." for EncodeGrayscalePng's output.
absl::StatusOr<std::string> GrayscalePngDataUri(
    absl::Span<const uint8_t> pixels, int width, int height);

}  // namespace trainer

#endif  // TRAINER_REPORT_PNG_ENCODER_H_
