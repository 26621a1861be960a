#include "authz/client_address.hpp"

#include <doctest/doctest.h>

using keygate::authz::client_address;
using keygate::core::IpAddress;
using keygate::core::IpNetwork;

namespace {
IpAddress ip(std::string_view text) { return *IpAddress::parse(text); }
const std::vector<IpNetwork> trusted = {*IpNetwork::parse("10.0.0.0/8"),
                                        *IpNetwork::parse("::1/128")};
}  // namespace

TEST_CASE("an untrusted peer is the client, whatever X-Forwarded-For says") {
  CHECK(client_address(ip("203.0.113.9"), "1.1.1.1", trusted) == ip("203.0.113.9"));
  CHECK(client_address(ip("10.0.0.1"), "1.1.1.1", {}) == ip("10.0.0.1"));
}

TEST_CASE("behind a trusted proxy the rightmost untrusted entry is the client") {
  CHECK(client_address(ip("10.0.0.1"), "198.51.100.7", trusted) == ip("198.51.100.7"));
  // The client prepended a forged entry; the proxy appended the real one.
  CHECK(client_address(ip("10.0.0.1"), "6.6.6.6, 198.51.100.7", trusted) == ip("198.51.100.7"));
  CHECK(client_address(ip("10.0.0.1"), "6.6.6.6,198.51.100.7, 10.2.2.2 ,10.3.3.3", trusted) ==
        ip("198.51.100.7"));
  CHECK(client_address(ip("::1"), "2001:db8::5, ::1", trusted) == ip("2001:db8::5"));
  CHECK(client_address(ip("::ffff:10.0.0.1"), "[2001:db8::5]", trusted) == ip("2001:db8::5"));
}

TEST_CASE("all trusted: the leftmost entry, no header: the peer") {
  CHECK(client_address(ip("10.0.0.1"), "10.9.9.9, 10.8.8.8", trusted) == ip("10.9.9.9"));
  CHECK(client_address(ip("10.0.0.1"), "", trusted) == ip("10.0.0.1"));
  CHECK(client_address(ip("10.0.0.1"), "  ", trusted) == ip("10.0.0.1"));
}

TEST_CASE("an unparseable entry stops the walk at the last good address") {
  CHECK(client_address(ip("10.0.0.1"), "1.1.1.1, garbage, 10.5.5.5", trusted) == ip("10.5.5.5"));
  CHECK(client_address(ip("10.0.0.1"), "1.1.1.1, unknown", trusted) == ip("10.0.0.1"));
  CHECK(client_address(ip("10.0.0.1"), "1.1.1.1,,10.5.5.5", trusted) == ip("10.5.5.5"));
  CHECK(client_address(ip("10.0.0.1"), "1.1.1.1:8080", trusted) == ip("10.0.0.1"));
  CHECK(client_address(ip("10.0.0.1"), "1.1.1.1, ", trusted) == ip("10.0.0.1"));
}
