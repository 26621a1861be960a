#pragma once
// IPv4/IPv6 addresses and CIDR networks as plain values: parsing and matching, no I/O.
// IPv4 addresses are held as IPv4-mapped IPv6 (::ffff:a.b.c.d) so one comparison serves both.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace keygate::core {

struct IpAddress {
  std::array<std::uint8_t, 16> bytes{};  // network order; IPv4 as ::ffff:a.b.c.d
  bool is_v4 = false;

  static std::optional<IpAddress> parse(std::string_view text);  // "1.2.3.4", "::1", "[::1]"
  std::string to_string() const;
  friend bool operator==(const IpAddress&, const IpAddress&) = default;
};

struct IpNetwork {
  IpAddress base;              // host bits are zero
  std::uint8_t prefix_length;  // 0..32 for IPv4, 0..128 for IPv6

  // "10.0.0.0/8", "2001:db8::/32"; a bare address is a /32 or /128. Rejects host bits set
  // (PostgreSQL's cidr does the same) and out-of-range prefixes.
  static std::optional<IpNetwork> parse(std::string_view text);
  bool contains(const IpAddress& address) const;
  std::string to_string() const;  // PostgreSQL cidr text form
  friend bool operator==(const IpNetwork&, const IpNetwork&) = default;
};

}  // namespace keygate::core
