#include "store/usage_encoding.hpp"

#include <openssl/rand.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <random>
#include <span>

#include "core/hex.hpp"
#include "core/time_format.hpp"

namespace keygate::store {

namespace {

// ---- text fields ----------------------------------------------------------------------------

// The length of the valid UTF-8 sequence at p[i] (no overlong forms, no surrogates, nothing past
// U+10FFFF), or 0 when there is none.
std::size_t utf8_sequence_length(const unsigned char* p, std::size_t n, std::size_t i) {
  const unsigned char c = p[i];
  std::size_t len = 0;
  std::uint32_t cp = 0;
  if (c >= 0xc2 && c <= 0xdf) len = 2, cp = c & 0x1f;
  else if (c >= 0xe0 && c <= 0xef) len = 3, cp = c & 0x0f;
  else if (c >= 0xf0 && c <= 0xf4) len = 4, cp = c & 0x07;
  if (len == 0 || i + len > n) return 0;
  for (std::size_t k = 1; k < len; ++k) {
    if ((p[i + k] & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (p[i + k] & 0x3f);
  }
  if (len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) return 0;
  if (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) return 0;
  return len;
}

// Appends `text` cleaned (see the header). With `copy_escape`, as one COPY text field:
// backslash, tab, newline and CR escaped.
void append_clean_text(std::string& out, std::string_view text, bool copy_escape) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t n = text.size();
  for (std::size_t i = 0; i < n;) {
    // A run of printable ASCII (the usual case) in one append.
    std::size_t run = i;
    while (run < n && p[run] >= 0x20 && p[run] < 0x7f && !(copy_escape && p[run] == '\\')) ++run;
    if (run > i) {
      out.append(text.substr(i, run - i));
      i = run;
      continue;
    }
    const unsigned char c = p[i];
    if (c < 0x80) {
      if (copy_escape && (c == '\\' || c == '\t' || c == '\n' || c == '\r')) {
        out.push_back('\\');
        out.push_back(c == '\\' ? '\\' : c == '\t' ? 't' : c == '\n' ? 'n' : 'r');
      } else if (c == '\t' || c == '\n' || c == '\r') {
        out.push_back(static_cast<char>(c));
      } else {
        out.push_back(c < 0x20 || c == 0x7f ? '?' : static_cast<char>(c));
      }
      ++i;
    } else if (const std::size_t len = utf8_sequence_length(p, n, i); len > 0) {
      out.append(text.substr(i, len));
      i += len;
    } else {
      out += "\xef\xbf\xbd";  // U+FFFD, one for each byte that starts no valid sequence
      ++i;
    }
  }
}

// One COPY text field.
void append_copy_text(std::string& out, std::string_view text) {
  if (text.empty()) {
    out += "\\N";
    return;
  }
  append_clean_text(out, text, true);
}

void append_number(std::string& out, std::uint32_t value) {
  char digits[12];
  const auto end = std::to_chars(digits, digits + sizeof digits, value).ptr;
  out.append(digits, end);
}

// ---- COPY binary (PostgreSQL's documented format: network byte order throughout) -------------

void put_u8(std::string& out, std::uint8_t v) { out.push_back(static_cast<char>(v)); }
void put_u16(std::string& out, std::uint16_t v) {
  put_u8(out, static_cast<std::uint8_t>(v >> 8));
  put_u8(out, static_cast<std::uint8_t>(v));
}
void put_u32(std::string& out, std::uint32_t v) {
  put_u16(out, static_cast<std::uint16_t>(v >> 16));
  put_u16(out, static_cast<std::uint16_t>(v));
}
void put_u64(std::string& out, std::uint64_t v) {
  put_u32(out, static_cast<std::uint32_t>(v >> 32));
  put_u32(out, static_cast<std::uint32_t>(v));
}
void put_int4_field(std::string& out, std::int32_t v) {
  put_u32(out, 4);
  put_u32(out, static_cast<std::uint32_t>(v));
}
// A text field: its length, then the cleaned bytes; -1 for NULL.
void put_text_field(std::string& out, std::string_view text) {
  if (text.empty()) {
    put_u32(out, 0xffffffffu);
    return;
  }
  const std::size_t at = out.size();
  put_u32(out, 0);
  append_clean_text(out, text, false);
  const auto len = static_cast<std::uint32_t>(out.size() - at - 4);
  for (int k = 0; k < 4; ++k) out[at + k] = static_cast<char>(len >> (24 - 8 * k));
}

// response_time_us as stored: the column is an int4.
std::uint32_t stored_response_time_us(const UsageEvent& e) {
  return std::min<std::uint32_t>(e.response_time_us, 0x7fffffff);
}

}  // namespace

// ---- ids ------------------------------------------------------------------------------------

std::uint64_t new_usage_process_id() {
  std::uint64_t id = 0;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&id), sizeof id) != 1) {
    std::random_device random;
    id = (static_cast<std::uint64_t>(random()) << 32) ^ random();
  }
  return id == 0 ? 1 : id;
}

std::string usage_event_id(std::uint64_t process_id, std::uint64_t sequence) {
  std::array<std::uint8_t, 16> bytes;  // both words, most significant byte first
  for (int i = 0; i < 8; ++i) {
    bytes[i] = static_cast<std::uint8_t>(process_id >> (56 - 8 * i));
    bytes[8 + i] = static_cast<std::uint8_t>(sequence >> (56 - 8 * i));
  }
  return core::format_uuid(bytes);
}

std::optional<std::array<std::uint8_t, 16>> parse_usage_key_id(std::string_view text) {
  return core::parse_uuid(text);
}

// ---- the two forms of a row -----------------------------------------------------------------

namespace {

// What both text lines hold, from the key id to the end of the line: the response time as
// `response_time` (microseconds for keygate's staging table, milliseconds for a custom one).
void append_request_fields(std::string& out, const UsageEvent& e, std::uint32_t response_time) {
  append_copy_text(out, e.key_id.view());
  out.push_back('\t');
  append_copy_text(out, e.endpoint.view());
  out.push_back('\t');
  append_copy_text(out, e.method.view());
  out.push_back('\t');
  append_number(out, e.status);
  out.push_back('\t');
  out += e.client_ip.to_string();
  out.push_back('\t');
  append_copy_text(out, e.user_agent.view());
  out.push_back('\t');
  append_number(out, response_time);
  out.push_back('\t');
  core::append_utc_micros(out, core::SystemTime(std::chrono::microseconds(e.created_at_us)));
  out.push_back('\n');
}

}  // namespace

bool append_usage_line(std::string& out, const UsageEvent& e, std::uint64_t process_id) {
  if (!parse_usage_key_id(e.key_id.view())) return false;
  out += usage_event_id(process_id, e.sequence);
  out.push_back('\t');
  append_request_fields(out, e, stored_response_time_us(e));  // a uuid needs no escaping
  return true;
}

void append_usage_binary_header(std::string& out) {
  out.append("PGCOPY\n\xff\r\n\0", 11);
  put_u32(out, 0);  // flags: no OIDs
  put_u32(out, 0);  // no header extension
}

void append_usage_binary_trailer(std::string& out) { put_u16(out, 0xffff); }

bool append_usage_binary_row(std::string& out, const UsageEvent& e, std::uint64_t process_id) {
  const auto key = parse_usage_key_id(e.key_id.view());
  if (!key) return false;
  put_u16(out, 10);  // fields, in usage_row_columns' order
  put_u32(out, 16);  // event_id: the bytes usage_event_id() spells
  put_u64(out, process_id);
  put_u64(out, e.sequence);
  put_u32(out, 16);  // api_key_id
  out.append(reinterpret_cast<const char*>(key->data()), key->size());
  put_text_field(out, e.endpoint.view());
  put_text_field(out, e.method.view());
  put_int4_field(out, e.status);
  // inet: family (PGSQL_AF_INET 2, PGSQL_AF_INET6 3), bits, is_cidr, length, address bytes.
  const bool v4 = e.client_ip.is_v4;
  put_u32(out, v4 ? 8 : 20);
  put_u8(out, v4 ? 2 : 3);
  put_u8(out, v4 ? 32 : 128);
  put_u8(out, 0);
  put_u8(out, v4 ? 4 : 16);
  out.append(reinterpret_cast<const char*>(e.client_ip.bytes.data()) + (v4 ? 12 : 0), v4 ? 4 : 16);
  put_text_field(out, e.user_agent.view());
  // As the staging INSERT computes them from the text form (without its int4 overflow).
  const std::uint32_t us = stored_response_time_us(e);
  put_int4_field(out, static_cast<std::int32_t>((std::uint64_t{us} + 500) / 1000));
  put_int4_field(out, static_cast<std::int32_t>(us));
  // timestamptz: microseconds since 2000-01-01 00:00:00 UTC.
  put_u32(out, 8);
  put_u64(out, static_cast<std::uint64_t>(e.created_at_us - 946684800000000LL));
  return true;
}

bool append_custom_usage_line(std::string& out, const UsageEvent& e) {
  if (e.key_id.empty()) return false;
  append_request_fields(out, e, (stored_response_time_us(e) + 500) / 1000);
  return true;
}

}  // namespace keygate::store
