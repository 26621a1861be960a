// store.schema: custom: the operator's table, read once at startup (serve, keys).
#include "app/key_table.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <exception>
#include <stdexcept>

#include "store/custom_key_source.hpp"
#include "store/pg_pool.hpp"

namespace keygate::app {
namespace asio = boost::asio;

namespace {

// store.revocation: poll: the poll's statement runs once now, so that a table it cannot read
// (a view has no xmin) is refused at startup rather than retried forever.
void check_change_poll(asio::io_context& io, store::PgPool& pool, const Config& config,
                       const store::ResolvedSchema& table) {
  std::string error;
  asio::co_spawn(io, pool.query(store::change_signature_statement(table), {}),
                 [&](std::exception_ptr thrown, store::PgResult result) {
                   if (thrown) error = "the query failed";
                   else if (!result.ok()) error = result.error();
                 });
  io.restart();
  io.run();
  if (!error.empty()) {
    throw ConfigError(config.source + ": store.revocation: poll cannot read the row versions of " +
                      table.schema.table + " (" + error + "); poll a table, not a view, or install the trigger " +
                      "(deploy/presets/<preset>.notify.up.sql) and use revocation: notify");
  }
}

}  // namespace

std::shared_ptr<const store::ResolvedSchema> resolve_key_table(const Config& config) {
  asio::io_context io;
  store::PgOptions options;
  options.dsn = config.postgres.dsn;
  options.pool_size = 1;
  options.connect_timeout = config.postgres.connect_timeout;
  options.query_timeout = config.postgres.query_timeout;
  store::PgPool pool(io.get_executor(), options);
  std::shared_ptr<const store::ResolvedSchema> resolved;
  std::exception_ptr failure;
  asio::co_spawn(io, store::resolve_custom_schema(pool, config.store.custom),
                 [&](std::exception_ptr error, store::ResolvedSchema schema) {
                   failure = error;
                   if (!error) resolved = std::make_shared<const store::ResolvedSchema>(std::move(schema));
                 });
  io.run();
  try {
    if (failure) std::rethrow_exception(failure);
  } catch (const std::invalid_argument& mismatch) {
    throw ConfigError(config.source + ": " + mismatch.what());  // the mapping is the config's
  }
  if (config.store.revocation == Config::Store::Revocation::poll) check_change_poll(io, pool, config, *resolved);
  return resolved;
}

}  // namespace keygate::app
