#include "common/json_writer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

namespace common {
namespace {

TEST(JsonQuoteTest, EscapesQuotesBackslashesAndControlCharacters) {
  EXPECT_EQ(JsonQuote("plain"), "\"plain\"");
  EXPECT_EQ(JsonQuote("say \"hi\"\\now"), R"("say \"hi\"\\now")");
  EXPECT_EQ(JsonQuote("a\nb\rc\td\be\ff"), R"("a\nb\rc\td\be\ff")");
  EXPECT_EQ(JsonQuote(std::string("\x01\x1f", 2)), R"("\u0001\u001f")");
  EXPECT_EQ(JsonQuote(std::string("nul\0end", 7)), R"("nul\u0000end")");
  EXPECT_EQ(JsonQuote("</script>"), "\"</script>\"");
}

TEST(JsonQuoteTest, KeepsValidUtf8AndReplacesInvalidBytes) {
  EXPECT_EQ(JsonQuote("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x91\x95"),
            "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x91\x95\"");
  EXPECT_EQ(JsonQuote("bad\xff"), R"("bad\ufffd")");
  // Truncated two-byte sequence, overlong '/', and an encoded surrogate.
  EXPECT_EQ(JsonQuote("x\xc3"), R"("x\ufffd")");
  EXPECT_EQ(JsonQuote("\xc0\xaf"), R"("\ufffd\ufffd")");
  EXPECT_EQ(JsonQuote("\xed\xa0\x80"), R"("\ufffd\ufffd\ufffd")");
}

TEST(JsonNumberTest, WritesShortestRoundTripAndNullForNonFinite) {
  EXPECT_EQ(JsonNumber(0.1), "0.1");
  EXPECT_EQ(JsonNumber(3.0), "3");
  EXPECT_EQ(JsonNumber(-0.5), "-0.5");
  EXPECT_EQ(JsonNumber(1e21), "1e+21");
  EXPECT_EQ(JsonNumber(0.1 + 0.2), "0.30000000000000004");
  EXPECT_EQ(JsonNumber(std::nan("")), "null");
  EXPECT_EQ(JsonNumber(std::numeric_limits<double>::infinity()), "null");
  EXPECT_EQ(JsonNumber(-std::numeric_limits<double>::infinity()), "null");
}

TEST(JsonWriterTest, WritesNestedContainersWithCommas) {
  JsonWriter json;
  json.BeginObject()
      .Key("step")
      .Int(3)
      .Key("loss")
      .Double(0.25)
      .Key("ok")
      .Bool(true)
      .Key("none")
      .Null()
      .Key("rows")
      .BeginArray()
      .BeginArray()
      .Int(1)
      .Int(-2)
      .EndArray()
      .BeginArray()
      .EndArray()
      .BeginObject()
      .Key("name")
      .String("a\"b")
      .EndObject()
      .EndArray()
      .Key("empty")
      .BeginObject()
      .EndObject()
      .EndObject();
  EXPECT_EQ(json.str(), R"({"step":3,"loss":0.25,"ok":true,"none":null,)"
                        R"("rows":[[1,-2],[],{"name":"a\"b"}],"empty":{}})");
}

TEST(JsonWriterTest, EscapesKeys) {
  JsonWriter json;
  json.BeginObject().Key("a\nb").String("").EndObject();
  EXPECT_EQ(json.str(), R"({"a\nb":""})");
}

TEST(JsonWriterTest, WritesTopLevelArrayOfScalars) {
  JsonWriter json;
  json.BeginArray().Double(1.5).Double(std::nan("")).String("x").EndArray();
  EXPECT_EQ(json.str(), R"([1.5,null,"x"])");
}

}  // namespace
}  // namespace common
