// The address parsers: host:port, the upstream and Redis URLs, networks and server names
// (see config_values.hpp).
#include <algorithm>
#include <charconv>
#include <functional>
#include <optional>

#include "app/config_values.hpp"
#include "core/text.hpp"

namespace keygate::app::configuration {
namespace {

constexpr auto npos = std::string_view::npos;

struct Authority {
  std::string host;
  std::string_view port;  // empty: not given
};

// "host", "host:port", "[v6]", "[v6]:port"; nullopt when the shape is wrong.
std::optional<Authority> split_authority(std::string_view text) {
  if (text.starts_with('[')) {
    const std::size_t close = text.find(']');
    if (close == npos) return std::nullopt;
    const std::string_view host = text.substr(1, close - 1);
    const std::string_view rest = text.substr(close + 1);
    if (!rest.empty() && !rest.starts_with(':')) return std::nullopt;
    const auto address = core::IpAddress::parse(host);
    if (!address || address->is_v4) return std::nullopt;
    return Authority{std::string(host), rest.empty() ? rest : rest.substr(1)};
  }
  const std::size_t colon = text.find(':');
  const std::string_view host = text.substr(0, colon);
  const std::string_view port = colon == npos ? std::string_view{} : text.substr(colon + 1);
  if (!is_host_name(host) || (colon != npos && port.empty())) return std::nullopt;
  return Authority{std::string(host), port};
}

std::uint16_t port_number(std::string_view text, const Origin& at) {
  std::uint32_t value = 0;
  const char* end = text.data() + text.size();
  const auto [stop, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc{} || stop != end || value < 1 || value > 65535) {
    at.fail("expected a port from 1 to 65535, got " + quoted(text));
  }
  return static_cast<std::uint16_t>(value);
}

// True when an unbracketed IPv6 address was written where host:port is expected.
bool looks_like_bare_ipv6(std::string_view text) {
  return !text.starts_with('[') && std::count(text.begin(), text.end(), ':') > 1;
}

}  // namespace

// A host name or IPv4 address (IPv6 comes in brackets and is checked separately).
bool is_host_name(std::string_view host) {
  return !host.empty() && host.size() <= 253 && std::all_of(host.begin(), host.end(), [](char c) {
           return core::is_ascii_alpha(c) || core::is_ascii_digit(c) || c == '.' || c == '-' ||
                  c == '_';
         });
}

HostPort host_port(std::string_view text, const Origin& at) {
  if (looks_like_bare_ipv6(text)) {
    at.fail("IPv6 addresses need brackets, like [::1]:8080, got " + quoted(text));
  }
  const auto authority = split_authority(text);
  if (!authority || authority->port.empty()) {
    at.fail("expected host:port like 0.0.0.0:8080 or [::]:8080, got " + quoted(text));
  }
  return {authority->host, port_number(authority->port, at)};
}

UpstreamConfig upstream_url(std::string_view text, const Origin& at) {
  const std::string shown = quoted(without_userinfo(text));
  const std::size_t scheme_end = text.find("://");
  if (scheme_end == npos) at.fail("expected http://host:port or https://host:port, got " + shown);
  const std::string scheme = core::to_lower_ascii(text.substr(0, scheme_end));
  if (scheme != "http" && scheme != "https") {
    at.fail("expected scheme http or https, got " + quoted(text.substr(0, scheme_end)));
  }
  std::string_view rest = text.substr(scheme_end + 3);
  if (rest.find('@') != npos) at.fail("must not carry credentials, got " + shown);
  if (rest.ends_with('/')) rest.remove_suffix(1);
  if (rest.find_first_of("/?#") != npos) {
    at.fail("must not have a path or query (requests keep their own), got " + shown);
  }
  if (looks_like_bare_ipv6(rest)) {
    at.fail("IPv6 addresses need brackets, like http://[::1]:9000, got " + shown);
  }
  const auto authority = split_authority(rest);
  if (!authority) at.fail("expected http://host:port or https://host:port, got " + shown);
  UpstreamConfig upstream;
  upstream.scheme = scheme == "https" ? UpstreamConfig::Scheme::https : UpstreamConfig::Scheme::http;
  upstream.host = authority->host;
  upstream.port = authority->port.empty() ? (scheme == "https" ? 443 : 80)
                                          : port_number(authority->port, at);
  return upstream;
}

// The Redis client's own parser decides what a valid URL is; its reasons never quote the
// password, and neither does the value shown here.
void set_redis_url(store::RedisOptions& redis, std::string_view text, const Origin& at) {
  std::string reason;
  std::optional<store::RedisOptions> parsed = store::parse_redis_url(text, &reason);
  if (!parsed) {
    constexpr std::string_view prefix = "bad redis URL: ";
    if (reason.starts_with(prefix)) reason.erase(0, prefix.size());
    at.fail(reason + ", got " + quoted(without_userinfo(text)));
  }
  // The timeouts are options of their own, which may stand before or after the URL.
  parsed->connect_timeout = redis.connect_timeout;
  parsed->command_timeout = redis.command_timeout;
  redis = std::move(*parsed);
}

store::RedisEndpoint redis_node(std::string_view text, const Origin& at) {
  const std::string shown = quoted(without_userinfo(text));
  if (text.find("://") != npos || text.find('@') != npos) {
    at.fail("expected host:port (a seed node; credentials go in redis.username and "
            "redis.password), got " + shown);
  }
  if (looks_like_bare_ipv6(text)) {
    at.fail("IPv6 addresses need brackets, like [::1]:7000, got " + shown);
  }
  const auto authority = split_authority(text);
  if (!authority || authority->port.empty()) {
    at.fail("expected host:port like 127.0.0.1:7000 or [::1]:7000, got " + shown);
  }
  return {authority->host, port_number(authority->port, at)};
}

std::vector<store::RedisEndpoint> redis_nodes(const std::vector<std::string>& texts,
                                              const std::function<Origin(std::size_t)>& at) {
  if (texts.empty()) at(0).fail("expected at least one seed node host:port, like [127.0.0.1:7000]");
  std::vector<store::RedisEndpoint> nodes;
  for (std::size_t i = 0; i < texts.size(); ++i) {
    store::RedisEndpoint node = redis_node(texts[i], at(i));
    if (std::find(nodes.begin(), nodes.end(), node) != nodes.end()) {
      at(i).fail("lists " + quoted(node.to_string()) + " twice");
    }
    nodes.push_back(std::move(node));
  }
  return nodes;
}

core::IpNetwork network(std::string_view text, const Origin& at) {
  const auto parsed = core::IpNetwork::parse(text);
  if (!parsed) {
    at.fail("expected an address or CIDR network like 10.0.0.0/8, got " + quoted(text));
  }
  return *parsed;
}

std::string server_name(std::string_view text, const Origin& at) {
  if (text.empty() || core::IpAddress::parse(text) || is_host_name(text)) return std::string(text);
  at.fail("expected a host name or address like api.internal, got " + quoted(text));
}

}  // namespace keygate::app::configuration
