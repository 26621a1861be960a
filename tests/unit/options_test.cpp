// app/options: the typed Config arranged as each part's options, with nothing parsed again.
#include <doctest/doctest.h>

#include "app/config.hpp"
#include "app/options.hpp"

namespace {

using keygate::app::Config;
using keygate::app::parse_config;
using namespace std::chrono_literals;

Config parse(const std::string& yaml) { return parse_config(yaml, "config.yaml", {}); }

}  // namespace

TEST_SUITE("config options") {

TEST_CASE("proxy_options carries the listeners, upstream, credentials, networks and limits") {
  const Config c = parse(R"(mode: authz
listen: 127.0.0.1:7000
admin_listen: "[::1]:7001"
upstream: https://api.internal
threads: 3
keys: { headers: [X-Key], query_parameter: api_key, hide_credentials: false }
trusted_proxies: [10.0.0.0/8, "::1"]
upstream_tls: { verify: false, server_name: api.example }
access_log: { mode: all, path: stdout }
tls: { min_version: "1.3" }
limits: { max_header_bytes: 4096, body_timeout: 7s, idle_timeout: 5s, upstream_pool_size: 0 }
shutdown_timeout: 2s
)");
  const keygate::proxy::ProxyOptions o = keygate::app::proxy_options(c);
  CHECK(o.mode == keygate::proxy::ProxyOptions::Mode::authz);
  CHECK(o.listen_host == "127.0.0.1");
  CHECK(o.listen_port == 7000);
  CHECK(o.admin_host == "::1");
  CHECK(o.admin_port == 7001);
  CHECK(o.upstream_host == "api.internal");
  CHECK(o.upstream_port == 443);
  CHECK(o.upstream_tls.enabled);
  CHECK_FALSE(o.upstream_tls.verify);
  CHECK(o.upstream_tls.server_name == "api.example");
  CHECK(o.tls.min_version == keygate::proxy::TlsOptions::Version::tls1_3);
  CHECK(o.access_log.mode == keygate::proxy::AccessLogOptions::Mode::all);
  CHECK(o.access_log.path == "stdout");
  CHECK(o.threads == 3);
  CHECK(o.credential_headers == std::vector<std::string>{"x-key"});
  CHECK(o.credential_query_parameter == "api_key");
  CHECK_FALSE(o.hide_credentials);
  REQUIRE(o.trusted_proxies.size() == 2);
  CHECK(o.trusted_proxies[0].to_string() == "10.0.0.0/8");
  CHECK(o.trusted_proxies[1].to_string() == "::1/128");
  CHECK(o.max_header_bytes == 4096);
  CHECK(o.body_timeout == 7s);
  CHECK(o.idle_timeout == 5s);
  CHECK(o.upstream_pool_size == 0);
  CHECK(o.shutdown_timeout == 2s);
  CHECK_FALSE(keygate::app::proxy_options(parse("")).upstream_tls.enabled);  // http://
}

TEST_CASE("authorizer_settings: the routes, routes_default, on_store_error and the pepper") {
  const Config c = parse(R"(keys: { pepper: p }
routes:
  - { path: /cache/*, methods: [PURGE, GET], scopes: [cache:write], rate_limit: 5/1s }
routes_default: key
on_store_error: open
)");
  const auto settings = keygate::app::authorizer_settings(c);
  CHECK(settings->pepper == "p");
  CHECK(settings->routes_default == keygate::authz::RoutesDefault::key);
  CHECK(settings->on_store_error == keygate::authz::OnStoreError::open);
  REQUIRE(settings->routes.routes().size() == 1);
  const keygate::authz::Route& route = settings->routes.routes()[0];
  CHECK(route.pattern == "/cache/*");
  CHECK(route.scopes == std::vector<std::string>{"cache:write"});
  REQUIRE(route.rate_limit.has_value());
  CHECK(route.rate_limit->limit == 5);
  const auto defaults = keygate::app::authorizer_settings(parse(""));
  CHECK(defaults->routes_default == keygate::authz::RoutesDefault::deny);
  CHECK(defaults->on_store_error == keygate::authz::OnStoreError::closed);
}

TEST_CASE("rate limiter, cache and usage writer options come from their sections") {
  const Config c = parse(R"(rate_limit: { default: 7/10s, on_redis_error: error, replicas: 3, lease: 9 }
cache: { ttl: 2s, negative_ttl: 1s, max_entries: 50 }
postgres: { dsn: host=db, query_timeout: 1s, connect_timeout: 4s }
usage: { batch_size: 10, spill_path: /tmp/spill, retention_days: 2 }
)");
  const keygate::authz::RateLimiterOptions limiter = keygate::app::rate_limiter_options(c);
  CHECK(limiter.default_limit == keygate::core::RateLimitSpec{7, 10});
  CHECK(limiter.on_redis_error == keygate::authz::OnRedisError::error);
  CHECK(limiter.replicas == 3);
  CHECK(limiter.lease == 9);
  const keygate::store::L1Cache::Options l1 = keygate::app::l1_cache_options(c);
  CHECK(l1.ttl == 2s);
  CHECK(l1.negative_ttl == 1s);
  CHECK(l1.max_entries == 50);
  const keygate::store::UsageWriterOptions usage = keygate::app::usage_writer_options(c);
  CHECK(usage.dsn == "host=db");
  CHECK(usage.connect_timeout == 4s);
  CHECK(usage.query_timeout == 5s);  // COPY gets at least 5 s
  CHECK(usage.batch_size == 10);
  CHECK(usage.spill_path == "/tmp/spill");
  CHECK(usage.retention_days == 2);
}

TEST_CASE("postgres_options gives each worker its share of the process's pool, at least 1") {
  const Config c = parse("postgres: { pool_size: 5 }\n");
  CHECK(keygate::app::postgres_options(c, 1).pool_size == 5);
  CHECK(keygate::app::postgres_options(c, 2).pool_size == 3);
  CHECK(keygate::app::postgres_options(c, 8).pool_size == 1);
  CHECK(keygate::app::postgres_options(c, 0).pool_size == 5);
  CHECK(keygate::app::postgres_options(c, 2).dsn == c.postgres.dsn);
  CHECK(keygate::app::worker_count(parse("threads: 4\n")) == 4);
  CHECK(keygate::app::worker_count(parse("threads: auto\n")) >= 1);
}

}  // TEST_SUITE
