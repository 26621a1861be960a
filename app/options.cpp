// Config -> each part's options (see options.hpp).
#include "app/options.hpp"

#include "authz/rate_policy.hpp"

#include <algorithm>
#include <cstdio>
#include <thread>

namespace keygate::app {

unsigned worker_count(const Config& config) {
  if (config.threads != 0) return config.threads;
  return std::max(1u, std::thread::hardware_concurrency());
}

proxy::ProxyOptions proxy_options(const Config& config) {
  const Config::Limits& limits = config.limits;
  return proxy::ProxyOptions{
      .mode = config.mode,
      .listen_host = config.listen.host,
      .listen_port = config.listen.port,
      .admin_host = config.admin_listen.host,
      .admin_port = config.admin_listen.port,
      .upstream_host = config.upstream.host,
      .upstream_port = config.upstream.port,
      .tls = config.tls,
      .upstream_tls = {.enabled = config.upstream.scheme == UpstreamConfig::Scheme::https,
                       .verify = config.upstream_tls.verify,
                       .ca_file = config.upstream_tls.ca_file,
                       .server_name = config.upstream_tls.server_name},
      .access_log = config.access_log,
      .threads = worker_count(config),
      .credential_headers = config.keys.headers,
      .credential_query_parameter = config.keys.query_parameter,
      .hide_credentials = config.keys.hide_credentials,
      .trusted_proxies = config.trusted_proxies,
      .max_header_bytes = limits.max_header_bytes,
      .max_body_bytes = limits.max_body_bytes,
      .header_timeout = limits.header_timeout,
      .body_timeout = limits.body_timeout,
      .idle_timeout = limits.idle_timeout,
      .upstream_connect_timeout = limits.upstream_connect_timeout,
      .upstream_response_timeout = limits.upstream_response_timeout,
      .shutdown_timeout = config.shutdown_timeout,
      .max_connections = limits.max_connections,
      .upstream_pool_size = limits.upstream_pool_size,
  };
}

std::shared_ptr<const authz::AuthorizerSettings> authorizer_settings(const Config& config) {
  auto settings = std::make_shared<authz::AuthorizerSettings>();
  settings->pepper = config.keys.pepper;
  settings->routes = authz::RouteTable(config.routes);
  settings->routes_default = config.routes_default;
  settings->on_store_error = config.on_store_error;
  if (config.store.schema == Config::Store::Schema::custom) settings->key_text = config.store.custom.key_text;
  return settings;
}

authz::RateLimiterOptions rate_limiter_options(const Config& config) {
  authz::RateLimiterOptions o;
  o.default_limit = config.rate_limit.default_limit;
  o.on_redis_error = config.rate_limit.on_redis_error;
  o.replicas = config.rate_limit.replicas;
  o.lease = config.rate_limit.lease;
  if (config.store.schema == Config::Store::Schema::custom) {
    // The table and which database holds it (a hash of the DSN, so two services whose tables
    // share a name and a Redis keep their counters apart; the DSN itself is never written).
    char database[17];
    std::snprintf(database, sizeof database, "%016llx",
                  static_cast<unsigned long long>(authz::fnv1a(authz::fnv1a_basis, config.postgres.dsn)));
    o.key_namespace = "c:" + config.store.custom.table + "@" + database + ":";
  }
  return o;
}

store::L1Cache::Options l1_cache_options(const Config& config) {
  return {config.cache.max_entries, config.cache.ttl, config.cache.negative_ttl};
}

store::UsageWriterOptions usage_writer_options(const Config& config, const store::ResolvedSchema* key_table) {
  store::UsageWriterOptions o;
  o.dsn = config.postgres.dsn;
  o.connect_timeout = config.postgres.connect_timeout;
  // COPY batches are larger than key lookups: at least 5 s, whatever the lookup timeout.
  o.query_timeout = std::max(config.postgres.query_timeout, std::chrono::milliseconds(5000));
  o.batch_size = config.usage.batch_size;
  o.flush_interval = config.usage.flush_interval;
  o.queue_size = config.usage.queue_size;
  o.spill_path = config.usage.spill_path;
  o.last_used_interval = config.usage.last_used_interval;
  o.retention_days = config.usage.retention_days;
  if (key_table != nullptr) {
    const store::CustomSchema& s = key_table->schema;
    o.custom = store::CustomUsageTarget{s.table, s.id_column, key_table->id_type, s.last_used_column,
                                        key_table->last_used_type, s.usage_table};
  }
  return o;
}

store::PgOptions postgres_options(const Config& config, unsigned workers) {
  const unsigned sharing = std::max(1u, workers);
  const unsigned share = (config.postgres.pool_size + sharing - 1) / sharing;
  return {config.postgres.dsn, std::max(1u, share), config.postgres.connect_timeout,
          config.postgres.query_timeout};
}

}  // namespace keygate::app
