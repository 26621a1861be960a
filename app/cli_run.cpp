// The shared run of a store-using command (see cli_run.hpp).
#include "app/cli_run.hpp"

#include <boost/asio/co_spawn.hpp>

#include <cstdio>
#include <exception>
#include <string>

namespace keygate::app {

int run_to_completion(boost::asio::io_context& io, boost::asio::awaitable<int> command) {
  std::exception_ptr failure;
  int code = exit_failure;
  boost::asio::co_spawn(io, std::move(command), [&](std::exception_ptr e, int result) {
    failure = e;
    code = result;
  });
  io.run();
  if (failure) std::rethrow_exception(failure);
  return code;
}

int report_failure(std::string_view message) {
  std::fprintf(stderr, "keygate: %.*s\n", static_cast<int>(message.size()), message.data());
  return exit_failure;
}

boost::asio::awaitable<bool> connect_postgres(store::PgConnection& connection, const Config& config) {
  store::PgResult connected =
      co_await connection.connect(config.postgres.dsn, config.postgres.connect_timeout);
  if (!connected.ok()) {
    report_failure(connected.error());
    co_return false;
  }
  co_return true;
}

}  // namespace keygate::app
