#pragma once
// keygate's configuration: config.yaml (with ${ENV} expansion) and KEYGATE_* environment
// overrides, parsed once and validated into these plain structs of typed values (enums,
// addresses, networks, durations). Nothing else reads YAML or the environment, and nothing
// parses these values again: app/options.hpp maps them onto each part's options.
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "authz/key_authorizer.hpp"
#include "authz/rate_limiter.hpp"
#include "authz/routes.hpp"
#include "core/duration.hpp"
#include "core/ip_network.hpp"
#include "proxy/server.hpp"
#include "store/custom_schema.hpp"
#include "store/redis_client.hpp"

namespace keygate::app {

using Duration = std::chrono::milliseconds;

struct HostPort {
  std::string host;  // IPv4, IPv6 (without brackets) or a name
  std::uint16_t port = 0;
};

struct UpstreamConfig {
  enum class Scheme { http, https } scheme = Scheme::http;
  std::string host = "127.0.0.1";
  std::uint16_t port = 9000;
};

struct Config {
  std::string source;  // file the config came from, or "(defaults)"
  proxy::ProxyOptions::Mode mode = proxy::ProxyOptions::Mode::proxy;
  HostPort listen{"0.0.0.0", 8080};
  UpstreamConfig upstream;
  HostPort admin_listen{"127.0.0.1", 9901};
  // The key-management API (/v1/...; README "Key-management API"): off unless set.
  std::optional<HostPort> api_listen;
  unsigned threads = 0;  // 0: one per core ("auto")

  struct Postgres {
    std::string dsn = "postgresql://keygate@127.0.0.1:5432/keygate";  // libpq checks it
    unsigned pool_size = 4;  // for the whole process
    Duration connect_timeout{3000};
    Duration query_timeout{2000};
  } postgres;

  // Which table holds the keys: keygate's own (native, `keygate migrate up`), or the
  // operator's (custom: a preset for a seed schema and/or a column mapping).
  struct Store {
    enum class Schema { native, custom } schema = Schema::native;
    std::string preset;          // empty: the mapping is written out in full
    store::CustomSchema custom;  // the preset with the options written over it
    // How a custom table's changes reach the cache: the NOTIFY trigger of
    // deploy/presets/<preset>.notify.up.sql, or a poll of the table's change signature.
    enum class Revocation { notify, poll } revocation = Revocation::notify;
    Duration poll_interval{500};
  } store;

  // redis.url parsed (host, port, credentials, database) plus the two timeouts.
  store::RedisOptions redis;
  // redis.cluster: a Redis Cluster's seed nodes. Non-empty: cluster mode, where redis.host,
  // port and database are not used and redis.username / redis.password are every node's
  // credentials. Exclusive with redis.url.
  std::vector<store::RedisEndpoint> redis_cluster;

  struct Keys {
    std::vector<std::string> headers{"authorization", "x-api-key"};  // lower case
    std::string query_parameter;  // empty: keys in the query string are not accepted
    std::string prefix = "kg_live";
    std::string pepper;  // non-empty: HMAC-SHA-256 instead of SHA-256
    bool hide_credentials = true;
  } keys;

  struct Cache {
    Duration ttl{30000};
    Duration negative_ttl{5000};
    std::size_t max_entries = 200000;
    Duration redis_ttl{300000};
  } cache;

  struct RateLimit {
    core::RateLimitSpec default_limit{100, 60};
    authz::OnRedisError on_redis_error = authz::OnRedisError::local;
    unsigned replicas = 1;         // local fallback divides limits by this
    std::int64_t lease = 100;      // requests one Redis call may count at most
  } rate_limit;

  struct Limits {
    std::size_t max_header_bytes = 16 * 1024;
    std::uint64_t max_body_bytes = 100ull * 1024 * 1024 + 1024 * 1024;  // 101 MiB
    Duration header_timeout{10000};
    Duration body_timeout{60000};  // the longest wait between two reads of a request body
    Duration idle_timeout{60000};
    Duration upstream_connect_timeout{2000};
    Duration upstream_response_timeout{30000};
    std::size_t max_connections = 10000;
    std::size_t upstream_pool_size = 64;  // idle keep-alive connections per worker
  } limits;

  std::vector<core::IpNetwork> trusted_proxies;
  // Methods exactly as written (RFC 9110 9.1: they are case-sensitive).
  std::vector<authz::Route> routes;
  authz::RoutesDefault routes_default = authz::RoutesDefault::deny;
  authz::OnStoreError on_store_error = authz::OnStoreError::closed;

  struct Usage {
    bool enabled = true;
    std::size_t batch_size = 5000;
    Duration flush_interval{1000};
    std::size_t queue_size = 100000;
    std::string spill_path = "/tmp/keygate-usage.spill";
    Duration last_used_interval{60000};
    unsigned retention_days = 30;
  } usage;

  Duration shutdown_timeout{15000};

  // TLS on the listener (edge mode); off while cert_file is empty. A SIGHUP re-reads the files.
  proxy::TlsOptions tls;

  // TLS to an https:// upstream (ignored for http://).
  struct UpstreamTls {
    bool verify = true;       // certificate chain and name
    std::string ca_file;      // empty: the system's trust store
    std::string server_name;  // SNI and the name verified; empty: the upstream's host
  } upstream_tls;

  proxy::AccessLogOptions access_log;  // reopened on SIGHUP

  // The key-management API's rules (with api_listen).
  struct Api {
    // The scopes a key may be given through the API; empty: any well-formed scope. admin:*
    // and admin:self are always known (the API defines them).
    std::vector<std::string> scopes;
    struct Leaks {
      // GitHub's secret-scanning public keys document, read at startup; empty: POST /v1/leaks
      // answers 404.
      std::string public_keys_file;
      enum class Action { revoke, flag } action = Action::revoke;
    } leaks;
  } api;
};

// Every configuration error: the message names the file, the line (1-based) and the option,
// e.g. "config.yaml:12: cache.ttl: expected a duration like 30s, got \"soon\"".
class ConfigError : public std::runtime_error {
 public:
  // Always one line, whatever a value or a library's message held: control characters are
  // written as \n, \t or \xNN (tests/fuzz/config.cpp).
  explicit ConfigError(const std::string& message);
};

// Reads and validates a config file; `environment` supplies ${VAR} expansion and the
// KEYGATE_* overrides (pass the process environment in main, a map in tests).
Config load_config_file(const std::string& path, const std::map<std::string, std::string>& environment);
// The same from YAML text (tests; `source_name` is used in messages).
Config parse_config(const std::string& yaml_text, const std::string& source_name,
                    const std::map<std::string, std::string>& environment);
// Defaults plus the KEYGATE_* overrides, for commands run without a config file.
Config default_config(const std::map<std::string, std::string>& environment);

std::map<std::string, std::string> process_environment();

// The name an option's value is written with in config.yaml ("authz"), for log lines.
std::string_view name_of(proxy::ProxyOptions::Mode mode);

// SIGHUP, step 1: why `next` cannot be applied at all (one line naming the option), or empty.
// A changed keys.pepper is refused: every stored hash was made with the running one.
std::string reload_refusal(const Config& running, const Config& next);

// SIGHUP, step 2: the options whose new value would need a restart to take effect (listen
// address, threads, stores, limits, ...), as dotted names in file order; empty when `next` can
// be applied to a process running `running`. What a reload applies: routes, routes_default,
// on_store_error, tls.* (the files are re-read; turning TLS on or off needs a restart) and
// access_log.*. keys.prefix is read by `keys create` and `keys rotate` only.
std::vector<std::string> options_needing_restart(const Config& running, const Config& next);

}  // namespace keygate::app
