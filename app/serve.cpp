// `keygate serve`: the composition root. Takes each part's options from the validated Config
// (app/options.hpp), builds the parts for every worker thread, wires them, and runs the server
// until SIGTERM.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>

#include <sys/resource.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>

#include "api/api_server.hpp"
#include "app/cli_args.hpp"
#include "app/commands.hpp"
#include "app/config_values.hpp"
#include "app/key_table.hpp"
#include "app/options.hpp"
#include "core/log.hpp"
#include "authz/key_authorizer.hpp"
#include "authz/leak_report.hpp"
#include "authz/rate_limiter.hpp"
#include "proxy/server.hpp"
#include "store/custom_key_source.hpp"
#include "store/custom_schema.hpp"
#include "store/key_change_listener.hpp"
#include "store/key_lookup.hpp"
#include "store/key_repository.hpp"
#include "store/l1_cache.hpp"
#include "store/pg_pool.hpp"
#include "store/quota_ledger.hpp"
#include "store/redis_client.hpp"
#include "store/redis_cluster.hpp"
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
  std::unique_ptr<store::RedisCommands> redis;  // one server, or a cluster
  std::unique_ptr<store::RedisKeyCache> redis_cache;
  std::unique_ptr<store::PgPool> pg;
  std::unique_ptr<store::KeyRepository> repository;
  std::unique_ptr<store::KeySource> key_source;  // api_keys, or the operator's own table
  std::unique_ptr<store::KeyLookup> lookup;
  std::unique_ptr<store::PgQuotaLedger> quota_ledger;  // before rate_counter, which uses it
  std::unique_ptr<store::RedisRateCounter> rate_counter;
  std::unique_ptr<authz::RateLimiter> limiter;
  std::unique_ptr<authz::KeyAuthorizer> authorizer;  // settings swapped on SIGHUP
};

// store.revocation: poll: the custom table's change signature, every poll_interval (else LISTEN).
store::KeyChangeListener::Poll change_poll(const Config& config, const store::ResolvedSchema* key_table) {
  if (key_table == nullptr || config.store.revocation != Config::Store::Revocation::poll) return {};
  return {store::change_signature_statement(*key_table),
          std::chrono::duration_cast<std::chrono::milliseconds>(config.store.poll_interval)};
}

// Configurations that refuse more than their author probably meant: said once, at startup.
void warn_about_refusals(const Config& config) {
  if (config.routes.empty() && config.routes_default == authz::RoutesDefault::deny) {
    core::log_warn("no routes and routes_default: deny: every request is refused with 403 "
                   "no_route; add routes, or set routes_default: key");
  }
  if (config.mode == proxy::ProxyOptions::Mode::authz && config.trusted_proxies.empty()) {
    core::log_warn("mode authz with no trusted_proxies: X-Original-* and X-Forwarded-* are "
                   "ignored, so each request is judged by its own method and target; list the "
                   "proxies that call keygate (nginx, Traefik) in trusted_proxies");
  }
}

// Descriptors beyond the client connections: the stores, the listeners, the logs, the pooled
// upstream connections (added per worker), connections being turned away.
constexpr std::uint64_t descriptor_reserve = 256;

// Every client connection is a descriptor: the soft RLIMIT_NOFILE (often 1024) is raised to
// the hard limit, as Go and HAProxy do at startup. One warning line when max_connections and
// the reserve do not fit in what is allowed then: accept would fail with EMFILE, and clients
// wait in the listen queue. (A request being forwarded holds an upstream connection too; the
// worst case, every connection forwarding at once, needs twice max_connections.)
void raise_descriptor_limit(const Config& config, unsigned threads) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) {
      limit = raised;
    } else {
      core::log_warn("could not raise the open file limit (RLIMIT_NOFILE)",
                     {{"soft", limit.rlim_cur}, {"hard", limit.rlim_max},
                      {"error", std::strerror(errno)}});
    }
  }
  const std::uint64_t needed = config.limits.max_connections + descriptor_reserve +
                               std::uint64_t{threads} * config.limits.upstream_pool_size;
  if (limit.rlim_cur != RLIM_INFINITY && needed > limit.rlim_cur) {
    core::log_warn("limits.max_connections does not fit in the open file limit (RLIMIT_NOFILE): "
                   "beyond it, accepting fails and clients wait; raise the limit (ulimit -n, "
                   "LimitNOFILE=) or lower max_connections",
                   {{"max_connections", config.limits.max_connections},
                    {"descriptors_needed", needed},
                    {"open_file_limit", limit.rlim_cur}});
  }
}

}  // namespace

int run_serve(const Config& config, Args args) {
  for (const std::string& arg : args) throw UsageError("serve: unexpected argument " + quoted_argument(arg));

  const store::RedisOptions& redis_opts = config.redis;
  const store::RedisClusterOptions redis_cluster_opts{config.redis_cluster, config.redis};
  const unsigned threads = worker_count(config);
  raise_descriptor_limit(config, threads);
  const store::PgOptions pg_opts = postgres_options(config, threads);

  const bool custom_table = config.store.schema == Config::Store::Schema::custom;
  std::shared_ptr<const store::ResolvedSchema> key_table;
  std::unique_ptr<store::BcryptVerifier> bcrypt;
  if (custom_table) {
    key_table = resolve_key_table(config);
    const store::CustomSchema& table = key_table->schema;
    if (table.encoding == store::CredentialEncoding::plain) {
      core::log_warn("store.credential.encoding: plain: the table holds the keys themselves, so anyone "
                     "who can read it (a backup, a replica, a log of queries) holds every key; keygate "
                     "caches only their SHA-256. Move to sha256-hex or hmac-sha256 when you can",
                     {{"table", table.table}, {"column", table.credential_column}});
    }
    core::log_info("key table: custom",
                   {{"table", table.table}, {"preset", config.store.preset.empty() ? "none" : config.store.preset},
                    {"encoding", store::name_of(table.encoding)},
                    {"revocation", config.store.revocation == Config::Store::Revocation::poll
                                       ? "poll every " + std::to_string(config.store.poll_interval.count()) + " ms"
                                       : std::string("notify")}});
    // One bcrypt at a time per core beside the workers; 256 waiting at most (then 503).
    if (key_table->schema.encoding == store::CredentialEncoding::bcrypt) {
      bcrypt = std::make_unique<store::BcryptVerifier>(std::max(1u, threads / 2), 256);
    }
  }

  // The usage log: one queue shard per worker, one writer thread (declared before the server,
  // which calls into the queue until it stops). A custom table gets rows only where the
  // mapping names a usage table or a last-used column.
  std::unique_ptr<store::UsageQueue> usage_queue;
  std::unique_ptr<store::UsageWriter> usage_writer;
  const bool usage_has_a_target =
      !custom_table || !key_table->schema.usage_table.empty() || !key_table->schema.last_used_column.empty();
  if (config.usage.enabled && usage_has_a_target) {
    usage_queue = std::make_unique<store::UsageQueue>(threads, config.usage.queue_size);
    usage_writer = std::make_unique<store::UsageWriter>(usage_writer_options(config, key_table.get()), *usage_queue);
    usage_writer->start();
  }

  store::L1Cache l1(l1_cache_options(config));
  const auto settings = authorizer_settings(config);
  const authz::RateLimiterOptions limiter_opts = rate_limiter_options(config);
  std::vector<WorkerStores*> workers(threads);  // owned by the server, valid while it exists

  auto make_worker = [&](asio::io_context& io, unsigned index) {
    auto w = std::make_unique<WorkerStores>();
    w->io = &io;
    if (config.redis_cluster.empty()) {
      w->redis = std::make_unique<store::RedisClient>(io.get_executor(), redis_opts);
    } else {
      w->redis = std::make_unique<store::RedisClusterClient>(io.get_executor(), redis_cluster_opts);
    }
    w->redis->start();
    w->redis_cache = std::make_unique<store::RedisKeyCache>(io.get_executor(), *w->redis,
                                                            config.cache.redis_ttl);
    w->pg = std::make_unique<store::PgPool>(io.get_executor(), pg_opts);
    w->repository = std::make_unique<store::KeyRepository>(*w->pg);
    if (custom_table) {
      w->key_source = std::make_unique<store::CustomKeySource>(*w->pg, key_table, config.keys.pepper,
                                                               bcrypt.get());
    } else {
      w->key_source = std::make_unique<store::PgKeySource>(*w->repository);
    }
    // A custom table's records live in L1 alone, not in Redis: its notices (or a changed poll
    // signature) cannot name a cached key, so the listener drops L1 whole, which Redis could
    // not follow. Without the trigger or a poll, a revoked key is dropped within cache.ttl.
    w->lookup = std::make_unique<store::KeyLookup>(io.get_executor(), l1,
                                                   custom_table ? nullptr : w->redis_cache.get(),
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

  // The key-management API (api_listen) runs on worker 0, with its repository and authorizer.
  api::ApiServices api_services;
  proxy::Server server(proxy_options(config), make_worker, is_ready);
  std::unique_ptr<authz::LeakKeys> leak_keys;
  if (config.api_listen) {
    api_services.repository = workers[0]->repository.get();
    api_services.pool = workers[0]->pg.get();
    api_services.verifier = workers[0]->authorizer.get();
    api_services.key_prefix = config.keys.prefix;
    api_services.pepper = config.keys.pepper;
    api_services.rules.scope_vocabulary = config.api.scopes;
    if (!config.api.leaks.public_keys_file.empty()) {
      // Read again (config validation read it once): a file that became unreadable or invalid
      // since stops keygate with the reason.
      authz::LeakKeysParse parsed = configuration::read_leak_keys(config.api.leaks.public_keys_file);
      if (!parsed.ok()) {
        throw std::runtime_error("api.leaks.public_keys_file: " + config.api.leaks.public_keys_file + ": " + parsed.error);
      }
      leak_keys = std::make_unique<authz::LeakKeys>(std::move(parsed.keys));
      api_services.leak_keys = leak_keys.get();
      api_services.leak_action_revoke = config.api.leaks.action == Config::Api::Leaks::Action::revoke;
    }
    if (config.tls.enabled()) api_services.tls_context = [&server] { return server.worker_tls_context(); };
    server.add_listener("api listen", config.api_listen->host, config.api_listen->port,
                        [&api_services](asio::ip::tcp::acceptor& acceptor) {
                          return api::serve_api(acceptor, api_services);
                        });
  }
  server.listen();

  // Revocation: drop the key from L1 and mark it in Redis (store::forget_key; the record
  // there would otherwise live on until its TTL); after a reconnect, drop all of L1.
  WorkerStores& main_worker = *workers[0];
  listener = std::make_unique<store::KeyChangeListener>(
      server.main_context().get_executor(), config.postgres.dsn, config.postgres.connect_timeout,
      [&l1, &main_worker, redis_ttl = config.cache.redis_ttl](const store::KeyHash& hash) {
        asio::co_spawn(*main_worker.io,
                       store::forget_key(l1, main_worker.redis_cache.get(), hash, redis_ttl),
                       asio::detached);
      },
      [&l1]() { l1.invalidate_all(); },
      custom_table ? store::KeyChangeListener::Table::custom : store::KeyChangeListener::Table::native,
      change_poll(config, key_table.get()));
  listener->start();

  // ==== reload on SIGHUP (issue #7) =============================================================
  // Re-reads the file the process started with. Applied: routes, routes_default,
  // on_store_error, tls.* (the files are re-read, for certificate rotation) and access_log.*
  // (the file is reopened, for log rotation). Options that need a restart keep their running
  // value and are named in the log. An invalid file, or one that changes keys.pepper
  // (reload_refusal), changes nothing. Open connections are never touched.
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
    if (std::string refusal = reload_refusal(running, next); !refusal.empty()) {
      core::log_error("reload rejected, the running configuration is kept", {{"error", refusal}});
      return false;
    }
    const std::vector<std::string> restart = options_needing_restart(running, next);
    if (running.tls.enabled() == next.tls.enabled()) {
      if (std::string error = server.reload_tls(next.tls); !error.empty()) {
        core::log_error("reload rejected, the running configuration is kept", {{"error", error}});
        return false;
      }
      running.tls = next.tls;
    }
    if (std::string error = server.reload_access_log(next.access_log); !error.empty()) {
      core::log_error("reload partly applied: the access log keeps its settings", {{"error", error}});
      return false;
    }
    running.access_log = next.access_log;
    server.post_to_workers([&workers, next_settings](unsigned index) {
      workers[index]->authorizer->update_settings(next_settings);
    });
    running.routes = next.routes;
    running.routes_default = next.routes_default;
    running.on_store_error = next.on_store_error;
    std::string kept;
    for (const std::string& name : restart) kept += (kept.empty() ? "" : ", ") + name;
    if (!kept.empty()) core::log_warn("changed options need a restart; kept as running", {{"options", kept}});
    core::log_info("configuration reloaded", {{"routes", next.routes.size()}});
    return true;
  });
  // ==== end of reload on SIGHUP ===================================================================

  warn_about_refusals(config);
  core::log_info("keygate serving",
           {{"mode", name_of(config.mode)},
            {"listen", config.listen.host + ":" + std::to_string(server.port())},
            {"admin", config.admin_listen.host + ":" + std::to_string(server.admin_port())},
            {"api", config.api_listen ? config.api_listen->host + ":" + std::to_string(server.listener_port(0))
                                      : std::string("off")},
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
