#include "core/ip_network.hpp"

#include <doctest/doctest.h>

using keygate::core::IpAddress;
using keygate::core::IpNetwork;

namespace {
IpAddress ip(std::string_view text) {
  auto address = IpAddress::parse(text);
  REQUIRE_MESSAGE(address, text);
  return *address;
}
IpNetwork net(std::string_view text) {
  auto network = IpNetwork::parse(text);
  REQUIRE_MESSAGE(network, text);
  return *network;
}
}  // namespace

TEST_CASE("IPv4 addresses: strict dotted quads, held IPv4-mapped") {
  const IpAddress a = ip("192.168.1.20");
  CHECK(a.is_v4);
  CHECK(a.bytes ==
        std::array<std::uint8_t, 16>{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 168, 1, 20});
  CHECK(a.to_string() == "192.168.1.20");
  CHECK(ip("0.0.0.0").to_string() == "0.0.0.0");
  CHECK(ip("255.255.255.255").to_string() == "255.255.255.255");
  for (const char* text : {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.04",
                           "1.2.3.4 ", " 1.2.3.4", "1..3.4", "1.2.3.", "0x7f.0.0.1", "1.2.3.4/32",
                           "[1.2.3.4]", "1.2.3.-4", "1000.1.1.1", "127.1"}) {
    CAPTURE(text);
    CHECK_FALSE(IpAddress::parse(text));
  }
}

TEST_CASE("IPv6 addresses: every RFC 4291 form, brackets allowed") {
  CHECK(ip("::1").to_string() == "::1");
  CHECK_FALSE(ip("::1").is_v4);
  CHECK(ip("::").to_string() == "::");
  CHECK(ip("2001:DB8:0:0:0:0:0:1").to_string() == "2001:db8::1");
  CHECK(ip("2001:db8::1") == ip("2001:0db8:0000:0000:0000:0000:0000:0001"));
  CHECK(ip("fe80::").to_string() == "fe80::");
  CHECK(ip("[::1]") == ip("::1"));
  CHECK(ip("::1.2.3.4").bytes[15] == 4);  // IPv4-compatible (deprecated) stays IPv6
  CHECK_FALSE(ip("::1.2.3.4").is_v4);
  CHECK(ip("64:ff9b::192.0.2.33").to_string() == "64:ff9b::c000:221");
  for (const char* text : {":", ":::", "1::2::3", "1:2:3:4:5:6:7:8:9", "12345::", "g::1", "[::1",
                           "::1]", "[]", "fe80::1%eth0", "::ffff:1.2.3", "[[::1]]", "::1 "}) {
    CAPTURE(text);
    CHECK_FALSE(IpAddress::parse(text));
  }
}

TEST_CASE("IPv4-mapped IPv6 text is the IPv4 address") {
  CHECK(ip("::ffff:10.1.2.3") == ip("10.1.2.3"));
  CHECK(ip("[::ffff:10.1.2.3]").is_v4);
  CHECK(ip("::ffff:a01:203").to_string() == "10.1.2.3");
}

TEST_CASE("networks: parse, bare addresses, PostgreSQL cidr text") {
  CHECK(net("10.0.0.0/8").to_string() == "10.0.0.0/8");
  CHECK(net("10.0.0.0/8").prefix_length == 8);
  CHECK(net("10.1.2.3").to_string() == "10.1.2.3/32");
  CHECK(net("0.0.0.0/0").to_string() == "0.0.0.0/0");
  CHECK(net("2001:db8::/32").to_string() == "2001:db8::/32");
  CHECK(net("2001:DB8:0::/32") == net("2001:db8::/32"));
  CHECK(net("::1").to_string() == "::1/128");
  CHECK(net("::/0").to_string() == "::/0");
  CHECK(net("::ffff:10.0.0.0/104") == net("10.0.0.0/8"));
  for (const char* text :
       {"", "/8", "10.0.0.0/", "10.0.0.0/33", "10.0.0.1/8", "10.0.0.0/08", "10.0.0.0/-1",
        "10.0.0.0/+8", "10.0.0.0/8 ", "10.0.0.0/8/8", "2001:db8::/129", "2001:db8::1/32",
        "[::1]/128", "::ffff:10.0.0.0/95", "10.0.0.0/1000", "10.0.0.0/a", "::/0128"}) {
    CAPTURE(text);
    CHECK_FALSE(IpNetwork::parse(text));
  }
}

TEST_CASE("IPv4 containment at the boundaries, /0 and /32") {
  const IpNetwork ten = net("10.0.0.0/8");
  CHECK(ten.contains(ip("10.0.0.0")));
  CHECK(ten.contains(ip("10.255.255.255")));
  CHECK_FALSE(ten.contains(ip("11.0.0.0")));
  CHECK_FALSE(ten.contains(ip("9.255.255.255")));
  const IpNetwork slash25 = net("192.168.1.128/25");
  CHECK(slash25.contains(ip("192.168.1.128")));
  CHECK(slash25.contains(ip("192.168.1.255")));
  CHECK_FALSE(slash25.contains(ip("192.168.1.127")));
  const IpNetwork host = net("192.168.1.7/32");
  CHECK(host.contains(ip("192.168.1.7")));
  CHECK_FALSE(host.contains(ip("192.168.1.6")));
  const IpNetwork any_v4 = net("0.0.0.0/0");
  CHECK(any_v4.contains(ip("1.2.3.4")));
  CHECK(any_v4.contains(ip("::ffff:1.2.3.4")));
  CHECK_FALSE(any_v4.contains(ip("::1")));      // an IPv4 network holds no IPv6 address
  CHECK_FALSE(ten.contains(ip("::ffff:0:0")));  // ::ffff:0.0.0.0 is IPv4 0.0.0.0, not 10/8
}

TEST_CASE("IPv6 containment at the boundaries, /0 and /128") {
  const IpNetwork doc = net("2001:db8::/32");
  CHECK(doc.contains(ip("2001:db8::")));
  CHECK(doc.contains(ip("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")));
  CHECK_FALSE(doc.contains(ip("2001:db9::")));
  CHECK_FALSE(doc.contains(ip("2001:db7:ffff::")));
  const IpNetwork odd = net("2001:db8:8000::/33");
  CHECK(odd.contains(ip("2001:db8:8000::1")));
  CHECK_FALSE(odd.contains(ip("2001:db8:7fff::1")));
  const IpNetwork loopback = net("::1/128");
  CHECK(loopback.contains(ip("::1")));
  CHECK(loopback.contains(ip("[::1]")));
  CHECK_FALSE(loopback.contains(ip("::2")));
  CHECK_FALSE(loopback.contains(ip("127.0.0.1")));
  const IpNetwork everything = net("::/0");
  CHECK(everything.contains(ip("fe80::1")));
  CHECK(everything.contains(ip("127.0.0.1")));   // IPv4 is held mapped, inside ::/0
  CHECK_FALSE(doc.contains(ip("32.1.13.184")));  // 0x20010db8 as IPv4 is not 2001:db8::
}
