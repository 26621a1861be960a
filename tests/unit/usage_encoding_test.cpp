// The usage log's row encodings, with no server: the COPY text line and the binary row, every
// branch of the text cleaning, key and event ids, addresses and the numeric limits. (That
// PostgreSQL stores the same row from both forms is tests/integration/usage_writer_test.cpp's.)
#include <doctest/doctest.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/hex.hpp"
#include "store/usage_encoding.hpp"
#include "store/usage_partitions.hpp"

using keygate::core::IpAddress;
using keygate::store::append_usage_binary_header;
using keygate::store::append_usage_binary_row;
using keygate::store::append_usage_binary_trailer;
using keygate::store::append_usage_line;
using keygate::store::parse_usage_key_id;
using keygate::store::UsageEvent;
using keygate::store::UsageFacts;

namespace {

constexpr std::string_view key_id = "0b6f8c1e-2a47-4d1c-9f3e-5a6b7c8d9e0f";
constexpr std::uint64_t process_id = 0x0123456789abcdefULL;
const std::string bad = "\xef\xbf\xbd";  // U+FFFD

UsageFacts facts(std::string_view endpoint = "/a", std::string_view agent = "curl/8") {
  UsageFacts f;
  f.key_id = key_id;
  f.method = "GET";
  f.endpoint = endpoint;
  f.user_agent = agent;
  f.client_ip = *IpAddress::parse("10.1.2.3");
  f.status = 200;
  f.duration = std::chrono::microseconds(1500);
  f.finished_at = std::chrono::system_clock::time_point(std::chrono::microseconds(1700000000123456LL));
  return f;
}

UsageEvent event(const UsageFacts& f, std::uint64_t sequence = 1) {
  UsageEvent e;
  fill_usage_event(e, f);
  e.sequence = sequence;
  return e;
}

// The text line's fields, still COPY-escaped.
std::vector<std::string> line_fields(const UsageEvent& e) {
  std::string line;
  REQUIRE(append_usage_line(line, e, process_id));
  REQUIRE(line.back() == '\n');
  std::vector<std::string> out(1);
  for (char c : line.substr(0, line.size() - 1)) {
    if (c == '\t') out.emplace_back();
    else out.back().push_back(c);
  }
  return out;
}

std::uint64_t big_endian(std::string_view bytes) {
  std::uint64_t v = 0;
  for (char c : bytes) v = v << 8 | static_cast<unsigned char>(c);
  return v;
}

// The binary row's fields (nullopt for NULL), checking its framing on the way.
std::vector<std::optional<std::string>> binary_fields(const UsageEvent& e) {
  std::string row;
  REQUIRE(append_usage_binary_row(row, e, process_id));
  REQUIRE(row.size() >= 2);
  const std::uint64_t count = big_endian(std::string_view(row).substr(0, 2));
  std::vector<std::optional<std::string>> out;
  std::size_t at = 2;
  for (std::uint64_t i = 0; i < count; ++i) {
    REQUIRE(at + 4 <= row.size());
    const std::uint64_t len = big_endian(std::string_view(row).substr(at, 4));
    at += 4;
    if (len == 0xffffffffu) {
      out.emplace_back(std::nullopt);
      continue;
    }
    REQUIRE(at + len <= row.size());
    out.emplace_back(row.substr(at, len));
    at += len;
  }
  CHECK(at == row.size());  // nothing after the last field
  return out;
}

std::string hex(std::string_view bytes) {
  return keygate::core::to_hex(std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
}

}  // namespace

TEST_CASE("a usage event keeps bounded fields and encodes as one COPY line") {
  std::string long_path(1000, 'p');
  UsageEvent e = event(facts("/" + long_path, "agent\twith\\tab\nand \xff bad \xe2\x82 utf8"), 42);
  CHECK(e.endpoint.size == UsageEvent::max_endpoint);
  CHECK(e.created_at_us == 1700000000123456LL - 1500);
  CHECK(e.response_time_us == 1500);
  const auto f = line_fields(e);
  REQUIRE(f.size() == 9);
  CHECK(f[0] == "01234567-89ab-cdef-0000-00000000002a");
  CHECK(f[1] == key_id);
  CHECK(f[2].size() == UsageEvent::max_endpoint);
  CHECK(f[3] == "GET");
  CHECK(f[4] == "200");
  CHECK(f[5] == "10.1.2.3");
  CHECK(f[6] == "agent\\twith\\\\tab\\nand " + bad + " bad " + bad + bad + " utf8");
  CHECK(f[7] == "1500");
  CHECK(f[8] == "2023-11-14T22:13:20.121956Z");
  std::string line;
  REQUIRE(append_usage_line(line, e, process_id));
  CHECK(keygate::store::usage_line_day(line.substr(0, line.size() - 1)) ==
        keygate::store::usage_day_of(e.created_at_us));
}

TEST_CASE("an empty user agent, method or endpoint is NULL in both forms") {
  UsageFacts f = facts("", "");
  f.method = "";
  const UsageEvent e = event(f);
  const auto text = line_fields(e);
  CHECK(text[2] == "\\N");
  CHECK(text[3] == "\\N");
  CHECK(text[6] == "\\N");
  const auto binary = binary_fields(e);
  REQUIRE(binary.size() == 10);
  CHECK_FALSE(binary[2].has_value());
  CHECK_FALSE(binary[3].has_value());
  CHECK_FALSE(binary[6].has_value());
  CHECK(binary[0].has_value());
  CHECK(binary[9].has_value());
}

TEST_CASE("an event whose key id is not a uuid is refused by both forms, with nothing appended") {
  for (const std::string_view id : {"k1", "", "0b6f8c1e-2a47-4d1c-9f3e-5a6b7c8d9e0", "0b6f8c1e-2a47-4d1c-9f3e-5a6b7c8d9e0g"}) {
    UsageFacts f = facts();
    f.key_id = id;
    const UsageEvent e = event(f);
    std::string text = "x", binary = "y";
    CHECK_FALSE(append_usage_line(text, e, process_id));
    CHECK_FALSE(append_usage_binary_row(binary, e, process_id));
    CHECK(text == "x");
    CHECK(binary == "y");
  }
}

TEST_CASE("usage key ids: the 8-4-4-4-12 uuid form in either case, nothing else") {
  const auto bytes = parse_usage_key_id("0B6F8C1E-2a47-4d1c-9f3e-5a6b7c8d9e0f");
  REQUIRE(bytes.has_value());
  CHECK(keygate::core::format_uuid(*bytes) == key_id);
  CHECK_FALSE(parse_usage_key_id("0b6f8c1e2a47-4d1c-9f3e-5a6b7c8d9e0f-").has_value());  // dash moved
  CHECK_FALSE(parse_usage_key_id("0b6f8c1e-2a47-4d1c-9f3e_5a6b7c8d9e0f").has_value());  // not a dash
  CHECK_FALSE(parse_usage_key_id("0b6f8c1g-2a47-4d1c-9f3e-5a6b7c8d9e0f").has_value());  // not hex
  CHECK_FALSE(parse_usage_key_id("{b6f8c1e-2a47-4d1c-9f3e-5a6b7c8d9e0f").has_value());
  CHECK_FALSE(parse_usage_key_id("0b6f8c1e2a474d1c9f3e5a6b7c8d9e0f").has_value());      // no dashes
}

TEST_CASE("an upper-case key id is written as it is in the line and as its bytes in the binary row") {
  UsageFacts f = facts();
  f.key_id = "0B6F8C1E-2A47-4D1C-9F3E-5A6B7C8D9E0F";
  const UsageEvent e = event(f);
  CHECK(line_fields(e)[1] == f.key_id);
  CHECK(hex(*binary_fields(e)[1]) == "0b6f8c1e2a474d1c9f3e5a6b7c8d9e0f");
}

TEST_CASE("usage event ids spell the process id and the sequence, and the binary row carries the same bytes") {
  CHECK(keygate::store::usage_event_id(process_id, 1) == "01234567-89ab-cdef-0000-000000000001");
  CHECK(keygate::store::usage_event_id(0, ~0ULL) == "00000000-0000-0000-ffff-ffffffffffff");
  const UsageEvent e = event(facts(), 0x1122334455667788ULL);
  const auto binary = binary_fields(e);
  REQUIRE(binary.size() == 10);
  CHECK(hex(*binary[0]) == "0123456789abcdef1122334455667788");
  CHECK(line_fields(e)[0] == "01234567-89ab-cdef-1122-334455667788");
  CHECK(keygate::store::new_usage_process_id() != 0);
  CHECK(keygate::store::new_usage_process_id() != keygate::store::new_usage_process_id());
}

TEST_CASE("control characters become '?' while tab, newline, CR and backslash are escaped in the line and kept in the row") {
  const UsageEvent e = event(facts("/a\tb\nc\rd\\e", std::string("x\x01y\x1f") + "z\x7f" + "!"));
  const auto text = line_fields(e);
  CHECK(text[2] == "/a\\tb\\nc\\rd\\\\e");
  CHECK(text[6] == "x?y?z?!");
  const auto binary = binary_fields(e);
  CHECK(*binary[2] == "/a\tb\nc\rd\\e");
  CHECK(*binary[6] == "x?y?z?!");
}

TEST_CASE("valid UTF-8 is kept and each byte that starts no valid sequence becomes U+FFFD") {
  struct Case {
    std::string input;
    std::string cleaned;
  };
  const std::vector<Case> cases = {
      {"caf\xc3\xa9", "caf\xc3\xa9"},                           // 2 bytes
      {"\xe2\x82\xac", "\xe2\x82\xac"},                         // 3 bytes
      {"\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80"},                 // 4 bytes
      {"\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf"},                 // U+10FFFF, the last
      {"\x80", bad},                                            // a lone continuation byte
      {"\xc0\xaf", bad + bad},                                  // overlong, 2 bytes
      {"\xc1\xbf", bad + bad},
      {"\xe0\x80\xaf", bad + bad + bad},                        // overlong, 3 bytes
      {"\xed\xa0\x80", bad + bad + bad},                        // a UTF-16 surrogate
      {"\xf0\x80\x80\xaf", bad + bad + bad + bad},              // overlong, 4 bytes
      {"\xf4\x90\x80\x80", bad + bad + bad + bad},              // past U+10FFFF
      {"\xf5\x80\x80\x80", bad + bad + bad + bad},              // no such lead byte
      {"\xff", bad},
      {"\xc3(", bad + "("},                                     // no continuation
      {std::string("a\xe2\x82"), "a" + bad + bad},              // cut at the end
      {std::string("\xf0\x9f\x98"), bad + bad + bad},
  };
  for (const Case& c : cases) {
    CAPTURE(hex(c.input));
    const UsageEvent e = event(facts("/p", c.input));
    CHECK(line_fields(e)[6] == c.cleaned);
    CHECK(*binary_fields(e)[6] == c.cleaned);
  }
}

TEST_CASE("a field cut at its bound in the middle of a UTF-8 sequence ends in U+FFFD") {
  const std::string endpoint = "/" + std::string(UsageEvent::max_endpoint - 2, 'a') + "\xc3\xa9";
  const std::string agent = std::string(UsageEvent::max_user_agent - 1, 'b') + "\xe2\x82\xac";
  const UsageEvent e = event(facts(endpoint, agent));
  CHECK(e.endpoint.size == UsageEvent::max_endpoint);
  CHECK(e.user_agent.size == UsageEvent::max_user_agent);
  const std::string kept_endpoint = endpoint.substr(0, UsageEvent::max_endpoint - 1) + bad;
  const std::string kept_agent = agent.substr(0, UsageEvent::max_user_agent - 1) + bad;
  CHECK(line_fields(e)[2] == kept_endpoint);
  CHECK(line_fields(e)[6] == kept_agent);
  CHECK(*binary_fields(e)[2] == kept_endpoint);
  CHECK(*binary_fields(e)[6] == kept_agent);
  UsageFacts f = facts();
  f.method = "PROPFIND-EXTENDED-METHOD";
  CHECK(line_fields(event(f))[3] == "PROPFIND-EXTENDE");  // 16 bytes
}

TEST_CASE("client addresses: IPv4 (mapped ones too) as 4 bytes of family 2, IPv6 as 16 bytes of family 3") {
  struct Case {
    std::string parsed;
    std::string text;
    std::string inet_hex;  // family, bits, is_cidr, length, address
  };
  const std::vector<Case> cases = {
      {"192.0.2.10", "192.0.2.10", "02200004c000020a"},
      {"::ffff:10.1.2.3", "10.1.2.3", "022000040a010203"},
      {"2001:db8::7", "2001:db8::7", "03800010" "20010db8000000000000000000000007"},
      {"::", "::", "03800010" "00000000000000000000000000000000"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.parsed);
    UsageFacts f = facts();
    f.client_ip = *IpAddress::parse(c.parsed);
    const UsageEvent e = event(f);
    CHECK(line_fields(e)[5] == c.text);
    CHECK(hex(*binary_fields(e)[5]) == c.inet_hex);
  }
  UsageFacts unset = facts();
  unset.client_ip = IpAddress{};  // no address known: "::"
  CHECK(line_fields(event(unset))[5] == "::");
}

TEST_CASE("status and response times at their limits, with milliseconds rounded half up") {
  struct Case {
    int status;
    long long duration_us;
    std::string status_text, us_text;
    std::uint64_t ms;
  };
  const std::vector<Case> cases = {
      {200, 0, "200", "0", 0},
      {200, -5, "200", "0", 0},  // a clock step backwards
      {200, 1499, "200", "1499", 1},
      {200, 1500, "200", "1500", 2},
      {1000, 2147483647LL, "999", "2147483647", 2147484},
      {-1, 0xffffffffLL, "0", "2147483647", 2147484},  // saturated, then int4's maximum
      {599, 0x1ffffffffLL, "599", "2147483647", 2147484},
  };
  for (const Case& c : cases) {
    CAPTURE(c.duration_us);
    UsageFacts f = facts();
    f.status = c.status;
    f.duration = std::chrono::microseconds(c.duration_us);
    const UsageEvent e = event(f);
    const auto text = line_fields(e);
    CHECK(text[4] == c.status_text);
    CHECK(text[7] == c.us_text);
    const auto binary = binary_fields(e);
    CHECK(big_endian(*binary[4]) == std::stoull(c.status_text));
    CHECK(big_endian(*binary[7]) == c.ms);
    CHECK(big_endian(*binary[8]) == std::stoull(c.us_text));
  }
}

TEST_CASE("binary COPY: PostgreSQL's header and trailer, and timestamps counted from 2000-01-01") {
  std::string header, trailer;
  append_usage_binary_header(header);
  append_usage_binary_trailer(trailer);
  CHECK(header == std::string("PGCOPY\n\xff\r\n\0", 11) + std::string(8, '\0'));
  CHECK(trailer == "\xff\xff");
  UsageFacts f = facts();
  f.duration = std::chrono::microseconds(0);
  f.finished_at = std::chrono::system_clock::time_point(std::chrono::microseconds(946684800000000LL + 1));
  const UsageEvent e = event(f);
  const auto binary = binary_fields(e);
  REQUIRE(binary[9]->size() == 8);
  CHECK(big_endian(*binary[9]) == 1);
  CHECK(line_fields(e)[8] == "2000-01-01T00:00:00.000001Z");
}
