// The redis:// URL form of RedisOptions (pure: no I/O).
#include "store/redis_options.hpp"

#include <algorithm>
#include <charconv>

#include "core/hex.hpp"
#include "core/text.hpp"

namespace keygate::store {

namespace {

bool is_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), core::is_ascii_digit);
}

std::optional<unsigned long> parse_number(std::string_view s, unsigned long max) {
  if (!is_digits(s) || s.size() > 10) return std::nullopt;
  unsigned long value = 0;
  std::from_chars(s.data(), s.data() + s.size(), value);
  if (value > max) return std::nullopt;
  return value;
}

std::optional<std::string> percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    const int high = core::hex_digit_value(s[i + 1]);
    const int low = core::hex_digit_value(s[i + 2]);
    if (high < 0 || low < 0) return std::nullopt;
    out.push_back(static_cast<char>(high * 16 + low));
    i += 2;
  }
  return out;
}

bool is_host_name(std::string_view host) {
  return !host.empty() && std::all_of(host.begin(), host.end(), [](char c) {
    return core::is_ascii_alpha(c) || core::is_ascii_digit(c) || c == '.' || c == '-' || c == '_';
  });
}

bool is_ipv6_literal(std::string_view host) {
  return host.find(':') != std::string_view::npos &&
         std::all_of(host.begin(), host.end(), [](char c) {
           return core::hex_digit_value(c) >= 0 || c == ':' || c == '.';
         });
}

bool starts_with_ignoring_case(std::string_view s, std::string_view prefix) {
  return core::iequals_ascii(s.substr(0, prefix.size()), prefix);
}

}  // namespace

std::optional<RedisOptions> parse_redis_url(std::string_view url, std::string* error) {
  // Reasons never quote the credentials: this message ends up in logs.
  const auto bad = [error](std::string_view reason) -> std::optional<RedisOptions> {
    if (error != nullptr) *error = "bad redis URL: " + std::string(reason);
    return std::nullopt;
  };
  constexpr std::string_view scheme = "redis://";
  if (starts_with_ignoring_case(url, "rediss://")) return bad("TLS (rediss://) is not supported");
  if (!starts_with_ignoring_case(url, scheme)) {
    return bad("expected redis://[[user]:password@]host[:port][/db]");
  }
  std::string_view rest = url.substr(scheme.size());

  RedisOptions options;
  // Host, port and db cannot hold '@', so the credentials end at the last one; this also
  // accepts passwords whose '@' or '/' were not percent-encoded.
  if (const auto at = rest.rfind('@'); at != std::string_view::npos) {
    const std::string_view userinfo = rest.substr(0, at);
    rest = rest.substr(at + 1);
    const auto colon = userinfo.find(':');
    if (colon == std::string_view::npos) {
      return bad("credentials need a colon: redis://:PASSWORD@host or redis://USER:PASSWORD@host");
    }
    auto username = percent_decode(userinfo.substr(0, colon));
    auto password = percent_decode(userinfo.substr(colon + 1));
    if (!username || !password) return bad("bad percent-encoding in the credentials");
    if (password->empty()) return bad("empty password after ':'");
    options.username = std::move(*username);
    options.password = std::move(*password);
  }
  if (rest.find_first_of("?#") != std::string_view::npos) {
    return bad("query parameters are not supported");
  }

  const auto slash = rest.find('/');
  const std::string_view authority = rest.substr(0, slash);
  const std::string_view path = slash == std::string_view::npos ? "" : rest.substr(slash + 1);

  std::string_view host;
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return bad("missing ']' after the IPv6 address");
    host = authority.substr(1, close - 1);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad("expected ':port' after the IPv6 address");
      port = after.substr(1);
      if (port.empty()) return bad("empty port");
    }
    if (!is_ipv6_literal(host)) return bad("bad IPv6 address");
  } else {
    const auto colon = authority.find(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) {
      port = authority.substr(colon + 1);
      if (port.empty()) return bad("empty port");
      if (port.find(':') != std::string_view::npos) return bad("IPv6 addresses go in brackets");
    }
    if (host.empty()) return bad("missing host");
    if (!is_host_name(host)) return bad("bad host name");
  }
  options.host = std::string(host);
  if (!port.empty()) {
    const auto number = parse_number(port, 65535);
    if (!number || *number == 0) return bad("port must be a number from 1 to 65535");
    options.port = static_cast<std::uint16_t>(*number);
  }
  if (!path.empty()) {
    const auto number = parse_number(path, 1'000'000);
    if (!number) return bad("database must be a number, as in redis://host:6379/0");
    options.database = static_cast<int>(*number);
  }
  return options;
}

}  // namespace keygate::store
