#include "core/ip_network.hpp"

#include <arpa/inet.h>

#include <algorithm>

namespace keygate::core {
namespace {

constexpr std::array<std::uint8_t, 12> v4_mapped_prefix{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
constexpr std::size_t v4_offset = 12;  // IPv4 bytes start here in the mapped form
constexpr int v4_prefix_bits = 96;

// Strict dotted quad: four decimal parts 0..255, no leading zeros (is "010" 8 or 10?), nothing
// else. inet_aton's "1.2.3" or "0x7f.1" shorthands are refused.
bool parse_v4(std::string_view text, std::uint8_t* out) {
  int part = 0;
  std::size_t i = 0;
  while (part < 4) {
    const std::size_t start = i;
    int value = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9' && i - start < 3) {
      value = value * 10 + (text[i] - '0');
      ++i;
    }
    const std::size_t length = i - start;
    if (length == 0 || value > 255 || (length > 1 && text[start] == '0')) return false;
    out[part++] = static_cast<std::uint8_t>(value);
    if (part < 4) {
      if (i >= text.size() || text[i] != '.') return false;
      ++i;
    }
  }
  return i == text.size();
}

bool is_v4_mapped(const std::array<std::uint8_t, 16>& bytes) {
  return std::equal(v4_mapped_prefix.begin(), v4_mapped_prefix.end(), bytes.begin());
}

// True when the first `bits` bits of a and b agree.
bool prefix_equal(const std::array<std::uint8_t, 16>& a, const std::array<std::uint8_t, 16>& b,
                  int bits) {
  const int whole = bits / 8;
  if (!std::equal(a.begin(), a.begin() + whole, b.begin())) return false;
  const int rest = bits % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<std::uint8_t>(0xFF << (8 - rest));
  return (a[whole] & mask) == (b[whole] & mask);
}

bool host_bits_zero(const std::array<std::uint8_t, 16>& bytes, int bits) {
  for (int i = bits; i < 128; ++i) {
    if (bytes[i / 8] & (0x80 >> (i % 8))) return false;
  }
  return true;
}

}  // namespace

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  IpAddress address;
  if (parse_v4(text, address.bytes.data() + v4_offset)) {
    std::copy(v4_mapped_prefix.begin(), v4_mapped_prefix.end(), address.bytes.begin());
    address.is_v4 = true;
    return address;
  }
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']') {
    text = text.substr(1, text.size() - 2);
  }
  // INET6_ADDRSTRLEN covers the longest form, "ffff:...:255.255.255.255".
  char buffer[INET6_ADDRSTRLEN];
  if (text.empty() || text.size() >= sizeof buffer || text.find(':') == std::string_view::npos) {
    return std::nullopt;
  }
  std::copy(text.begin(), text.end(), buffer);
  buffer[text.size()] = '\0';
  if (inet_pton(AF_INET6, buffer, address.bytes.data()) != 1) return std::nullopt;
  // ::ffff:a.b.c.d is an IPv4 client seen through a dual-stack socket: treat it as IPv4.
  address.is_v4 = is_v4_mapped(address.bytes);
  return address;
}

std::string IpAddress::to_string() const {
  char buffer[INET6_ADDRSTRLEN];
  const bool ok = is_v4 ? inet_ntop(AF_INET, bytes.data() + v4_offset, buffer, sizeof buffer)
                        : inet_ntop(AF_INET6, bytes.data(), buffer, sizeof buffer);
  return ok ? std::string(buffer) : std::string();
}

std::optional<IpNetwork> IpNetwork::parse(std::string_view text) {
  const std::size_t slash = text.find('/');
  const std::string_view address_text = text.substr(0, slash);
  if (address_text.empty() || address_text.front() == '[') return std::nullopt;
  const auto address = IpAddress::parse(address_text);
  if (!address) return std::nullopt;

  // "::ffff:10.0.0.0/104" is written in IPv6 terms: its prefix counts all 128 bits.
  const bool v6_notation = address_text.find(':') != std::string_view::npos;
  const int max_length = v6_notation ? 128 : 32;
  int length = max_length;
  if (slash != std::string_view::npos) {
    const std::string_view digits = text.substr(slash + 1);
    if (digits.empty() || digits.size() > 3 || (digits.size() > 1 && digits[0] == '0')) {
      return std::nullopt;
    }
    length = 0;
    for (char c : digits) {
      if (c < '0' || c > '9') return std::nullopt;
      length = length * 10 + (c - '0');
    }
    if (length > max_length) return std::nullopt;
  }
  const int bits = v6_notation ? length : v4_prefix_bits + length;
  if (!host_bits_zero(address->bytes, bits)) return std::nullopt;
  // A mapped network is an IPv4 network; its ffff bits make any prefix under 96 fail the
  // host-bits check above, so bits >= 96 here.
  if (address->is_v4 && v6_notation) length = bits - v4_prefix_bits;
  return IpNetwork{*address, static_cast<std::uint8_t>(length)};
}

bool IpNetwork::contains(const IpAddress& address) const {
  // An IPv4 network holds only IPv4 addresses; an IPv6 network compares all 128 bits, so
  // "::ffff:0:0/96" or "::/0" also hold the IPv4 addresses (stored mapped).
  if (base.is_v4) {
    return address.is_v4 && prefix_equal(base.bytes, address.bytes, v4_prefix_bits + prefix_length);
  }
  return prefix_equal(base.bytes, address.bytes, prefix_length);
}

std::string IpNetwork::to_string() const {
  return base.to_string() + "/" + std::to_string(prefix_length);
}

}  // namespace keygate::core
