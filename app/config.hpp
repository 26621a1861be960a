#pragma once
// keygate's configuration: config.yaml (with ${ENV} expansion) and KEYGATE_* environment
// overrides, parsed once and validated into these plain structs. Nothing else reads YAML or
// the environment; the composition root (app/serve.cpp) hands each part the piece it needs.
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace keygate::app {

using Duration = std::chrono::milliseconds;

struct HostPort {
  std::string host;  // IPv4, IPv6 (without brackets) or a name
  std::uint16_t port = 0;
};

struct UpstreamConfig {
  std::string scheme = "http";  // http | https
  std::string host = "127.0.0.1";
  std::uint16_t port = 9000;
};

struct RateLimitValue {
  int limit = 0;
  int window_seconds = 0;
};

struct RouteConfig {
  std::string path;                  // "/inventory/*" (glob) or "/inventory" (prefix)
  std::vector<std::string> methods;  // upper case; empty: any method
  std::vector<std::string> scopes;   // all required
  bool is_public = false;
  std::optional<RateLimitValue> rate_limit;
};

struct Config {
  std::string source;  // file the config came from, or "(defaults)"
  std::string mode = "proxy";  // proxy | authz
  HostPort listen{"0.0.0.0", 8080};
  UpstreamConfig upstream;
  HostPort admin_listen{"127.0.0.1", 9901};
  unsigned threads = 0;  // 0: one per core ("auto")

  struct Postgres {
    std::string dsn = "postgresql://keygate@127.0.0.1:5432/keygate";
    unsigned pool_size = 4;
    Duration connect_timeout{3000};
    Duration query_timeout{2000};
  } postgres;

  struct Redis {
    std::string url = "redis://127.0.0.1:6379";
    Duration connect_timeout{1000};
    Duration command_timeout{250};
  } redis;

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
    RateLimitValue default_limit{100, 60};
    std::string on_redis_error = "local";  // local | error (on_store_error answers it)
    unsigned replicas = 1;                 // local fallback divides limits by this
    std::int64_t lease = 100;              // requests one Redis call may count at most
  } rate_limit;

  struct Limits {
    std::size_t max_header_bytes = 16 * 1024;
    std::uint64_t max_body_bytes = 100ull * 1024 * 1024 + 1024 * 1024;  // 101 MiB
    Duration header_timeout{10000};
    Duration idle_timeout{60000};
    Duration upstream_connect_timeout{2000};
    Duration upstream_response_timeout{30000};
    std::size_t max_connections = 10000;
    std::size_t upstream_pool_size = 64;  // idle keep-alive connections per worker
  } limits;

  std::vector<std::string> trusted_proxies;  // CIDR text, validated
  std::vector<RouteConfig> routes;
  std::string routes_default = "deny";  // deny | key: what a path no route matches needs
  std::string on_store_error = "closed";  // closed | open: what a store error answers

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
  struct Tls {
    std::string cert_file;  // PEM certificate chain; set together with key_file
    std::string key_file;   // PEM private key
    std::string min_version = "1.2";  // 1.2 | 1.3
  } tls;

  // TLS to an https:// upstream (ignored for http://).
  struct UpstreamTls {
    bool verify = true;       // certificate chain and name
    std::string ca_file;      // empty: the system's trust store
    std::string server_name;  // SNI and the name verified; empty: the upstream's host
  } upstream_tls;

  struct AccessLog {
    std::string mode = "off";      // off | sampled | all
    double sample_rate = 0.01;     // sampled: share of requests logged (every 5xx is)
    std::string path = "stderr";   // stderr | stdout | a file (appended; reopened on SIGHUP)
  } access_log;
};

// Every configuration error: the message names the file, the line (1-based) and the option,
// e.g. "config.yaml:12: cache.ttl: expected a duration like 30s, got \"soon\"".
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
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

// SIGHUP: the options whose new value would need a restart to take effect (listen address,
// threads, stores, limits, ...), as dotted names in file order; empty when `next` can be
// applied to a process running `running`. What a reload applies: routes, keys.pepper,
// tls.* (the files are re-read; turning TLS on or off needs a restart) and access_log.*.
std::vector<std::string> options_needing_restart(const Config& running, const Config& next);

}  // namespace keygate::app
