#pragma once
// Config -> the options each part of `keygate serve` is built from. The Config already holds
// typed values; these functions only arrange them the way each part wants them (and compute
// what is derived: the worker count, each worker's share of the PostgreSQL pool).
#include <memory>

#include "app/config.hpp"
#include "authz/key_authorizer.hpp"
#include "authz/rate_limiter.hpp"
#include "proxy/server.hpp"
#include "store/custom_schema.hpp"
#include "store/l1_cache.hpp"
#include "store/pg_pool.hpp"
#include "store/usage_writer.hpp"

namespace keygate::app {

// threads, with auto (0) resolved to the number of cores.
unsigned worker_count(const Config& config);

proxy::ProxyOptions proxy_options(const Config& config);
// Shared read-only by every worker; built again on SIGHUP.
std::shared_ptr<const authz::AuthorizerSettings> authorizer_settings(const Config& config);
authz::RateLimiterOptions rate_limiter_options(const Config& config);
store::L1Cache::Options l1_cache_options(const Config& config);
// `key_table`: the resolved custom table (store.schema: custom), or null for keygate's own.
store::UsageWriterOptions usage_writer_options(const Config& config,
                                               const store::ResolvedSchema* key_table = nullptr);
// One worker's pool: postgres.pool_size is for the whole process, shared by `workers`.
store::PgOptions postgres_options(const Config& config, unsigned workers);

}  // namespace keygate::app
