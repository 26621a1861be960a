#pragma once
// Where keygate's Redis is and how to talk to it, and the redis:// URL form of that.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace keygate::store {

struct RedisOptions {
  std::string host = "127.0.0.1";  // a name (resolved off the event loop on every connect) or
                                   // an IPv4/IPv6 literal
  std::uint16_t port = 6379;
  std::string username;  // Redis 6 ACL user; empty: `AUTH password` only
  std::string password;  // empty: no AUTH
  int database = 0;      // non-zero: SELECT after connect
  // The name's resolution, and then each address's TCP connect + AUTH/SELECT.
  std::chrono::milliseconds connect_timeout{1000};
  std::chrono::milliseconds command_timeout{250};
};

// One Redis server's address, as in a cluster's seed list or slot map.
struct RedisEndpoint {
  std::string host;  // a name or an IP literal (IPv6 without brackets)
  std::uint16_t port = 6379;

  bool operator==(const RedisEndpoint&) const = default;
  // host:port, or [v6]:port
  std::string to_string() const {
    const bool v6 = host.find(':') != std::string::npos;
    return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
  }
};

// redis://[[user]:password@]host[:port][/db] (host may be [IPv6]) -> options (timeouts keep
// their defaults). A bad URL gives nullopt and, in *error, a one-line reason that never
// repeats the password.
std::optional<RedisOptions> parse_redis_url(std::string_view url, std::string* error);

}  // namespace keygate::store
