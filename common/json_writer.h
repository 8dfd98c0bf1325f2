// A minimal JSON writer: compact output, correct string escaping, no parser.
#ifndef COMMON_JSON_WRITER_H_
#define COMMON_JSON_WRITER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace common {

// Returns `text` as a JSON string literal, quotes included. Escapes '"', '\\'
// and control characters; bytes that are not valid UTF-8 become U+FFFD, so
// the result is always valid JSON.
std::string JsonQuote(absl::string_view text);

// Returns the shortest decimal text that reads back as `value`, or "null"
// when `value` is NaN or infinite (JSON has no such numbers).
std::string JsonNumber(double value);

// Builds one compact JSON value (no whitespace). Commas are inserted
// automatically; the caller is responsible for nesting correctly
// (Key() only directly inside an object, every Begin matched by an End).
// Not thread-safe.
//
//   JsonWriter json;
//   json.BeginObject().Key("step").Int(3).Key("loss").Double(0.5).EndObject();
//   json.str() == R"({"step":3,"loss":0.5})"
class JsonWriter {
 public:
  JsonWriter& BeginObject();
  JsonWriter& EndObject();
  JsonWriter& BeginArray();
  JsonWriter& EndArray();

  // Writes an object key; the next call writes its value.
  JsonWriter& Key(absl::string_view key);

  JsonWriter& String(absl::string_view value);
  JsonWriter& Int(int64_t value);
  // Writes JsonNumber(value): NaN and infinities become null.
  JsonWriter& Double(double value);
  JsonWriter& Bool(bool value);
  JsonWriter& Null();

  // The text written so far.
  const std::string& str() const { return out_; }

 private:
  // Writes a comma if this value is not the first in its container.
  void BeforeValue();

  std::string out_;
  // One entry per open container: true until its first element is written.
  std::vector<bool> first_in_container_;
  // True between Key() and the value that follows it.
  bool after_key_ = false;
};

}  // namespace common

#endif  // COMMON_JSON_WRITER_H_
