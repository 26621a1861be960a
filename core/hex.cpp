#include "core/hex.hpp"

namespace keygate::core {

void append_hex(std::string& out, std::span<const std::uint8_t> bytes) {
  const std::size_t start = out.size();
  out.resize(start + 2 * bytes.size());
  char* p = out.data() + start;
  for (const std::uint8_t b : bytes) {
    *p++ = hex_digits[b >> 4];
    *p++ = hex_digits[b & 0x0f];
  }
}

std::string to_hex(std::span<const std::uint8_t> bytes) {
  std::string out;
  append_hex(out, bytes);
  return out;
}

std::string format_uuid(std::span<const std::uint8_t, 16> bytes) {
  std::string out;
  out.reserve(36);
  std::size_t at = 0;
  for (const std::size_t group : {4, 2, 2, 2, 6}) {
    if (at != 0) out += '-';
    append_hex(out, bytes.subspan(at, group));
    at += group;
  }
  return out;
}

std::optional<std::array<std::uint8_t, 16>> parse_uuid(std::string_view text) {
  if (text.size() != 36) return std::nullopt;
  std::array<std::uint8_t, 16> bytes;
  std::size_t at = 0, filled = 0;
  for (const std::size_t digits : {8, 4, 4, 4, 12}) {
    if (at != 0 && text[at++] != '-') return std::nullopt;
    if (!decode_hex(text.substr(at, digits), std::span(bytes).subspan(filled, digits / 2))) {
      return std::nullopt;
    }
    at += digits;
    filled += digits / 2;
  }
  return bytes;
}

bool decode_hex(std::string_view text, std::span<std::uint8_t> out) {
  if (text.size() != 2 * out.size()) return false;
  for (std::size_t i = 0; i < out.size(); ++i) {
    const int high = hex_digit_value(text[2 * i]);
    const int low = hex_digit_value(text[2 * i + 1]);
    if (high < 0 || low < 0) return false;
    out[i] = static_cast<std::uint8_t>(high << 4 | low);
  }
  return true;
}

std::optional<std::vector<std::uint8_t>> decode_hex(std::string_view text) {
  if (text.size() % 2 != 0) return std::nullopt;
  std::vector<std::uint8_t> bytes(text.size() / 2);
  if (!decode_hex(text, bytes)) return std::nullopt;
  return bytes;
}

}  // namespace keygate::core
