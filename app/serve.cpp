// `keygate serve`: the composition root. Reads the validated Config into each part's options,
// builds the parts for every worker thread, wires them, and runs the server until SIGTERM.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>

#include <atomic>
#include <cstdio>
#include <memory>
#include <thread>

#include "app/commands.hpp"
#include "core/log.hpp"
#include "authz/key_authorizer.hpp"
#include "authz/rate_limiter.hpp"
#include "proxy/server.hpp"
#include "store/key_change_listener.hpp"
#include "store/key_lookup.hpp"
#include "store/key_repository.hpp"
#include "store/l1_cache.hpp"
#include "store/pg_pool.hpp"
#include "store/quota_ledger.hpp"
#include "store/redis_client.hpp"
#include "store/redis_key_cache.hpp"
#include "store/redis_rate_counter.hpp"
#include "store/usage_queue.hpp"
#include "store/usage_writer.hpp"

namespace keygate::app {
namespace asio = boost::asio;

namespace {

// Everything one worker thread has below the proxy, built on that worker's io_context and
// owned by the server (proxy::WorkerStack), which destroys it after the worker's requests.
// Members are destroyed bottom-up: each only after what uses it.
struct WorkerStores final : proxy::WorkerStack {
  // The last flush of quota counts, before the server destroys the stores.
  asio::awaitable<void> finish() override {
    quota_ledger->stop();
    co_await quota_ledger->flush();
    if (const std::size_t left = quota_ledger->pending(); left > 0) {
      core::log_warn("quota counts not written at shutdown", {{"keys", left}});
    }
  }

  asio::io_context* io = nullptr;
  std::unique_ptr<store::RedisClient> redis;
  std::unique_ptr<store::RedisKeyCache> redis_cache;
  std::unique_ptr<store::PgPool> pg;
  std::unique_ptr<store::KeyRepository> repository;
  std::unique_ptr<store::PgKeySource> key_source;
  std::unique_ptr<store::KeyLookup> lookup;
  std::unique_ptr<store::PgQuotaLedger> quota_ledger;  // before rate_counter, which uses it
  std::unique_ptr<store::RedisRateCounter> rate_counter;
  std::unique_ptr<authz::RateLimiter> limiter;
  std::unique_ptr<authz::KeyAuthorizer> authorizer;  // settings swapped on SIGHUP
};

unsigned worker_count(const Config& config) {
  if (config.threads != 0) return config.threads;
  return std::max(1u, std::thread::hardware_concurrency());
}

proxy::TlsOptions tls_options(const Config& config) {
  proxy::TlsOptions o;
  o.cert_file = config.tls.cert_file;
  o.key_file = config.tls.key_file;
  o.min_version = config.tls.min_version == "1.3" ? proxy::TlsOptions::Version::tls1_3
                                                  : proxy::TlsOptions::Version::tls1_2;
  return o;
}

proxy::AccessLogOptions access_log_options(const Config& config) {
  proxy::AccessLogOptions o;
  o.mode = config.access_log.mode == "all"       ? proxy::AccessLogOptions::Mode::all
           : config.access_log.mode == "sampled" ? proxy::AccessLogOptions::Mode::sampled
                                                 : proxy::AccessLogOptions::Mode::off;
  o.sample_rate = config.access_log.sample_rate;
  o.path = config.access_log.path;
  return o;
}

proxy::ProxyOptions proxy_options(const Config& config) {
  proxy::ProxyOptions o;
  o.mode = config.mode == "authz" ? proxy::ProxyOptions::Mode::authz : proxy::ProxyOptions::Mode::proxy;
  o.listen_host = config.listen.host;
  o.listen_port = config.listen.port;
  o.admin_host = config.admin_listen.host;
  o.admin_port = config.admin_listen.port;
  o.upstream_host = config.upstream.host;
  o.upstream_port = config.upstream.port;
  o.tls = tls_options(config);
  o.upstream_tls.enabled = config.upstream.scheme == "https";
  o.upstream_tls.verify = config.upstream_tls.verify;
  o.upstream_tls.ca_file = config.upstream_tls.ca_file;
  o.upstream_tls.server_name = config.upstream_tls.server_name;
  o.access_log = access_log_options(config);
  o.threads = worker_count(config);
  o.credential_headers = config.keys.headers;
  o.credential_query_parameter = config.keys.query_parameter;
  o.hide_credentials = config.keys.hide_credentials;
  for (const std::string& cidr : config.trusted_proxies) {
    if (auto network = core::IpNetwork::parse(cidr)) o.trusted_proxies.push_back(*network);
  }
  o.max_header_bytes = config.limits.max_header_bytes;
  o.max_body_bytes = config.limits.max_body_bytes;
  o.header_timeout = config.limits.header_timeout;
  o.idle_timeout = config.limits.idle_timeout;
  o.upstream_connect_timeout = config.limits.upstream_connect_timeout;
  o.upstream_response_timeout = config.limits.upstream_response_timeout;
  o.shutdown_timeout = config.shutdown_timeout;
  o.max_connections = config.limits.max_connections;
  o.upstream_pool_size = config.limits.upstream_pool_size;
  return o;
}

std::shared_ptr<const authz::AuthorizerSettings> authorizer_settings(const Config& config) {
  auto settings = std::make_shared<authz::AuthorizerSettings>();
  settings->pepper = config.keys.pepper;
  settings->routes_default =
      config.routes_default == "key" ? authz::RoutesDefault::key : authz::RoutesDefault::deny;
  settings->on_store_error =
      config.on_store_error == "open" ? authz::OnStoreError::open : authz::OnStoreError::closed;
  std::vector<authz::Route> routes;
  for (const RouteConfig& rc : config.routes) {
    authz::Route route;
    route.pattern = rc.path;
    route.methods = rc.methods;
    route.scopes = rc.scopes;
    route.is_public = rc.is_public;
    if (rc.rate_limit) route.rate_limit = core::RateLimitSpec{rc.rate_limit->limit, rc.rate_limit->window_seconds};
    routes.push_back(std::move(route));
  }
  settings->routes = authz::RouteTable(std::move(routes));
  return settings;
}

authz::RateLimiterOptions rate_limiter_options(const Config& config) {
  authz::RateLimiterOptions o;
  o.default_limit = {config.rate_limit.default_limit.limit, config.rate_limit.default_limit.window_seconds};
  const auto on_error = authz::parse_on_redis_error(config.rate_limit.on_redis_error);
  if (!on_error) throw ConfigError("rate_limit.on_redis_error: expected local or error");
  o.on_redis_error = *on_error;
  o.replicas = config.rate_limit.replicas;
  o.lease = config.rate_limit.lease;
  return o;
}

store::UsageWriterOptions usage_writer_options(const Config& config) {
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
  return o;
}

store::RedisOptions redis_options(const Config& config) {
  std::string error;
  std::optional<store::RedisOptions> options = store::parse_redis_url(config.redis.url, &error);
  if (!options) throw ConfigError("redis.url: " + error);
  options->connect_timeout = config.redis.connect_timeout;
  options->command_timeout = config.redis.command_timeout;
  return *options;
}

}  // namespace

int run_serve(const Config& config, Args args) {
  for (const std::string& arg : args) throw UsageError("serve: unexpected argument '" + arg + "'");

  const store::RedisOptions redis_opts = redis_options(config);
  const unsigned threads = worker_count(config);
  store::PgOptions pg_opts;
  pg_opts.dsn = config.postgres.dsn;
  // postgres.pool_size is for the whole process; each worker gets its share.
  pg_opts.pool_size = std::max(1u, (config.postgres.pool_size + threads - 1) / threads);
  pg_opts.connect_timeout = config.postgres.connect_timeout;
  pg_opts.query_timeout = config.postgres.query_timeout;

  // The usage log: one queue shard per worker, one writer thread (declared before the server,
  // which calls into the queue until it stops).
  std::unique_ptr<store::UsageQueue> usage_queue;
  std::unique_ptr<store::UsageWriter> usage_writer;
  if (config.usage.enabled) {
    usage_queue = std::make_unique<store::UsageQueue>(threads, config.usage.queue_size);
    usage_writer = std::make_unique<store::UsageWriter>(usage_writer_options(config), *usage_queue);
    usage_writer->start();
  }

  store::L1Cache l1({config.cache.max_entries, config.cache.ttl, config.cache.negative_ttl});
  const auto settings = authorizer_settings(config);
  const authz::RateLimiterOptions limiter_opts = rate_limiter_options(config);
  std::vector<WorkerStores*> workers(threads);  // owned by the server, valid while it exists

  auto make_worker = [&](asio::io_context& io, unsigned index) {
    auto w = std::make_unique<WorkerStores>();
    w->io = &io;
    w->redis = std::make_unique<store::RedisClient>(io.get_executor(), redis_opts);
    w->redis->start();
    w->redis_cache = std::make_unique<store::RedisKeyCache>(io.get_executor(), *w->redis,
                                                            config.cache.redis_ttl);
    w->pg = std::make_unique<store::PgPool>(io.get_executor(), pg_opts);
    w->repository = std::make_unique<store::KeyRepository>(*w->pg);
    w->key_source = std::make_unique<store::PgKeySource>(*w->repository);
    w->lookup = std::make_unique<store::KeyLookup>(io.get_executor(), l1, w->redis_cache.get(),
                                                   *w->key_source);
    w->quota_ledger = std::make_unique<store::PgQuotaLedger>(io.get_executor(), *w->pg);
    w->quota_ledger->start();
    w->rate_counter = std::make_unique<store::RedisRateCounter>(*w->redis, w->quota_ledger.get());
    w->limiter = std::make_unique<authz::RateLimiter>(limiter_opts, w->rate_counter.get());
    w->authorizer = std::make_unique<authz::KeyAuthorizer>(settings, *w->lookup, *w->limiter);
    proxy::WorkerServices services;
    services.authorizer = w->authorizer.get();
    if (usage_queue) {
      // The logging phase: one event per request whose key was identified, passed or not.
      services.on_completed = [queue = usage_queue.get(), index](const proxy::CompletedRequest& done) {
        if (done.auth == nullptr || !done.auth->key) return;
        store::UsageFacts facts;
        facts.key_id = done.auth->key->id;
        facts.method = done.method;
        facts.endpoint = done.path;
        facts.user_agent = done.user_agent;
        facts.client_ip = done.client_ip;
        facts.status = done.status;
        facts.duration = done.duration;
        queue->record(index, facts);
      };
    }
    workers[index] = w.get();
    services.stack = std::move(w);
    return services;
  };

  std::unique_ptr<store::KeyChangeListener> listener;
  auto is_ready = [&]() {
    // Ready when a store answers: PostgreSQL (its LISTEN connection is up) or Redis.
    return (listener && listener->listening()) || workers[0]->redis->connected();
  };

  proxy::Server server(proxy_options(config), make_worker, is_ready);
  server.listen();

  // Revocation: drop the key from L1 and mark it in Redis (store::forget_key; the record
  // there would otherwise live on until its TTL); after a reconnect, drop all of L1.
  WorkerStores& main_worker = *workers[0];
  listener = std::make_unique<store::KeyChangeListener>(
      server.main_context().get_executor(), config.postgres.dsn, config.postgres.connect_timeout,
      [&l1, &main_worker](const store::KeyHash& hash) {
        asio::co_spawn(*main_worker.io, store::forget_key(l1, main_worker.redis_cache.get(), hash),
                       asio::detached);
      },
      [&l1]() { l1.invalidate_all(); });
  listener->start();

  // ==== reload on SIGHUP (issue #7) =============================================================
  // Re-reads the file the process started with. Applied: routes, tls.* (the files
  // are re-read, for certificate rotation) and access_log.* (the file is reopened, for log
  // rotation). Options that need a restart keep their running value and are named in the log.
  // An invalid file changes nothing. Open connections are never touched.
  Config running = config;
  server.on_reload([&]() -> bool {
    Config next;
    std::shared_ptr<const authz::AuthorizerSettings> next_settings;
    try {
      next = load_config_file(config.source, process_environment());
      next_settings = authorizer_settings(next);
    } catch (const std::exception& e) {
      core::log_error("reload rejected, the running configuration is kept", {{"error", e.what()}});
      return false;
    }
    if (next.keys.pepper != running.keys.pepper) {
      // Every stored hash was made with the running pepper: a new one would turn every key
      // into an unknown key at once. Refused as a whole, so nothing changes half-way.
      core::log_error("reload rejected, the running configuration is kept",
                      {{"error", "keys.pepper changed: a new pepper makes every existing key "
                                 "invalid; restart keygate to change it"}});
      return false;
    }
    const std::vector<std::string> restart = options_needing_restart(running, next);
    if (running.tls.cert_file.empty() == next.tls.cert_file.empty()) {
      if (std::string error = server.reload_tls(tls_options(next)); !error.empty()) {
        core::log_error("reload rejected, the running configuration is kept", {{"error", error}});
        return false;
      }
      running.tls = next.tls;
    }
    if (std::string error = server.reload_access_log(access_log_options(next)); !error.empty()) {
      core::log_error("reload partly applied: the access log keeps its settings", {{"error", error}});
      return false;
    }
    running.access_log = next.access_log;
    server.post_to_workers([&workers, next_settings](unsigned index) {
      workers[index]->authorizer->update_settings(next_settings);
    });
    running.routes = next.routes;
    std::string kept;
    for (const std::string& name : restart) kept += (kept.empty() ? "" : ", ") + name;
    if (!kept.empty()) core::log_warn("changed options need a restart; kept as running", {{"options", kept}});
    core::log_info("configuration reloaded", {{"routes", next.routes.size()}});
    return true;
  });
  // ==== end of reload on SIGHUP ===================================================================

  core::log_info("keygate serving",
           {{"mode", config.mode},
            {"listen", config.listen.host + ":" + std::to_string(server.port())},
            {"admin", config.admin_listen.host + ":" + std::to_string(server.admin_port())},
            {"threads", threads},
            {"tls", config.tls.cert_file.empty() ? "off" : "on"}});
  // Returns once every request has finished, or was cut at shutdown_timeout, and each
  // worker's stores had their last flush (WorkerStores::finish).
  server.run();
  // The usage log gets what is left of shutdown_timeout, at least a second for its last
  // batch; what it cannot write by then goes to the spill file.
  if (usage_writer) {
    const auto last_batch = std::chrono::milliseconds(1000);
    usage_writer->stop_and_drain(std::max(server.shutdown_time_left(), last_batch));
  }
  listener->stop();
  core::log_info("keygate stopped");
  // ~Server: the requests still suspended are destroyed, then each worker's stores.
  return exit_ok;
}

}  // namespace keygate::app
