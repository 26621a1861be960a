// core/: the codecs and text helpers every layer shares.
#include <doctest/doctest.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <string>

#include "core/base62.hpp"
#include "core/hex.hpp"
#include "core/json_line.hpp"
#include "core/text.hpp"
#include "core/time_format.hpp"

using namespace keygate::core;

TEST_CASE("hex: bytes to lower-case text and back, any case accepted") {
  const std::array<std::uint8_t, 4> bytes{0x00, 0x9f, 0xA0, 0xff};
  CHECK(to_hex(bytes) == "009fa0ff");
  std::array<std::uint8_t, 4> back{};
  CHECK(decode_hex("009FA0ff", back));
  CHECK(back == bytes);
  CHECK(decode_hex("") == std::vector<std::uint8_t>{});
}

TEST_CASE("hex: a wrong length or a non-hex character is refused") {
  std::array<std::uint8_t, 2> out{};
  CHECK_FALSE(decode_hex("abc", out));
  CHECK_FALSE(decode_hex("abcdef", out));
  CHECK_FALSE(decode_hex("abcg", out));
  CHECK_FALSE(decode_hex("ab c", out));
  CHECK_FALSE(decode_hex("abc"));
  CHECK_FALSE(decode_hex("0x12"));
}

TEST_CASE("hex: a UUID's 16 bytes in the 8-4-4-4-12 form") {
  std::array<std::uint8_t, 16> bytes{};
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::uint8_t>(i * 17);
  CHECK(format_uuid(bytes) == "00112233-4455-6677-8899-aabbccddeeff");
}

TEST_CASE("base62: fixed-width encoding, most significant digit first, zero padded") {
  std::array<char, 6> out{};
  encode_base62_fixed(0, out);
  CHECK(std::string(out.data(), out.size()) == "000000");
  encode_base62_fixed(61, out);
  CHECK(std::string(out.data(), out.size()) == "00000z");
  encode_base62_fixed(62, out);
  CHECK(std::string(out.data(), out.size()) == "000010");
  encode_base62_fixed(0xFFFFFFFFu, out);
  CHECK(std::string(out.data(), out.size()) == "4gfFC3");
  CHECK(is_base62('a'));
  CHECK_FALSE(is_base62('_'));
}

TEST_CASE("text: trim, case-insensitive compare, tokens") {
  CHECK(trim_blanks(" \t a b \t") == "a b");
  CHECK(trim_blanks("   ").empty());
  CHECK(iequals_ascii("Bearer", "bEARER"));
  CHECK_FALSE(iequals_ascii("Bearer", "Bearer "));
  CHECK(to_lower_ascii("X-Api-KEY") == "x-api-key");
  CHECK(to_upper_ascii("get") == "GET");
  CHECK(is_token("X-Custom_1!"));
  CHECK_FALSE(is_token(""));
  CHECK_FALSE(is_token("a b"));
  CHECK_FALSE(is_token("a:b"));
}

TEST_CASE("time: RFC 3339 UTC text from <chrono> calendar types") {
  using namespace std::chrono;
  const sys_days day = 2025y / January / 31;
  const auto t = day + 12h + 3min + 4s + 56789us;
  CHECK(format_utc_seconds(t) == "2025-01-31T12:03:04Z");
  std::string out;
  append_utc_micros(out, t);
  CHECK(out == "2025-01-31T12:03:04.056789Z");
  CHECK(format_utc_seconds(sys_days(1969y / December / 31) + 23h + 59min + 59s) ==
        "1969-12-31T23:59:59Z");
  CHECK(format_utc_seconds(sys_days(2024y / February / 29)) == "2024-02-29T00:00:00Z");
}

TEST_CASE("json: valid UTF-8 passes through, controls are escaped, invalid bytes become U+FFFD") {
  auto quoted = [](std::string_view text) {
    std::string out;
    json::append_string(out, text);
    return out;
  };
  CHECK(quoted("plain") == "\"plain\"");
  CHECK(quoted("a\"b\\c") == "\"a\\\"b\\\\c\"");
  CHECK(quoted("tab\tnl\n\x7f") == "\"tab\\u0009nl\\u000a\\u007f\"");
  CHECK(quoted("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91") == "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91\"");
  CHECK(quoted("\xff") == "\"\\ufffd\"");
  CHECK(quoted("\xc3") == "\"\\ufffd\"");                  // truncated sequence
  CHECK(quoted("\xc0\xaf") == "\"\\ufffd\\ufffd\"");       // overlong '/'
  CHECK(quoted("\xed\xa0\x80") == "\"\\ufffd\\ufffd\\ufffd\"");  // a UTF-16 surrogate
  CHECK(quoted("\xf4\x90\x80\x80") == "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");  // above U+10FFFF
  CHECK(quoted(std::string_view("a\0b", 3)) == "\"a\\u0000b\"");
}

TEST_CASE("json: one line with ts, level, msg and the fields in order") {
  std::string line;
  json::begin_line(line, "info", "request");
  json::add(line, "path", "/x");
  json::add(line, "status", std::int64_t{200});
  json::add_null(line, "key_id");
  json::end_line(line);
  REQUIRE(line.starts_with("{\"ts\":\""));
  CHECK(line.find("Z\",\"level\":\"info\",\"msg\":\"request\",\"path\":\"/x\",\"status\":200,"
                  "\"key_id\":null}\n") != std::string::npos);
}

TEST_CASE("uuid: the 8-4-4-4-12 text form parses to its 16 bytes, anything else does not") {
  const auto bytes = parse_uuid("00112233-4455-6677-8899-AABBCCDDeeff");
  REQUIRE(bytes);
  CHECK(format_uuid(*bytes) == "00112233-4455-6677-8899-aabbccddeeff");
  for (const char* bad : {"", "00112233445566778899aabbccddeeff", "00112233-4455-6677-8899-aabbccddeef",
                          "00112233-4455-6677-8899-aabbccddeeff0", "0011223-34455-6677-8899-aabbccddeeff",
                          "00112233-4455-6677-8899-aabbccddeefg", "00112233_4455-6677-8899-aabbccddeeff"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_uuid(bad));
    CHECK_FALSE(is_uuid(bad));
  }
}
