// app/config: YAML text -> Config, ${VAR} expansion, KEYGATE_* overrides, and the exact
// one-line message (file:line: option: problem) of every kind of mistake.
#include <doctest/doctest.h>

#include <boost/pfr/ops.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "app/config.hpp"
#include "core/text.hpp"

namespace {

using keygate::app::Config;
using keygate::app::ConfigError;
using keygate::app::default_config;
using keygate::app::load_config_file;
using keygate::app::parse_config;
using Environment = std::map<std::string, std::string>;
using Mode = keygate::proxy::ProxyOptions::Mode;
using Scheme = keygate::app::UpstreamConfig::Scheme;
using keygate::authz::OnRedisError;
using keygate::authz::OnStoreError;
using keygate::authz::RoutesDefault;
using namespace std::chrono_literals;

std::vector<std::string> as_text(const std::vector<keygate::core::IpNetwork>& networks) {
  std::vector<std::string> out;
  for (const auto& n : networks) out.push_back(n.to_string());
  return out;
}

Config parse(const std::string& yaml, const Environment& environment = {}) {
  return parse_config(yaml, "config.yaml", environment);
}

// The message of the ConfigError that parsing `yaml` throws, or a marker when it throws none.
std::string error_of(const std::string& yaml, const Environment& environment = {}) {
  try {
    parse(yaml, environment);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

const std::filesystem::path source_dir =
    std::filesystem::path(__FILE__).parent_path().parent_path().parent_path();

// Every field of Config, so the shipped file cannot drift from the defaults in config.hpp:
// whole sections compare, so a field added to one is compared too.
void check_same(const Config& a, const Config& b) {
  using boost::pfr::eq;
  CHECK(a.mode == b.mode);
  CHECK(eq(a.listen, b.listen));
  CHECK(eq(a.upstream, b.upstream));
  CHECK(eq(a.admin_listen, b.admin_listen));
  CHECK(a.threads == b.threads);
  CHECK(eq(a.postgres, b.postgres));
  CHECK(eq(a.redis, b.redis));
  CHECK(a.redis_cluster == b.redis_cluster);
  // Field by field: boost::pfr on Keys (a vector with a braced default) crashes g++ 12.
  CHECK(a.keys.headers == b.keys.headers);
  CHECK(a.keys.query_parameter == b.keys.query_parameter);
  CHECK(a.keys.prefix == b.keys.prefix);
  CHECK(a.keys.pepper == b.keys.pepper);
  CHECK(a.keys.hide_credentials == b.keys.hide_credentials);
  CHECK(eq(a.cache, b.cache));
  CHECK(eq(a.rate_limit, b.rate_limit));
  CHECK(eq(a.limits, b.limits));
  CHECK(a.trusted_proxies == b.trusted_proxies);
  CHECK(a.routes.size() == b.routes.size());
  CHECK(a.routes_default == b.routes_default);
  CHECK(a.on_store_error == b.on_store_error);
  CHECK(eq(a.usage, b.usage));
  CHECK(a.shutdown_timeout == b.shutdown_timeout);
  CHECK(eq(a.tls, b.tls));
  CHECK(eq(a.upstream_tls, b.upstream_tls));
  CHECK(eq(a.access_log, b.access_log));
}

}  // namespace

TEST_SUITE("config") {

TEST_CASE("the shipped config.yaml loads and holds exactly the defaults") {
  const auto path = source_dir / "config.yaml";
  const Config shipped = load_config_file(path.string(), {});
  CHECK(shipped.source == path.string());
  check_same(shipped, default_config({}));
  CHECK(shipped.routes.empty());
}

TEST_CASE("without a file the defaults of config.hpp apply") {
  const Config config = default_config({});
  CHECK(config.source == "(defaults)");
  check_same(config, Config{});
}

TEST_CASE("an empty file or a file of comments means all defaults") {
  check_same(parse(""), Config{});
  check_same(parse("# nothing here\n"), Config{});
  CHECK(parse("").source == "config.yaml");
}

TEST_CASE("every option maps to its field") {
  const Config c = parse(R"(mode: authz
listen: "[::]:8443"
upstream: https://api.internal
admin_listen: 127.0.0.1:9000
threads: 8
postgres:
  dsn: host=db dbname=keygate
  pool_size: 64
  connect_timeout: 500ms
  query_timeout: 1m
redis:
  url: redis://cache:6380/2
  connect_timeout: 2s
  command_timeout: 100ms
keys:
  headers: [X-Api-Key, Authorization]
  query_parameter: api_key
  prefix: acme_test
  pepper: s3cret
  hide_credentials: false
cache:
  ttl: 0s
  negative_ttl: 0s
  max_entries: 10
  redis_ttl: 1h
rate_limit:
  default: 10/1m
  on_redis_error: error
  replicas: 3
  lease: 1
limits:
  max_header_bytes: 8192
  max_body_bytes: 0
  header_timeout: 5s
  body_timeout: 20s
  idle_timeout: 30s
  upstream_connect_timeout: 1s
  upstream_response_timeout: 10s
  max_connections: 100
  upstream_pool_size: 0
trusted_proxies: [10.0.0.0/8, "::1"]
routes:
  - { path: /public/*, public: true }
  - { path: /inventory/*, methods: [GET, HEAD, PURGE], scopes: [inventory:read], rate_limit: 5/1s }
routes_default: key
on_store_error: open
usage:
  enabled: no
  batch_size: 10
  flush_interval: 250ms
  queue_size: 20
  spill_path: /var/lib/keygate/spill
  last_used_interval: 5m
  retention_days: 7
shutdown_timeout: 1s
)");
  CHECK(c.mode == Mode::authz);
  CHECK(c.listen.host == "::");
  CHECK(c.listen.port == 8443);
  CHECK(c.upstream.scheme == Scheme::https);
  CHECK(c.upstream.host == "api.internal");
  CHECK(c.upstream.port == 443);
  CHECK(c.admin_listen.port == 9000);
  CHECK(c.threads == 8);
  CHECK(c.postgres.dsn == "host=db dbname=keygate");
  CHECK(c.postgres.pool_size == 64);
  CHECK(c.postgres.connect_timeout == 500ms);
  CHECK(c.postgres.query_timeout == 60s);
  CHECK(c.redis.host == "cache");
  CHECK(c.redis.port == 6380);
  CHECK(c.redis.database == 2);
  CHECK(c.redis.password.empty());
  CHECK(c.redis.connect_timeout == 2s);
  CHECK(c.redis.command_timeout == 100ms);
  CHECK(c.keys.headers == std::vector<std::string>{"x-api-key", "authorization"});
  CHECK(c.keys.query_parameter == "api_key");
  CHECK(c.keys.prefix == "acme_test");
  CHECK(c.keys.pepper == "s3cret");
  CHECK_FALSE(c.keys.hide_credentials);
  CHECK(c.cache.ttl == 0ms);
  CHECK(c.cache.negative_ttl == 0ms);
  CHECK(c.cache.max_entries == 10);
  CHECK(c.cache.redis_ttl == 1h);
  CHECK(c.rate_limit.default_limit.limit == 10);
  CHECK(c.rate_limit.default_limit.window_seconds == 60);
  CHECK(c.rate_limit.on_redis_error == OnRedisError::error);
  CHECK(c.rate_limit.replicas == 3);
  CHECK(c.rate_limit.lease == 1);
  CHECK(c.limits.max_header_bytes == 8192);
  CHECK(c.limits.max_body_bytes == 0);
  CHECK(c.limits.header_timeout == 5s);
  CHECK(c.limits.body_timeout == 20s);
  CHECK(c.limits.idle_timeout == 30s);
  CHECK(c.limits.upstream_connect_timeout == 1s);
  CHECK(c.limits.upstream_response_timeout == 10s);
  CHECK(c.limits.max_connections == 100);
  CHECK(c.limits.upstream_pool_size == 0);
  CHECK(as_text(c.trusted_proxies) == std::vector<std::string>{"10.0.0.0/8", "::1/128"});
  REQUIRE(c.routes.size() == 2);
  CHECK(c.routes[0].pattern == "/public/*");
  CHECK(c.routes[0].is_public);
  CHECK(c.routes[0].methods.empty());
  CHECK(c.routes[0].scopes.empty());
  CHECK_FALSE(c.routes[0].rate_limit.has_value());
  CHECK(c.routes[1].pattern == "/inventory/*");
  CHECK_FALSE(c.routes[1].is_public);
  CHECK(c.routes[1].methods == std::vector<std::string>{"GET", "HEAD", "PURGE"});
  CHECK(c.routes[1].scopes == std::vector<std::string>{"inventory:read"});
  REQUIRE(c.routes[1].rate_limit.has_value());
  CHECK(c.routes[1].rate_limit->limit == 5);
  CHECK(c.routes[1].rate_limit->window_seconds == 1);
  CHECK(c.routes_default == RoutesDefault::key);
  CHECK(c.on_store_error == OnStoreError::open);
  CHECK_FALSE(c.usage.enabled);
  CHECK(c.usage.batch_size == 10);
  CHECK(c.usage.flush_interval == 250ms);
  CHECK(c.usage.queue_size == 20);
  CHECK(c.usage.spill_path == "/var/lib/keygate/spill");
  CHECK(c.usage.last_used_interval == 5min);
  CHECK(c.usage.retention_days == 7);
  CHECK(c.shutdown_timeout == 1s);
}

TEST_CASE("the design's example routes parse as written there") {
  const Config c = parse(R"(routes:
  - { path: /public/*, public: true }
  - { path: /inventory/*, methods: [GET], scopes: [inventory:read] }
  - { path: /inventory/*, methods: [POST, PUT, DELETE], scopes: [inventory:write] }
)");
  REQUIRE(c.routes.size() == 3);
  CHECK(c.routes[2].methods == std::vector<std::string>{"POST", "PUT", "DELETE"});
  CHECK(c.routes[2].scopes == std::vector<std::string>{"inventory:write"});
}

TEST_CASE("listen and upstream accept the documented forms") {
  CHECK(parse("listen: localhost:80\n").listen.host == "localhost");
  CHECK(parse("upstream: http://[::1]:9000/\n").upstream.host == "::1");
  CHECK(parse("upstream: HTTP://example.com\n").upstream.scheme == Scheme::http);
  CHECK(parse("upstream: http://example.com\n").upstream.port == 80);
  CHECK(parse("threads: auto\n").threads == 0);
  CHECK(parse("threads: 256\n").threads == 256);
}

TEST_CASE("an unknown option is an error, with a suggestion when one is close") {
  CHECK(error_of("cache:\n  ttl: 5s\n  tll: 5s\n") ==
        "config.yaml:3: cache.tll: unknown option (did you mean cache.ttl?)");
  CHECK(error_of("mode: proxy\npostgres:\n  pool_sise: 4\n") ==
        "config.yaml:3: postgres.pool_sise: unknown option (did you mean postgres.pool_size?)");
  CHECK(error_of("lisen: 0.0.0.0:80\n") == "config.yaml:1: lisen: unknown option (did you mean listen?)");
  CHECK(error_of("colour: red\n") == "config.yaml:1: colour: unknown option");
  CHECK(error_of("routes:\n  - path: /a\n    scope: [x]\n") ==
        "config.yaml:3: routes[0].scope: unknown option (did you mean routes[0].scopes?)");
}

TEST_CASE("an option given twice is an error naming the first line") {
  CHECK(error_of("cache:\n  ttl: 5s\n  ttl: 6s\n") ==
        "config.yaml:3: cache.ttl: given twice (first on line 2)");
}

TEST_CASE("durations and rate limits are checked") {
  CHECK(error_of("mode: proxy\ncache:\n  ttl: soon\n") ==
        "config.yaml:3: cache.ttl: expected a duration like 30s, got \"soon\"");
  CHECK(error_of("cache:\n  redis_ttl: 0s\n") ==
        "config.yaml:2: cache.redis_ttl: must be longer than 0s, got \"0s\"");
  CHECK(error_of("cache:\n  ttl:\n") == "config.yaml:2: cache.ttl: expected a duration like 30s, got nothing");
  CHECK(error_of("limits:\n  body_timeout: 0s\n") ==
        "config.yaml:2: limits.body_timeout: must be longer than 0s, got \"0s\"");
  CHECK(error_of("shutdown_timeout: 5\n") ==
        "config.yaml:1: shutdown_timeout: expected a duration like 30s, got \"5\"");
  CHECK(error_of("rate_limit:\n  default: 100 per minute\n") ==
        "config.yaml:2: rate_limit.default: expected a rate limit like 100/60s, got \"100 per minute\"");
  CHECK(error_of("rate_limit:\n  default: 0/60s\n") ==
        "config.yaml:2: rate_limit.default: expected a rate limit like 100/60s, got \"0/60s\"");
}

TEST_CASE("numbers must be whole and in range") {
  CHECK(error_of("postgres:\n  pool_size: 65\n") ==
        "config.yaml:2: postgres.pool_size: expected a whole number from 1 to 64, got \"65\"");
  CHECK(error_of("postgres:\n  pool_size: 0\n") ==
        "config.yaml:2: postgres.pool_size: expected a whole number from 1 to 64, got \"0\"");
  CHECK(error_of("postgres:\n  pool_size: 2.5\n") ==
        "config.yaml:2: postgres.pool_size: expected a whole number from 1 to 64, got \"2.5\"");
  CHECK(error_of("cache:\n  max_entries: 0\n") ==
        "config.yaml:2: cache.max_entries: expected a whole number of at least 1, got \"0\"");
  CHECK(error_of("usage:\n  batch_size: -5\n") ==
        "config.yaml:2: usage.batch_size: expected a whole number of at least 1, got \"-5\"");
  CHECK(error_of("rate_limit:\n  replicas: 99999999999\n") ==
        "config.yaml:2: rate_limit.replicas: expected a whole number of at least 1, got \"99999999999\"");
  CHECK(error_of("rate_limit:\n  lease: 0\n") ==
        "config.yaml:2: rate_limit.lease: expected a whole number from 1 to 100000, got \"0\"");
  CHECK(error_of("threads: 0\n") ==
        "config.yaml:1: threads: expected auto or a whole number from 1 to 256, got \"0\"");
  CHECK(error_of("threads: 257\n") ==
        "config.yaml:1: threads: expected auto or a whole number from 1 to 256, got \"257\"");
}

TEST_CASE("addresses are checked") {
  CHECK(error_of("listen: 0.0.0.0:0\n") == "config.yaml:1: listen: expected a port from 1 to 65535, got \"0\"");
  CHECK(error_of("listen: 0.0.0.0:65536\n") ==
        "config.yaml:1: listen: expected a port from 1 to 65535, got \"65536\"");
  CHECK(error_of("listen: 8080\n") ==
        "config.yaml:1: listen: expected host:port like 0.0.0.0:8080 or [::]:8080, got \"8080\"");
  CHECK(error_of("admin_listen: \"::1:9901\"\n") ==
        "config.yaml:1: admin_listen: IPv6 addresses need brackets, like [::1]:8080, got \"::1:9901\"");
  CHECK(error_of("upstream: ftp://files:21\n") ==
        "config.yaml:1: upstream: expected scheme http or https, got \"ftp\"");
  CHECK(error_of("upstream: 127.0.0.1:9000\n") ==
        "config.yaml:1: upstream: expected http://host:port or https://host:port, got \"127.0.0.1:9000\"");
  CHECK(error_of("upstream: http://svc:9000/api\n") ==
        "config.yaml:1: upstream: must not have a path or query (requests keep their own), got "
        "\"http://svc:9000/api\"");
  CHECK(error_of("trusted_proxies: [10.0.0.0/8, 10.0.0.1/8]\n") ==
        "config.yaml:1: trusted_proxies[1]: expected an address or CIDR network like 10.0.0.0/8, got "
        "\"10.0.0.1/8\"");
}

TEST_CASE("store settings are checked without echoing secrets") {
  CHECK(error_of("postgres:\n  dsn: \"\"\n") == "config.yaml:2: postgres.dsn: must not be empty");
  CHECK(error_of("redis:\n  url: http://cache:6379\n") ==
        "config.yaml:2: redis.url: expected redis://[[user]:password@]host[:port][/db], got "
        "\"http://cache:6379\"");
  CHECK(error_of("redis:\n  url: redis://:hunter2@cache:99999\n") ==
        "config.yaml:2: redis.url: port must be a number from 1 to 65535, got \"redis://***@cache:99999\"");
  CHECK(error_of("redis:\n  url: redis://:hunter2@cache/x\n") ==
        "config.yaml:2: redis.url: database must be a number, as in redis://host:6379/0, got "
        "\"redis://***@cache/x\"");
  CHECK(error_of("redis:\n  url: rediss://cache\n") ==
        "config.yaml:2: redis.url: TLS (rediss://) is not supported, got \"rediss://cache\"");
  CHECK(error_of("keys:\n  pepper: [a, b]\n") == "config.yaml:2: keys.pepper: expected a single value, got a list");
}

TEST_CASE("choices are checked") {
  CHECK(error_of("mode: sidecar\n") == "config.yaml:1: mode: expected proxy or authz, got \"sidecar\"");
  CHECK(error_of("rate_limit:\n  on_redis_error: ignore\n") ==
        "config.yaml:2: rate_limit.on_redis_error: expected local or error, got \"ignore\"");
  CHECK(error_of("rate_limit:\n  on_redis_error: allow\n") ==
        "config.yaml:2: rate_limit.on_redis_error: \"allow\" was replaced by on_redis_error: error "
        "together with on_store_error: open");
  CHECK(error_of("keys:\n  hide_credentials: maybe\n") ==
        "config.yaml:2: keys.hide_credentials: expected true or false, got \"maybe\"");
}

TEST_CASE("key settings are checked and header names lower-cased") {
  const std::string prefix_rule =
      "expected a lower-case word like kg_live (a-z first, then a-z 0-9 _, at most 32, not ending in _)";
  CHECK(error_of("keys:\n  prefix: Kg\n") == "config.yaml:2: keys.prefix: " + prefix_rule + ", got \"Kg\"");
  CHECK(error_of("keys:\n  prefix: kg_\n") == "config.yaml:2: keys.prefix: " + prefix_rule + ", got \"kg_\"");
  CHECK(error_of("keys:\n  prefix: 1kg\n") == "config.yaml:2: keys.prefix: " + prefix_rule + ", got \"1kg\"");
  CHECK(error_of("keys:\n  prefix: " + std::string(33, 'k') + "\n") ==
        "config.yaml:2: keys.prefix: " + prefix_rule + ", got \"" + std::string(33, 'k') + "\"");
  CHECK(parse("keys:\n  prefix: " + std::string(32, 'k') + "\n").keys.prefix == std::string(32, 'k'));
  CHECK(error_of("keys:\n  headers:\n    - x-api-key\n    - \"bad header\"\n") ==
        "config.yaml:4: keys.headers[1]: expected an HTTP header name like x-api-key, got \"bad header\"");
  CHECK(error_of("keys:\n  headers: x-api-key\n") ==
        "config.yaml:2: keys.headers: expected a list like [a, b], got \"x-api-key\"");
  CHECK(error_of("keys:\n  headers: []\n") ==
        "config.yaml:2: keys.headers: no header (and no keys.query_parameter) to take keys from; list at "
        "least one");
  CHECK(parse("keys:\n  headers: []\n  query_parameter: key\n").keys.headers.empty());
}

TEST_CASE("routes are checked") {
  CHECK(error_of("routes:\n  - methods: [GET]\n") ==
        "config.yaml:2: routes[0].path: missing: every route needs a path like /inventory/*");
  CHECK(error_of("routes:\n  - { path: /a }\n  - { path: inventory/* }\n") ==
        "config.yaml:3: routes[1].path: expected a path starting with '/', got \"inventory/*\"");
  CHECK(error_of("routes:\n  - path: /public/*\n    public: true\n    scopes: [read]\n") ==
        "config.yaml:4: routes[0].scopes: a public route takes no key, so it cannot require scopes");
  CHECK(error_of("routes:\n  - { path: /a, methods: [GET, \"PO ST\"] }\n") ==
        "config.yaml:2: routes[0].methods[1]: expected an HTTP method like GET, got \"PO ST\"");
  CHECK(error_of("routes:\n  - /inventory/*\n") ==
        "config.yaml:2: routes[0]: expected a mapping like { path: /inventory/*, scopes: [inventory:read] }, "
        "got \"/inventory/*\"");
  CHECK(parse("routes:\n  - { path: \"/v?/items\" }\n").routes[0].pattern == "/v?/items");
  CHECK(error_of("routes:\n  - { path: \"/a b\" }\n") ==
        "config.yaml:2: routes[0].path: expected a path without spaces or '#', got \"/a b\"");
  CHECK(error_of("routes: {path: /a}\n") == "config.yaml:1: routes: expected a list like [a, b], got a mapping");
}

TEST_CASE("methods are case-sensitive: kept as written, a standard one in the wrong case refused") {
  const Config c = parse("routes:\n  - { path: /a, methods: [GET, PURGE, M-SEARCH, purge] }\n");
  CHECK(c.routes[0].methods == std::vector<std::string>{"GET", "PURGE", "M-SEARCH", "purge"});
  CHECK(error_of("routes:\n  - { path: /a }\n  - { path: /b, methods: [get] }\n") ==
        "config.yaml:3: routes[1].methods[0]: \"get\" is not a method: methods are case-sensitive; "
        "write GET");
  CHECK(error_of("routes:\n  - path: /a\n    methods:\n      - POST\n      - Delete\n") ==
        "config.yaml:5: routes[0].methods[1]: \"Delete\" is not a method: methods are "
        "case-sensitive; write DELETE");
  for (const char* standard : {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}) {
    CAPTURE(standard);
    CHECK(parse(std::string("routes:\n  - { path: /a, methods: [") + standard + "] }\n")
              .routes[0].methods == std::vector<std::string>{standard});
    const std::string lower = keygate::core::to_lower_ascii(standard);
    CHECK(error_of("routes:\n  - { path: /a, methods: [" + lower + "] }\n") ==
          "config.yaml:2: routes[0].methods[0]: \"" + lower +
              "\" is not a method: methods are case-sensitive; write " + standard);
  }
}

TEST_CASE("routes_default and on_store_error take their words, with the defaults deny and closed") {
  CHECK(Config{}.routes_default == RoutesDefault::deny);
  CHECK(Config{}.on_store_error == OnStoreError::closed);
  CHECK(parse("routes_default: key\n").routes_default == RoutesDefault::key);
  CHECK(parse("routes_default: deny\n").routes_default == RoutesDefault::deny);
  CHECK(parse("on_store_error: open\n").on_store_error == OnStoreError::open);
  CHECK(parse("on_store_error: closed\n").on_store_error == OnStoreError::closed);
  CHECK(error_of("routes_default: allow\n") ==
        "config.yaml:1: routes_default: expected deny or key, got \"allow\"");
  CHECK(error_of("routes_default: Key\n") ==
        "config.yaml:1: routes_default: expected deny or key, got \"Key\"");
  CHECK(error_of("on_store_error: fail\n") ==
        "config.yaml:1: on_store_error: expected closed or open, got \"fail\"");
  CHECK(error_of("on_store_error:\n") == "config.yaml:1: on_store_error: expected closed or open, got nothing");
  CHECK(error_of("on_store_eror: open\n") ==
        "config.yaml:1: on_store_eror: unknown option (did you mean on_store_error?)");
}

TEST_CASE("rate_limit.on_redis_error is local or error, deny and allow name their replacement") {
  CHECK(parse("rate_limit:\n  on_redis_error: local\n").rate_limit.on_redis_error == OnRedisError::local);
  CHECK(parse("rate_limit:\n  on_redis_error: error\n").rate_limit.on_redis_error == OnRedisError::error);
  CHECK(error_of("rate_limit:\n  on_redis_error: deny\n") ==
        "config.yaml:2: rate_limit.on_redis_error: \"deny\" was replaced by on_redis_error: error "
        "together with on_store_error: closed");
  CHECK(error_of("rate_limit:\n  on_redis_error: Local\n") ==
        "config.yaml:2: rate_limit.on_redis_error: expected local or error, got \"Local\"");
}

TEST_CASE("redis.url is parsed once into the client's options, the timeouts kept wherever they stand") {
  const Config c = parse("redis:\n  connect_timeout: 2s\n  url: redis://app:pw@cache:6390/3\n"
                         "  command_timeout: 50ms\n");
  CHECK(c.redis.host == "cache");
  CHECK(c.redis.port == 6390);
  CHECK(c.redis.username == "app");
  CHECK(c.redis.password == "pw");
  CHECK(c.redis.database == 3);
  CHECK(c.redis.connect_timeout == 2s);
  CHECK(c.redis.command_timeout == 50ms);
  const Config overridden =
      parse("redis:\n  command_timeout: 75ms\n", {{"KEYGATE_REDIS_URL", "redis://[::1]:7000"}});
  CHECK(overridden.redis.host == "::1");
  CHECK(overridden.redis.port == 7000);
  CHECK(overridden.redis.command_timeout == 75ms);
}

TEST_CASE("the shipped config.yaml documents the new options with their defaults") {
  std::ifstream file(source_dir / "config.yaml");
  const std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  CHECK(text.find("\nroutes_default: deny ") != std::string::npos);
  CHECK(text.find("\non_store_error: closed ") != std::string::npos);
  CHECK(text.find("\n  on_redis_error: local ") != std::string::npos);
}

TEST_CASE("the shape of the file is checked") {
  CHECK(error_of("- listen\n- upstream\n") ==
        "config.yaml:1: expected a mapping of options (like listen: 0.0.0.0:8080), got a list");
  CHECK(error_of("just words\n") ==
        "config.yaml:1: expected a mapping of options (like listen: 0.0.0.0:8080), got a single value");
  CHECK(error_of("mode: proxy\n---\nmode: authz\n") == "config.yaml:3: only one YAML document is allowed");
  CHECK(error_of("mode: proxy\ncache: 30s\n") ==
        "config.yaml:2: cache: expected a mapping of options, got a single value");
  // A DSN where the section belongs: its password is not echoed.
  CHECK(error_of("postgres: postgresql://u:pw@db/kg\n") ==
        "config.yaml:1: postgres: expected a mapping of options, got a single value");
  CHECK(error_of("mode: proxy\nroutes: [a,\nlisten: x\n") ==
        "config.yaml:4: invalid YAML: end of sequence flow not found");
  CHECK(error_of("mode: proxy\n  listen: x\n") == "config.yaml:2: invalid YAML: illegal map value");
}

TEST_CASE("a file that cannot be read is named with the reason") {
  try {
    load_config_file("/nonexistent/keygate.yaml", {});
    FAIL("expected a ConfigError");
  } catch (const ConfigError& e) {
    CHECK(std::string(e.what()) ==
          "cannot read config file /nonexistent/keygate.yaml: No such file or directory");
  }
  try {
    load_config_file(source_dir.string(), {});
    FAIL("expected a ConfigError");
  } catch (const ConfigError& e) {
    CHECK(std::string(e.what()) == "cannot read config file " + source_dir.string() + ": Is a directory");
  }
}

TEST_CASE("${VAR} and ${VAR:-default} are expanded from the environment") {
  const Environment environment{{"PG_PASSWORD", "s3cret"}, {"POOL", "8"}, {"EMPTY", ""}};
  const Config c = parse(R"(postgres:
  dsn: postgresql://keygate:${PG_PASSWORD}@db/keygate
  pool_size: ${POOL:-2}
redis:
  url: redis://${REDIS_HOST:-localhost}:${REDIS_PORT:-6379}
keys:
  pepper: ${EMPTY:-fallback}
  headers: ["${HEADER:-x-api-key}"]
)",
                         environment);
  CHECK(c.postgres.dsn == "postgresql://keygate:s3cret@db/keygate");
  CHECK(c.postgres.pool_size == 8);
  CHECK(c.redis.host == "localhost");
  CHECK(c.redis.port == 6379);
  CHECK(c.keys.pepper == "fallback");
  CHECK(c.keys.headers == std::vector<std::string>{"x-api-key"});
}

TEST_CASE("$${ is a literal ${ and the result is validated like any value") {
  CHECK(parse("keys:\n  pepper: a$${b}\n").keys.pepper == "a${b}");
  CHECK(parse("keys:\n  pepper: ${EMPTY}\n", {{"EMPTY", ""}}).keys.pepper.empty());
  CHECK(error_of("postgres:\n  pool_size: ${POOL}\n", {{"POOL", "100"}}) ==
        "config.yaml:2: postgres.pool_size: expected a whole number from 1 to 64, got \"100\"");
}

TEST_CASE("an unset variable or a malformed reference is an error naming it and the line") {
  CHECK(error_of("mode: proxy\nkeys:\n  pepper: ${KEYGATE_TEST_UNSET}\n") ==
        "config.yaml:3: keys.pepper: environment variable KEYGATE_TEST_UNSET is not set (write "
        "${KEYGATE_TEST_UNSET:-default} to give a default)");
  CHECK(error_of("keys:\n  pepper: ${OPEN\n") ==
        "config.yaml:2: keys.pepper: unterminated ${ (expected ${NAME} or ${NAME:-default})");
  CHECK(error_of("keys:\n  pepper: ${1X}\n") ==
        "config.yaml:2: keys.pepper: ${1X} is not a variable reference (expected ${NAME} or "
        "${NAME:-default})");
}

TEST_CASE("KEYGATE_* variables win over the file") {
  const Environment environment{
      {"KEYGATE_MODE", "authz"},
      {"KEYGATE_LISTEN", "127.0.0.1:7000"},
      {"KEYGATE_UPSTREAM", "https://backend:8443"},
      {"KEYGATE_ADMIN_LISTEN", "[::1]:7001"},
      {"KEYGATE_THREADS", "2"},
      {"KEYGATE_POSTGRES_DSN", "host=pg"},
      {"KEYGATE_REDIS_URL", "redis://redis:6000"},
      {"KEYGATE_PEPPER", "from-env"},
  };
  const Config c = parse(R"(mode: proxy
listen: 0.0.0.0:80
upstream: http://svc:9000
admin_listen: 0.0.0.0:81
threads: 16
postgres: { dsn: host=file }
redis: { url: "redis://file:1" }
keys: { pepper: from-file }
)",
                         environment);
  CHECK(c.mode == Mode::authz);
  CHECK(c.listen.host == "127.0.0.1");
  CHECK(c.listen.port == 7000);
  CHECK(c.upstream.scheme == Scheme::https);
  CHECK(c.upstream.host == "backend");
  CHECK(c.upstream.port == 8443);
  CHECK(c.admin_listen.host == "::1");
  CHECK(c.admin_listen.port == 7001);
  CHECK(c.threads == 2);
  CHECK(c.postgres.dsn == "host=pg");
  CHECK(c.redis.host == "redis");
  CHECK(c.redis.port == 6000);
  CHECK(c.keys.pepper == "from-env");

  const Config defaults = default_config(environment);
  CHECK(defaults.mode == Mode::authz);
  CHECK(defaults.postgres.dsn == "host=pg");
  CHECK(defaults.keys.pepper == "from-env");
}

TEST_CASE("an empty KEYGATE_* variable is ignored") {
  const Config c = parse("keys:\n  pepper: from-file\n", {{"KEYGATE_PEPPER", ""}, {"KEYGATE_LISTEN", ""}});
  CHECK(c.keys.pepper == "from-file");
  CHECK(c.listen.port == 8080);
}

TEST_CASE("a bad KEYGATE_* value is an error naming the variable") {
  CHECK(error_of("", {{"KEYGATE_THREADS", "many"}}) ==
        "KEYGATE_THREADS: threads: expected auto or a whole number from 1 to 256, got \"many\"");
  CHECK(error_of("", {{"KEYGATE_LISTEN", "8080"}}) ==
        "KEYGATE_LISTEN: listen: expected host:port like 0.0.0.0:8080 or [::]:8080, got \"8080\"");
  CHECK(error_of("", {{"KEYGATE_MODE", "edge"}}) == "KEYGATE_MODE: mode: expected proxy or authz, got \"edge\"");
  CHECK(error_of("", {{"KEYGATE_REDIS_URL", "redis://:pw@host:0"}}) ==
        "KEYGATE_REDIS_URL: redis.url: port must be a number from 1 to 65535, got \"redis://***@host:0\"");
  CHECK_THROWS_WITH_AS(default_config({{"KEYGATE_UPSTREAM", "svc:80"}}),
                       "KEYGATE_UPSTREAM: upstream: expected http://host:port or https://host:port, got \"svc:80\"",
                       ConfigError);
}

TEST_CASE("process_environment reads the real environment") {
  ::setenv("KEYGATE_CONFIG_TEST_VAR", "a=b", 1);
  const auto environment = keygate::app::process_environment();
  ::unsetenv("KEYGATE_CONFIG_TEST_VAR");
  REQUIRE(environment.count("KEYGATE_CONFIG_TEST_VAR") == 1);
  CHECK(environment.at("KEYGATE_CONFIG_TEST_VAR") == "a=b");
}

}  // TEST_SUITE

TEST_CASE("redis.cluster names a cluster's seed nodes, with the nodes' credentials beside it") {
  using keygate::store::RedisEndpoint;
  const Config c = parse("redis:\n  cluster: [127.0.0.1:7000, \"[::1]:7001\", cache-2.internal:7002]\n"
                         "  username: keygate\n  password: ${REDIS_PASSWORD}\n  command_timeout: 80ms\n",
                         {{"REDIS_PASSWORD", "s3cret"}});
  REQUIRE(c.redis_cluster.size() == 3);
  CHECK(c.redis_cluster[0] == RedisEndpoint{"127.0.0.1", 7000});
  CHECK(c.redis_cluster[1] == RedisEndpoint{"::1", 7001});
  CHECK(c.redis_cluster[2] == RedisEndpoint{"cache-2.internal", 7002});
  CHECK(c.redis.username == "keygate");
  CHECK(c.redis.password == "s3cret");
  CHECK(c.redis.command_timeout == 80ms);
  CHECK(parse("redis:\n  cluster:\n    - 10.0.0.1:7000\n").redis_cluster.size() == 1);
  CHECK(parse("redis:\n  url: redis://cache:6379\n").redis_cluster.empty());
}

TEST_CASE("redis.cluster: a bad seed, a seed twice, or redis.url beside it is one line naming it") {
  CHECK(error_of("redis:\n  cluster: []\n") ==
        "config.yaml:2: redis.cluster: expected at least one seed node host:port, like [127.0.0.1:7000]");
  CHECK(error_of("redis:\n  cluster:\n") ==
        "config.yaml:2: redis.cluster: expected at least one seed node host:port, like [127.0.0.1:7000]");
  CHECK(error_of("redis:\n  cluster: 127.0.0.1:7000\n") ==
        "config.yaml:2: redis.cluster: expected a list like [a, b], got \"127.0.0.1:7000\"");
  CHECK(error_of("redis:\n  cluster: [127.0.0.1]\n") ==
        "config.yaml:2: redis.cluster[0]: expected host:port like 127.0.0.1:7000 or [::1]:7000, got \"127.0.0.1\"");
  CHECK(error_of("redis:\n  cluster:\n    - 127.0.0.1:7000\n    - 127.0.0.1:70000\n") ==
        "config.yaml:4: redis.cluster[1]: expected a port from 1 to 65535, got \"70000\"");
  CHECK(error_of("redis:\n  cluster: [\"::1:7000\"]\n") ==
        "config.yaml:2: redis.cluster[0]: IPv6 addresses need brackets, like [::1]:7000, got \"::1:7000\"");
  CHECK(error_of("redis:\n  cluster: [\"redis://:hunter2@h:7000\"]\n") ==
        "config.yaml:2: redis.cluster[0]: expected host:port (a seed node; credentials go in redis.username "
        "and redis.password), got \"redis://***@h:7000\"");
  CHECK(error_of("redis:\n  cluster: [a:7000, b:7000, a:7000]\n") ==
        "config.yaml:2: redis.cluster[2]: lists \"a:7000\" twice");
  CHECK(error_of("redis:\n  url: redis://cache:6379\n  cluster: [a:7000]\n") ==
        "config.yaml:3: redis.cluster: redis.url is set too (line 2); a cluster is named by its seed nodes "
        "alone: remove redis.url, and put its credentials in redis.username / redis.password");
  CHECK(error_of("redis:\n  cluster: [a:7000]\n  url: redis://cache:6379\n") ==
        "config.yaml:2: redis.cluster: redis.url is set too (line 3); a cluster is named by its seed nodes "
        "alone: remove redis.url, and put its credentials in redis.username / redis.password");
  CHECK(error_of("redis:\n  password: hunter2\n") ==
        "config.yaml:2: redis.password: is for redis.cluster; one server's credentials go in redis.url "
        "(redis://USER:PASSWORD@host:6379)");
  CHECK(error_of("redis:\n  cluster: [a:7000]\n  username: keygate\n") ==
        "config.yaml:3: redis.password: missing: redis.username needs a password");
}

TEST_CASE("KEYGATE_REDIS_CLUSTER and KEYGATE_REDIS_URL replace the file's Redis, one of them at a time") {
  using keygate::store::RedisEndpoint;
  // The environment's cluster replaces the file's one server, and that URL's credentials.
  const Config cluster = parse("redis:\n  url: redis://:filepw@cache:6379\n",
                               {{"KEYGATE_REDIS_CLUSTER", "10.0.0.1:7000, [::1]:7001"}});
  REQUIRE(cluster.redis_cluster.size() == 2);
  CHECK(cluster.redis_cluster[1] == RedisEndpoint{"::1", 7001});
  CHECK(cluster.redis.password.empty());
  // ...and the file's cluster, keeping the nodes' credentials.
  const Config seeds = parse("redis:\n  cluster: [a:7000]\n  password: pw\n",
                             {{"KEYGATE_REDIS_CLUSTER", "b:7000"}});
  REQUIRE(seeds.redis_cluster.size() == 1);
  CHECK(seeds.redis_cluster[0] == RedisEndpoint{"b", 7000});
  CHECK(seeds.redis.password == "pw");
  // The environment's one server replaces the file's cluster.
  const Config one = parse("redis:\n  cluster: [a:7000]\n", {{"KEYGATE_REDIS_URL", "redis://solo:6390"}});
  CHECK(one.redis_cluster.empty());
  CHECK(one.redis.host == "solo");
  CHECK(error_of("", {{"KEYGATE_REDIS_URL", "redis://solo:6390"}, {"KEYGATE_REDIS_CLUSTER", "a:7000"}}) ==
        "KEYGATE_REDIS_CLUSTER: redis.cluster: KEYGATE_REDIS_URL is set too; set one of them (one server, "
        "or a cluster's seed nodes)");
  CHECK(error_of("", {{"KEYGATE_REDIS_CLUSTER", "a:7000,,b:7000"}}) ==
        "KEYGATE_REDIS_CLUSTER: redis.cluster: expected host:port like 127.0.0.1:7000 or [::1]:7000, got nothing");
}

TEST_CASE("a changed redis.cluster needs a restart") {
  const Config a = parse("redis:\n  cluster: [a:7000]\n");
  const Config b = parse("redis:\n  cluster: [a:7000, b:7000]\n");
  const auto names = keygate::app::options_needing_restart(a, b);
  CHECK(std::find(names.begin(), names.end(), "redis") != names.end());
}
