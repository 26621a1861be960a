#pragma once
// The value parsers of the configuration: pure functions from the text of one value to its
// typed form, shared by config.yaml and the KEYGATE_* overrides. Each takes the place the
// value came from (Origin) and throws ConfigError with one line naming it; values that may
// hold secrets (URL passwords) are never echoed.
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "app/config.hpp"
#include "authz/leak_report.hpp"

namespace keygate::app::configuration {

// Where a value came from ("config.yaml:12: cache.ttl" or "KEYGATE_LISTEN: listen"); every
// message starts with it.
class Origin {
 public:
  explicit Origin(std::string prefix) : prefix_(std::move(prefix)) {}
  [[noreturn]] void fail(std::string_view what) const;

 private:
  std::string prefix_;
};

// `"soon"`, or `nothing` for an empty value; control characters escaped (one line).
std::string quoted(std::string_view text);
// The URL with "***" in place of its user part (redis://:secret@host -> redis://***@host).
std::string without_userinfo(std::string_view url);

// --- plain values (config_values.cpp) ---
// open_ended: `max` is only the type's limit, so the message says "at least min".
std::uint64_t whole_number(std::string_view text, std::uint64_t min, std::uint64_t max,
                           bool open_ended, const Origin& at);
bool boolean(std::string_view text, const Origin& at);
// zero_allowed: 0s is meaningful for that option (it turns something off).
Duration duration(std::string_view text, bool zero_allowed, const Origin& at);
core::RateLimitSpec rate_limit(std::string_view text, const Origin& at);
unsigned thread_count(std::string_view text, const Origin& at);  // auto: 0
std::string required(std::string_view text, const Origin& at);
double share(std::string_view text, const Origin& at);  // 0..1
std::string key_prefix(std::string_view text, const Origin& at);
std::string header_name(std::string_view text, const Origin& at);  // lower-cased
// Exactly as written; a standard method in the wrong case is refused with the fix.
std::string method_name(std::string_view text, const Origin& at);
std::string query_parameter(std::string_view text, const Origin& at);
std::string route_path(std::string_view text, const Origin& at);
// A file keygate must read (certificates, keys, CA bundles); empty stays empty.
std::string readable_file(std::string_view text, const Origin& at);
// A scope as the API accepts it: 1 to 128 visible ASCII characters, no quotes, commas or
// backslashes.
std::string scope_name(std::string_view text, const Origin& at);
// api.leaks.public_keys_file: readable, and a valid GitHub public keys document (parsed and
// thrown away: serve reads it again at startup, with read_leak_keys).
std::string leak_keys_file(std::string_view text, const Origin& at);
// The file's document parsed (at most 64 KiB), or why not.
authz::LeakKeysParse read_leak_keys(const std::string& path);

// One of a fixed set of words, each standing for a value.
template <typename T>
struct Choice {
  std::string_view name;
  T value;
};
[[noreturn]] void fail_choice(std::span<const std::string_view> names, std::string_view text,
                              const Origin& at);
template <typename T, std::size_t N>
T choice(std::string_view text, const Choice<T> (&choices)[N], const Origin& at) {
  std::string_view names[N];
  for (std::size_t i = 0; i < N; ++i) {
    if (choices[i].name == text) return choices[i].value;
    names[i] = choices[i].name;
  }
  fail_choice(names, text, at);
}
template <typename T, std::size_t N>
std::string_view name_in(const Choice<T> (&choices)[N], T value) {
  for (const Choice<T>& c : choices) {
    if (c.value == value) return c.name;
  }
  return "?";
}

inline constexpr Choice<proxy::ProxyOptions::Mode> mode_choices[] = {
    {"proxy", proxy::ProxyOptions::Mode::proxy}, {"authz", proxy::ProxyOptions::Mode::authz}};
inline constexpr Choice<authz::OnRedisError> on_redis_error_choices[] = {
    {"local", authz::OnRedisError::local}, {"error", authz::OnRedisError::error}};
inline constexpr Choice<authz::RoutesDefault> routes_default_choices[] = {
    {"deny", authz::RoutesDefault::deny}, {"key", authz::RoutesDefault::key}};
inline constexpr Choice<authz::OnStoreError> on_store_error_choices[] = {
    {"closed", authz::OnStoreError::closed}, {"open", authz::OnStoreError::open}};
inline constexpr Choice<proxy::TlsOptions::Version> tls_version_choices[] = {
    {"1.2", proxy::TlsOptions::Version::tls1_2}, {"1.3", proxy::TlsOptions::Version::tls1_3}};
inline constexpr Choice<Config::Api::Leaks::Action> leak_action_choices[] = {
    {"revoke", Config::Api::Leaks::Action::revoke}, {"flag", Config::Api::Leaks::Action::flag}};
inline constexpr Choice<proxy::AccessLogOptions::Mode> access_log_mode_choices[] = {
    {"off", proxy::AccessLogOptions::Mode::off},
    {"sampled", proxy::AccessLogOptions::Mode::sampled},
    {"all", proxy::AccessLogOptions::Mode::all}};

// rate_limit.on_redis_error: the old deny/allow are refused with their replacement named.
authz::OnRedisError redis_error_policy(std::string_view text, const Origin& at);

// --- addresses (config_addresses.cpp) ---
HostPort host_port(std::string_view text, const Origin& at);
UpstreamConfig upstream_url(std::string_view text, const Origin& at);
// Sets what redis.url names (host, port, credentials, database); the timeouts are kept.
void set_redis_url(store::RedisOptions& redis, std::string_view text, const Origin& at);
// One of redis.cluster's seed nodes: host:port or [v6]:port.
store::RedisEndpoint redis_node(std::string_view text, const Origin& at);
// Every seed node (at least one, none twice); `at(i)` names the i-th.
std::vector<store::RedisEndpoint> redis_nodes(const std::vector<std::string>& texts,
                                              const std::function<Origin(std::size_t)>& at);
core::IpNetwork network(std::string_view text, const Origin& at);
std::string server_name(std::string_view text, const Origin& at);
bool is_host_name(std::string_view host);

}  // namespace keygate::app::configuration
