// Reads config.yaml into app::Config in three steps: parse the YAML, read each option (with
// ${VAR} expansion) and validate it where it stands, then apply the KEYGATE_* overrides.
// Every message names the file, the 1-based line and the dotted option, so an operator can go
// straight to the mistake; values that may hold secrets (pepper, DSN, URL passwords) are never
// echoed.
#include "app/config.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <limits>
#include <memory>
#include <string_view>
#include <utility>

#include "core/duration.hpp"
#include "core/ip_network.hpp"
#include "core/text.hpp"
#include "store/redis_client.hpp"

extern char** environ;

namespace keygate::app {
namespace {

using Environment = std::map<std::string, std::string>;
constexpr auto npos = std::string_view::npos;

// Where a value came from ("config.yaml:12: cache.ttl" or "KEYGATE_LISTEN: listen"); every
// message starts with it.
class Origin {
 public:
  explicit Origin(std::string prefix) : prefix_(std::move(prefix)) {}
  [[noreturn]] void fail(std::string_view what) const {
    throw ConfigError(prefix_ + ": " + std::string(what));
  }

 private:
  std::string prefix_;
};

// `"soon"`, or `nothing` for an empty value; control characters are escaped so that the
// message stays on one line.
std::string quoted(std::string_view text) {
  if (text.empty()) return "nothing";
  std::string out = "\"";
  for (char c : text) {
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (static_cast<unsigned char>(c) < 0x20) out += '?';
    else out += c;
  }
  return out + '"';
}

// URLs may carry a password (redis://:secret@host): messages show "***" in its place. The last
// '@' ends the user part, since an unencoded password may itself hold '@' or '/'.
std::string without_userinfo(std::string_view url) {
  const std::size_t scheme_end = url.find("://");
  const std::size_t start = scheme_end == npos ? 0 : scheme_end + 3;
  const std::size_t at = url.rfind('@');
  if (at == npos || at < start) return std::string(url);
  return std::string(url.substr(0, start)) + "***" + std::string(url.substr(at));
}

using core::is_ascii_alpha;
using core::is_ascii_digit;
using core::is_token;
using core::to_lower_ascii;
using core::to_upper_ascii;

bool is_lower_alpha(char c) { return c >= 'a' && c <= 'z'; }

// "a, b or c" for messages listing the accepted values.
std::string alternatives(std::initializer_list<std::string_view> choices) {
  std::string out;
  std::size_t i = 0;
  for (std::string_view choice : choices) {
    if (i > 0) out += (i + 1 == choices.size()) ? " or " : ", ";
    out += choice;
    ++i;
  }
  return out;
}

// --- values -----------------------------------------------------------------------------
// Each takes the text of one value and where it came from; the same functions serve the file
// and the KEYGATE_* overrides.

// open_ended: `max` is only the type's limit, so the message says "at least min".
std::uint64_t whole_number(std::string_view text, std::uint64_t min, std::uint64_t max,
                           bool open_ended, const Origin& at) {
  std::uint64_t value = 0;
  const char* end = text.data() + text.size();
  const auto [stop, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc{} || stop != end || value < min || value > max) {
    const std::string range = open_ended ? "a whole number of at least " + std::to_string(min)
                                         : "a whole number from " + std::to_string(min) +
                                               " to " + std::to_string(max);
    at.fail("expected " + range + ", got " + quoted(text));
  }
  return value;
}

bool boolean(std::string_view text, const Origin& at) {
  const std::string word = to_lower_ascii(text);
  if (word == "true" || word == "yes" || word == "on") return true;
  if (word == "false" || word == "no" || word == "off") return false;
  at.fail("expected true or false, got " + quoted(text));
}

std::string one_of(std::string_view text, std::initializer_list<std::string_view> choices,
                   const Origin& at) {
  for (std::string_view choice : choices) {
    if (text == choice) return std::string(text);
  }
  at.fail("expected " + alternatives(choices) + ", got " + quoted(text));
}

Duration duration(std::string_view text, bool zero_allowed, const Origin& at) {
  const auto parsed = core::parse_duration(text);
  if (!parsed) at.fail("expected a duration like 30s, got " + quoted(text));
  if (!zero_allowed && parsed->count() == 0) at.fail("must be longer than 0s, got " + quoted(text));
  return *parsed;
}

RateLimitValue rate_limit(std::string_view text, const Origin& at) {
  const auto spec = core::parse_rate_limit(text);
  if (!spec) at.fail("expected a rate limit like 100/60s, got " + quoted(text));
  return {spec->limit, spec->window_seconds};
}

unsigned thread_count(std::string_view text, const Origin& at) {
  if (text == "auto") return 0;
  std::uint64_t value = 0;
  const char* end = text.data() + text.size();
  const auto [stop, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc{} || stop != end || value < 1 || value > 256) {
    at.fail("expected auto or a whole number from 1 to 256, got " + quoted(text));
  }
  return static_cast<unsigned>(value);
}

std::string required(std::string_view text, const Origin& at) {
  if (text.empty()) at.fail("must not be empty");
  return std::string(text);
}

// A host name or IPv4 address (IPv6 comes in brackets and is checked separately).
bool is_host_name(std::string_view host) {
  return !host.empty() && host.size() <= 253 && std::all_of(host.begin(), host.end(), [](char c) {
           return is_ascii_alpha(c) || is_ascii_digit(c) || c == '.' || c == '-' || c == '_';
         });
}

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
  UpstreamConfig upstream;
  upstream.scheme = to_lower_ascii(text.substr(0, scheme_end));
  if (upstream.scheme != "http" && upstream.scheme != "https") {
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
  upstream.host = authority->host;
  upstream.port = authority->port.empty() ? (upstream.scheme == "https" ? 443 : 80)
                                          : port_number(authority->port, at);
  return upstream;
}

// The Redis client's own parser decides what a valid URL is; its reasons never quote the
// password, and neither does the value shown here.
std::string redis_url(std::string_view text, const Origin& at) {
  std::string reason;
  if (!store::parse_redis_url(text, &reason)) {
    constexpr std::string_view prefix = "bad redis URL: ";
    if (reason.starts_with(prefix)) reason.erase(0, prefix.size());
    at.fail(reason + ", got " + quoted(without_userinfo(text)));
  }
  return std::string(text);
}

// Keys look like <prefix>_<random><checksum>: the prefix must be a plain lower-case word.
std::string key_prefix(std::string_view text, const Origin& at) {
  const bool valid = !text.empty() && text.size() <= 32 && is_lower_alpha(text.front()) &&
                     !text.ends_with('_') &&
                     std::all_of(text.begin(), text.end(), [](char c) {
                       return is_lower_alpha(c) || is_ascii_digit(c) || c == '_';
                     });
  if (!valid) {
    at.fail("expected a lower-case word like kg_live (a-z first, then a-z 0-9 _, at most 32, "
            "not ending in _), got " + quoted(text));
  }
  return std::string(text);
}

std::string header_name(std::string_view text, const Origin& at) {
  if (!is_token(text)) at.fail("expected an HTTP header name like x-api-key, got " + quoted(text));
  return to_lower_ascii(text);
}

std::string method_name(std::string_view text, const Origin& at) {
  if (!is_token(text)) at.fail("expected an HTTP method like GET, got " + quoted(text));
  return to_upper_ascii(text);
}

std::string query_parameter(std::string_view text, const Origin& at) {
  const bool valid = std::all_of(text.begin(), text.end(), [](char c) {
    return is_ascii_alpha(c) || is_ascii_digit(c) || c == '_' || c == '-' || c == '.' || c == '~';
  });
  if (!valid) {
    at.fail("expected a query parameter name like api_key (or nothing), got " + quoted(text));
  }
  return std::string(text);
}

std::string route_path(std::string_view text, const Origin& at) {
  if (!text.starts_with('/')) at.fail("expected a path starting with '/', got " + quoted(text));
  if (text.find_first_of(" \t#") != npos) {
    at.fail("expected a path without spaces or '#', got " + quoted(text));
  }
  return std::string(text);
}

std::string network(std::string_view text, const Origin& at) {
  const auto parsed = core::IpNetwork::parse(text);
  if (!parsed) {
    at.fail("expected an address or CIDR network like 10.0.0.0/8, got " + quoted(text));
  }
  return parsed->to_string();
}

// --- ${VAR} expansion --------------------------------------------------------------------

bool is_variable_name(std::string_view name) {
  return !name.empty() && !is_ascii_digit(name.front()) &&
         std::all_of(name.begin(), name.end(),
                     [](char c) { return is_ascii_alpha(c) || is_ascii_digit(c) || c == '_'; });
}

// ${NAME} and ${NAME:-default} (the default also replaces an empty value, as in the shell);
// $${ is a literal ${. The result is not expanded again.
std::string expand(std::string_view raw, const Environment& environment, const Origin& at) {
  std::string out;
  std::size_t i = 0;
  while (i < raw.size()) {
    if (raw.substr(i).starts_with("$${")) {
      out += "${";
      i += 3;
      continue;
    }
    if (!raw.substr(i).starts_with("${")) {
      out += raw[i++];
      continue;
    }
    const std::size_t close = raw.find('}', i);
    if (close == npos) at.fail("unterminated ${ (expected ${NAME} or ${NAME:-default})");
    const std::string_view inside = raw.substr(i + 2, close - i - 2);
    const std::size_t dash = inside.find(":-");
    const std::string_view name = inside.substr(0, dash);
    if (!is_variable_name(name)) {
      at.fail("${" + std::string(inside) + "} is not a variable reference (expected ${NAME} or "
              "${NAME:-default})");
    }
    const auto found = environment.find(std::string(name));
    if (dash != npos && (found == environment.end() || found->second.empty())) {
      out += inside.substr(dash + 2);
    } else if (found != environment.end()) {
      out += found->second;
    } else {
      at.fail("environment variable " + std::string(name) + " is not set (write ${" +
              std::string(name) + ":-default} to give a default)");
    }
    i = close + 1;
  }
  return out;
}

// --- the YAML side -----------------------------------------------------------------------

int line_of(const YAML::Node& node) { return node.Mark().line + 1; }  // Mark is 0-based

std::string describe(const YAML::Node& node) {
  if (node.IsSequence()) return "a list";
  if (node.IsMap()) return "a mapping";
  return quoted(node.IsScalar() ? node.Scalar() : std::string());
}

// The kind of a node that should have been a mapping, without its text: a DSN or URL written
// where a section belongs (postgres: postgresql://u:pw@db) must not be echoed.
std::string kind_of(const YAML::Node& node) {
  return node.IsScalar() ? "a single value" : describe(node);
}

// Damerau-Levenshtein distance (optimal string alignment), for "did you mean" hints.
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
  for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

// One option of the file: its dotted name, its value and the line to report.
struct Entry {
  std::string option;  // "cache.ttl", "routes[2].methods"; empty for the whole file
  YAML::Node value;    // a copy: references into yaml-cpp 0.7 iterators dangle
  int line = 1;        // of the value when it is a scalar, else of the key
};

using Handler = std::function<void(const Entry&)>;
using Handlers = std::vector<std::pair<std::string_view, Handler>>;

class Reader {
 public:
  Reader(std::string source, const Environment& environment)
      : source_(std::move(source)), environment_(environment) {}

  Origin at(int line, const std::string& option) const {
    std::string prefix = source_ + ":" + std::to_string(line);
    if (!option.empty()) prefix += ": " + option;
    return Origin(std::move(prefix));
  }
  Origin at(const Entry& entry) const { return at(entry.line, entry.option); }

  // The value as text, ${VAR} expanded; nothing (null) is "".
  std::string text(const Entry& entry) const {
    if (entry.value.IsNull()) return {};
    if (!entry.value.IsScalar()) {
      at(entry).fail("expected a single value, got " + describe(entry.value));
    }
    return expand(entry.value.Scalar(), environment_, at(entry));
  }

  // The elements of a list; nothing (null) is an empty list.
  std::vector<Entry> items(const Entry& entry) const {
    std::vector<Entry> out;
    if (entry.value.IsNull()) return out;
    if (!entry.value.IsSequence()) {
      at(entry).fail("expected a list like [a, b], got " + describe(entry.value));
    }
    for (std::size_t i = 0; i < entry.value.size(); ++i) {
      YAML::Node item = entry.value[i];
      out.push_back({entry.option + "[" + std::to_string(i) + "]", item, line_of(item)});
    }
    return out;
  }

  // Calls the handler of each option in document order; an option with no handler is an
  // error, with a suggestion when a known one is close. Nothing (null) is an empty mapping.
  void read_mapping(const Entry& section, const Handlers& handlers) const {
    if (section.value.IsNull()) return;
    if (!section.value.IsMap()) {
      at(section).fail("expected a mapping of options, got " + kind_of(section.value));
    }
    std::map<std::string, int> seen;  // option -> line, to reject duplicates
    for (auto it = section.value.begin(); it != section.value.end(); ++it) {
      YAML::Node key = it->first;
      YAML::Node value = it->second;
      const int key_line = line_of(key);
      if (!key.IsScalar()) at(key_line, section.option).fail("option names must be plain words");
      const std::string name = key.Scalar();
      const std::string option = section.option.empty() ? name : section.option + "." + name;
      const auto handler = std::find_if(handlers.begin(), handlers.end(),
                                        [&](const auto& h) { return h.first == name; });
      if (handler == handlers.end()) {
        at(key_line, option).fail("unknown option" + suggestion(section.option, name, handlers));
      }
      if (const auto [first, inserted] = seen.emplace(name, key_line); !inserted) {
        at(key_line, option)
            .fail("given twice (first on line " + std::to_string(first->second) + ")");
      }
      handler->second({option, value, value.IsScalar() ? line_of(value) : key_line});
    }
  }

 private:
  static std::string suggestion(const std::string& section, const std::string& name,
                                const Handlers& handlers) {
    std::string_view best;
    std::size_t best_distance = std::numeric_limits<std::size_t>::max();
    for (const auto& [known, handler] : handlers) {
      const std::size_t distance = edit_distance(to_lower_ascii(name), known);
      if (distance < best_distance) {
        best = known;
        best_distance = distance;
      }
    }
    const std::size_t allowed = std::clamp<std::size_t>(name.size() / 4, 1, 2);
    if (best.empty() || best_distance > allowed) return {};
    return " (did you mean " + (section.empty() ? "" : section + ".") + std::string(best) + "?)";
  }

  std::string source_;
  const Environment& environment_;
};

// Handlers that read one option into its field: the tables below stay one line per option.
Handler text_into(const Reader& r, std::string& target) {
  return [&r, &target](const Entry& e) { target = r.text(e); };
}
Handler required_into(const Reader& r, std::string& target) {
  return [&r, &target](const Entry& e) { target = required(r.text(e), r.at(e)); };
}
Handler boolean_into(const Reader& r, bool& target) {
  return [&r, &target](const Entry& e) { target = boolean(r.text(e), r.at(e)); };
}
// zero_allowed: 0s is meaningful for that option (it turns something off).
Handler duration_into(const Reader& r, Duration& target, bool zero_allowed = false) {
  return [&r, &target, zero_allowed](const Entry& e) {
    target = duration(r.text(e), zero_allowed, r.at(e));
  };
}
template <typename Number>
Handler number_into(const Reader& r, Number& target, std::uint64_t min,
                    std::uint64_t max = std::numeric_limits<Number>::max()) {
  const bool open_ended = max == std::numeric_limits<Number>::max();
  return [&r, &target, min, max, open_ended](const Entry& e) {
    target = static_cast<Number>(whole_number(r.text(e), min, max, open_ended, r.at(e)));
  };
}
template <typename T>
Handler parsed_into(const Reader& r, T& target, T (*parse)(std::string_view, const Origin&)) {
  return [&r, &target, parse](const Entry& e) { target = parse(r.text(e), r.at(e)); };
}

void read_postgres(const Reader& r, const Entry& section, Config::Postgres& postgres) {
  r.read_mapping(section, {
      {"dsn", required_into(r, postgres.dsn)},
      {"pool_size", number_into(r, postgres.pool_size, 1, 64)},
      {"connect_timeout", duration_into(r, postgres.connect_timeout)},
      {"query_timeout", duration_into(r, postgres.query_timeout)},
  });
}

void read_redis(const Reader& r, const Entry& section, Config::Redis& redis) {
  r.read_mapping(section, {
      {"url", parsed_into(r, redis.url, redis_url)},
      {"connect_timeout", duration_into(r, redis.connect_timeout)},
      {"command_timeout", duration_into(r, redis.command_timeout)},
  });
}

void read_keys(const Reader& r, const Entry& section, Config::Keys& keys) {
  int headers_line = section.line;
  auto read_headers = [&](const Entry& e) {
    headers_line = e.line;
    keys.headers.clear();
    for (const Entry& item : r.items(e)) {
      keys.headers.push_back(header_name(r.text(item), r.at(item)));
    }
  };
  r.read_mapping(section, {
      {"headers", read_headers},
      {"query_parameter", parsed_into(r, keys.query_parameter, query_parameter)},
      {"prefix", parsed_into(r, keys.prefix, key_prefix)},
      {"pepper", text_into(r, keys.pepper)},
      {"hide_credentials", boolean_into(r, keys.hide_credentials)},
  });
  if (keys.headers.empty() && keys.query_parameter.empty()) {
    r.at(headers_line, "keys.headers")
        .fail("no header (and no keys.query_parameter) to take keys from; list at least one");
  }
}

void read_cache(const Reader& r, const Entry& section, Config::Cache& cache) {
  r.read_mapping(section, {
      {"ttl", duration_into(r, cache.ttl, true)},
      {"negative_ttl", duration_into(r, cache.negative_ttl, true)},
      {"max_entries", number_into(r, cache.max_entries, 1)},
      {"redis_ttl", duration_into(r, cache.redis_ttl)},
  });
}

std::string redis_error_policy(std::string_view text, const Origin& at) {
  if (text == "deny" || text == "allow") {
    at.fail("\"" + std::string(text) + "\" was replaced by on_redis_error: error together with "
            "on_store_error: " + (text == "deny" ? "closed" : "open"));
  }
  return one_of(text, {"local", "error"}, at);
}

std::string routes_default(std::string_view text, const Origin& at) {
  return one_of(text, {"deny", "key"}, at);
}

std::string store_error_policy(std::string_view text, const Origin& at) {
  return one_of(text, {"closed", "open"}, at);
}

void read_rate_limit(const Reader& r, const Entry& section, Config::RateLimit& limits) {
  r.read_mapping(section, {
      {"default", parsed_into(r, limits.default_limit, rate_limit)},
      {"on_redis_error", parsed_into(r, limits.on_redis_error, redis_error_policy)},
      {"replicas", number_into(r, limits.replicas, 1)},
      {"lease", number_into(r, limits.lease, 1, 100000)},
  });
}

void read_limits(const Reader& r, const Entry& section, Config::Limits& limits) {
  r.read_mapping(section, {
      {"max_header_bytes", number_into(r, limits.max_header_bytes, 1)},
      {"max_body_bytes", number_into(r, limits.max_body_bytes, 0)},
      {"header_timeout", duration_into(r, limits.header_timeout)},
      {"idle_timeout", duration_into(r, limits.idle_timeout)},
      {"upstream_connect_timeout", duration_into(r, limits.upstream_connect_timeout)},
      {"upstream_response_timeout", duration_into(r, limits.upstream_response_timeout)},
      {"max_connections", number_into(r, limits.max_connections, 1)},
      {"upstream_pool_size", number_into(r, limits.upstream_pool_size, 0)},
  });
}

void read_usage(const Reader& r, const Entry& section, Config::Usage& usage) {
  r.read_mapping(section, {
      {"enabled", boolean_into(r, usage.enabled)},
      {"batch_size", number_into(r, usage.batch_size, 1)},
      {"flush_interval", duration_into(r, usage.flush_interval)},
      {"queue_size", number_into(r, usage.queue_size, 1)},
      {"spill_path", required_into(r, usage.spill_path)},
      {"last_used_interval", duration_into(r, usage.last_used_interval)},
      {"retention_days", number_into(r, usage.retention_days, 1)},
  });
}

RouteConfig read_route(const Reader& r, const Entry& item) {
  if (!item.value.IsMap()) {
    r.at(item).fail("expected a mapping like { path: /inventory/*, scopes: [inventory:read] }, "
                    "got " + describe(item.value));
  }
  RouteConfig route;
  bool has_path = false;
  int scopes_line = item.line;
  auto read_path = [&](const Entry& e) {
    route.path = route_path(r.text(e), r.at(e));
    has_path = true;
  };
  auto read_methods = [&](const Entry& e) {
    for (const Entry& m : r.items(e)) route.methods.push_back(method_name(r.text(m), r.at(m)));
  };
  auto read_scopes = [&](const Entry& e) {
    scopes_line = e.line;
    for (const Entry& s : r.items(e)) route.scopes.push_back(required(r.text(s), r.at(s)));
  };
  auto read_rate_limit = [&](const Entry& e) { route.rate_limit = rate_limit(r.text(e), r.at(e)); };
  r.read_mapping(item, {
      {"path", read_path},
      {"methods", read_methods},
      {"scopes", read_scopes},
      {"public", boolean_into(r, route.is_public)},
      {"rate_limit", read_rate_limit},
  });
  if (!has_path) {
    r.at(item.line, item.option + ".path")
        .fail("missing: every route needs a path like /inventory/*");
  }
  if (route.is_public && !route.scopes.empty()) {
    r.at(scopes_line, item.option + ".scopes")
        .fail("a public route takes no key, so it cannot require scopes");
  }
  return route;
}

std::string proxy_mode(std::string_view text, const Origin& at) {
  return one_of(text, {"proxy", "authz"}, at);
}

// A file keygate must read (certificates, keys, CA bundles): checked here so that the message
// has the file and line of the option.
std::string readable_file(std::string_view text, const Origin& at) {
  if (text.empty()) return {};
  const std::string path(text);
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) at.fail("cannot read " + quoted(path) + ": " + std::strerror(errno));
  char byte;
  const bool readable = std::fread(&byte, 1, 1, file) == 1;
  std::fclose(file);
  if (!readable) at.fail("cannot read " + quoted(path) + ": empty, or not a file");
  return path;
}

std::string tls_version(std::string_view text, const Origin& at) {
  return one_of(text, {"1.2", "1.3"}, at);
}

std::string server_name(std::string_view text, const Origin& at) {
  if (text.empty() || core::IpAddress::parse(text) || is_host_name(text)) return std::string(text);
  at.fail("expected a host name or address like api.internal, got " + quoted(text));
}

std::string access_log_mode(std::string_view text, const Origin& at) {
  return one_of(text, {"off", "sampled", "all"}, at);
}

double share(std::string_view text, const Origin& at) {
  double value = 0;
  const char* end = text.data() + text.size();
  const auto [stop, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc{} || stop != end || !(value >= 0 && value <= 1)) {
    at.fail("expected a number from 0 to 1 like 0.01, got " + quoted(text));
  }
  return value;
}

void read_tls(const Reader& r, const Entry& section, Config::Tls& tls) {
  int cert_line = section.line;
  int key_line = section.line;
  r.read_mapping(section, {
      {"cert_file", [&](const Entry& e) {
         cert_line = e.line;
         tls.cert_file = readable_file(r.text(e), r.at(e));
       }},
      {"key_file", [&](const Entry& e) {
         key_line = e.line;
         tls.key_file = readable_file(r.text(e), r.at(e));
       }},
      {"min_version", parsed_into(r, tls.min_version, tls_version)},
  });
  if (!tls.cert_file.empty() && tls.key_file.empty()) {
    r.at(cert_line, "tls.key_file").fail("missing: tls.cert_file needs its private key");
  }
  if (tls.cert_file.empty() && !tls.key_file.empty()) {
    r.at(key_line, "tls.cert_file").fail("missing: tls.key_file needs its certificate");
  }
}

void read_upstream_tls(const Reader& r, const Entry& section, Config::UpstreamTls& tls) {
  r.read_mapping(section, {
      {"verify", boolean_into(r, tls.verify)},
      {"ca_file", parsed_into(r, tls.ca_file, readable_file)},
      {"server_name", parsed_into(r, tls.server_name, server_name)},
  });
}

void read_access_log(const Reader& r, const Entry& section, Config::AccessLog& log) {
  r.read_mapping(section, {
      {"mode", parsed_into(r, log.mode, access_log_mode)},
      {"sample_rate", parsed_into(r, log.sample_rate, share)},
      {"path", required_into(r, log.path)},
  });
}

Config read_config(const Reader& r, const Entry& root) {
  Config config;
  auto read_trusted_proxies = [&](const Entry& e) {
    for (const Entry& item : r.items(e)) {
      config.trusted_proxies.push_back(network(r.text(item), r.at(item)));
    }
  };
  auto read_routes = [&](const Entry& e) {
    for (const Entry& item : r.items(e)) config.routes.push_back(read_route(r, item));
  };
  r.read_mapping(root, {
      {"mode", parsed_into(r, config.mode, proxy_mode)},
      {"listen", parsed_into(r, config.listen, host_port)},
      {"upstream", parsed_into(r, config.upstream, upstream_url)},
      {"admin_listen", parsed_into(r, config.admin_listen, host_port)},
      {"threads", parsed_into(r, config.threads, thread_count)},
      {"postgres", [&](const Entry& e) { read_postgres(r, e, config.postgres); }},
      {"redis", [&](const Entry& e) { read_redis(r, e, config.redis); }},
      {"keys", [&](const Entry& e) { read_keys(r, e, config.keys); }},
      {"cache", [&](const Entry& e) { read_cache(r, e, config.cache); }},
      {"rate_limit", [&](const Entry& e) { read_rate_limit(r, e, config.rate_limit); }},
      {"limits", [&](const Entry& e) { read_limits(r, e, config.limits); }},
      {"trusted_proxies", read_trusted_proxies},
      {"routes", read_routes},
      {"routes_default", parsed_into(r, config.routes_default, routes_default)},
      {"on_store_error", parsed_into(r, config.on_store_error, store_error_policy)},
      {"usage", [&](const Entry& e) { read_usage(r, e, config.usage); }},
      {"shutdown_timeout", duration_into(r, config.shutdown_timeout)},
      {"tls", [&](const Entry& e) { read_tls(r, e, config.tls); }},
      {"upstream_tls", [&](const Entry& e) { read_upstream_tls(r, e, config.upstream_tls); }},
      {"access_log", [&](const Entry& e) { read_access_log(r, e, config.access_log); }},
  });
  return config;
}

// Connection settings from the environment win over the file, as container operators expect.
// An empty variable counts as unset, so `KEYGATE_PEPPER=` cannot silently drop a pepper.
void apply_overrides(Config& config, const Environment& environment) {
  auto value = [&](const char* name) -> std::optional<std::string> {
    const auto found = environment.find(name);
    if (found == environment.end() || found->second.empty()) return std::nullopt;
    return found->second;
  };
  auto at = [](const char* name, const char* option) {
    return Origin(std::string(name) + ": " + option);
  };
  if (auto v = value("KEYGATE_MODE")) config.mode = proxy_mode(*v, at("KEYGATE_MODE", "mode"));
  if (auto v = value("KEYGATE_LISTEN")) {
    config.listen = host_port(*v, at("KEYGATE_LISTEN", "listen"));
  }
  if (auto v = value("KEYGATE_UPSTREAM")) {
    config.upstream = upstream_url(*v, at("KEYGATE_UPSTREAM", "upstream"));
  }
  if (auto v = value("KEYGATE_ADMIN_LISTEN")) {
    config.admin_listen = host_port(*v, at("KEYGATE_ADMIN_LISTEN", "admin_listen"));
  }
  if (auto v = value("KEYGATE_THREADS")) {
    config.threads = thread_count(*v, at("KEYGATE_THREADS", "threads"));
  }
  if (auto v = value("KEYGATE_POSTGRES_DSN")) config.postgres.dsn = *v;
  if (auto v = value("KEYGATE_REDIS_URL")) {
    config.redis.url = redis_url(*v, at("KEYGATE_REDIS_URL", "redis.url"));
  }
  if (auto v = value("KEYGATE_PEPPER")) config.keys.pepper = *v;
}

}  // namespace

Config parse_config(const std::string& yaml_text, const std::string& source_name,
                    const std::map<std::string, std::string>& environment) {
  std::vector<YAML::Node> documents;
  try {
    documents = YAML::LoadAll(yaml_text);
  } catch (const YAML::Exception& e) {
    throw ConfigError(source_name + ":" + std::to_string(e.mark.line + 1) +
                      ": invalid YAML: " + e.msg);
  }
  const Reader reader(source_name, environment);
  if (documents.size() > 1) {
    reader.at(std::max(line_of(documents[1]), 1), "").fail("only one YAML document is allowed");
  }
  Config config;
  if (!documents.empty()) {
    YAML::Node root = documents.front();
    const int line = std::max(line_of(root), 1);
    if (!root.IsNull() && !root.IsMap()) {
      reader.at(line, "").fail("expected a mapping of options (like listen: 0.0.0.0:8080), got " +
                               kind_of(root));
    }
    config = read_config(reader, Entry{"", root, line});
  }
  config.source = source_name;
  apply_overrides(config, environment);
  return config;
}

Config load_config_file(const std::string& path,
                        const std::map<std::string, std::string>& environment) {
  struct Closer {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  const std::unique_ptr<std::FILE, Closer> file(std::fopen(path.c_str(), "rb"));
  if (!file) throw ConfigError("cannot read config file " + path + ": " + std::strerror(errno));
  std::string text;
  char buffer[8192];
  while (const std::size_t n = std::fread(buffer, 1, sizeof buffer, file.get())) {
    text.append(buffer, n);
  }
  // A directory opens fine and fails on the first read (EISDIR).
  if (std::ferror(file.get())) {
    throw ConfigError("cannot read config file " + path + ": " + std::strerror(errno));
  }
  return parse_config(text, path, environment);
}

Config default_config(const std::map<std::string, std::string>& environment) {
  Config config;
  config.source = "(defaults)";
  apply_overrides(config, environment);
  return config;
}

std::vector<std::string> options_needing_restart(const Config& a, const Config& b) {
  auto same = [](const HostPort& x, const HostPort& y) { return x.host == y.host && x.port == y.port; };
  const auto& la = a.limits;
  const auto& lb = b.limits;
  const auto& ua = a.usage;
  const auto& ub = b.usage;
  const std::vector<std::pair<const char*, bool>> changes{
      {"mode", a.mode != b.mode},
      {"listen", !same(a.listen, b.listen)},
      {"upstream", a.upstream.scheme != b.upstream.scheme || a.upstream.host != b.upstream.host ||
                       a.upstream.port != b.upstream.port},
      {"admin_listen", !same(a.admin_listen, b.admin_listen)},
      {"threads", a.threads != b.threads},
      {"postgres", a.postgres.dsn != b.postgres.dsn || a.postgres.pool_size != b.postgres.pool_size ||
                       a.postgres.connect_timeout != b.postgres.connect_timeout ||
                       a.postgres.query_timeout != b.postgres.query_timeout},
      {"redis", a.redis.url != b.redis.url || a.redis.connect_timeout != b.redis.connect_timeout ||
                    a.redis.command_timeout != b.redis.command_timeout},
      {"keys.headers", a.keys.headers != b.keys.headers},
      {"keys.query_parameter", a.keys.query_parameter != b.keys.query_parameter},
      {"keys.prefix", a.keys.prefix != b.keys.prefix},
      {"keys.hide_credentials", a.keys.hide_credentials != b.keys.hide_credentials},
      {"cache", a.cache.ttl != b.cache.ttl || a.cache.negative_ttl != b.cache.negative_ttl ||
                    a.cache.max_entries != b.cache.max_entries ||
                    a.cache.redis_ttl != b.cache.redis_ttl},
      {"rate_limit", a.rate_limit.default_limit.limit != b.rate_limit.default_limit.limit ||
                         a.rate_limit.default_limit.window_seconds !=
                             b.rate_limit.default_limit.window_seconds ||
                         a.rate_limit.on_redis_error != b.rate_limit.on_redis_error ||
                         a.rate_limit.replicas != b.rate_limit.replicas ||
                         a.rate_limit.lease != b.rate_limit.lease},
      {"limits", la.max_header_bytes != lb.max_header_bytes ||
                     la.max_body_bytes != lb.max_body_bytes ||
                     la.header_timeout != lb.header_timeout || la.idle_timeout != lb.idle_timeout ||
                     la.upstream_connect_timeout != lb.upstream_connect_timeout ||
                     la.upstream_response_timeout != lb.upstream_response_timeout ||
                     la.max_connections != lb.max_connections ||
                     la.upstream_pool_size != lb.upstream_pool_size},
      {"trusted_proxies", a.trusted_proxies != b.trusted_proxies},
      {"usage", ua.enabled != ub.enabled || ua.batch_size != ub.batch_size ||
                    ua.flush_interval != ub.flush_interval || ua.queue_size != ub.queue_size ||
                    ua.spill_path != ub.spill_path ||
                    ua.last_used_interval != ub.last_used_interval ||
                    ua.retention_days != ub.retention_days},
      {"shutdown_timeout", a.shutdown_timeout != b.shutdown_timeout},
      {"tls", a.tls.cert_file.empty() != b.tls.cert_file.empty()},  // on <-> off
      {"upstream_tls", a.upstream_tls.verify != b.upstream_tls.verify ||
                           a.upstream_tls.ca_file != b.upstream_tls.ca_file ||
                           a.upstream_tls.server_name != b.upstream_tls.server_name},
  };
  std::vector<std::string> names;
  for (const auto& [name, changed] : changes) {
    if (changed) names.emplace_back(name);
  }
  return names;
}

std::map<std::string, std::string> process_environment() {
  std::map<std::string, std::string> environment;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    const std::size_t equals = text.find('=');
    if (equals == npos) continue;
    environment.emplace(std::string(text.substr(0, equals)), std::string(text.substr(equals + 1)));
  }
  return environment;
}

}  // namespace keygate::app
