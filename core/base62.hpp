#pragma once
// Base62 (0-9 A-Z a-z): the alphabet of keygate's keys. Header-only: a few constexpr lines.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace keygate::core {

inline constexpr std::string_view base62_alphabet =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

constexpr bool is_base62(char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

// `value` in exactly out.size() digits, most significant first, zero ('0') padded; the high
// digits of a value too large for the width are dropped.
constexpr void encode_base62_fixed(std::uint64_t value, std::span<char> out) {
  for (std::size_t i = out.size(); i-- > 0;) {
    out[i] = base62_alphabet[value % 62];
    value /= 62;
  }
}

}  // namespace keygate::core
