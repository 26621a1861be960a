#pragma once
// Bytes as lower-case hexadecimal text, and back. The one hex codec of the tree: key hashes in
// Redis key names, bytea literals, script digests and event ids all go through it.
#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace keygate::core {

inline constexpr char hex_digits[] = "0123456789abcdef";

// The value of one hex digit (either case); -1 for anything else.
constexpr int hex_digit_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void append_hex(std::string& out, std::span<const std::uint8_t> bytes);
std::string to_hex(std::span<const std::uint8_t> bytes);

// The 8-4-4-4-12 text form of a UUID's 16 bytes ("0011…-…"), lower case.
std::string format_uuid(std::span<const std::uint8_t, 16> bytes);

// The 16 bytes of a UUID in the 8-4-4-4-12 text form (hex digits of either case); nullopt for
// anything else (another length, a missing dash, a non-hex digit).
std::optional<std::array<std::uint8_t, 16>> parse_uuid(std::string_view text);
inline bool is_uuid(std::string_view text) { return parse_uuid(text).has_value(); }

// Exactly 2 * out.size() hex digits (either case) into `out`. False on any other length or a
// non-hex character (`out` is then unspecified).
bool decode_hex(std::string_view text, std::span<std::uint8_t> out);
// Any even number of hex digits; nullopt otherwise.
std::optional<std::vector<std::uint8_t>> decode_hex(std::string_view text);

}  // namespace keygate::core
