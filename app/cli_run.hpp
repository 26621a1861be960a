#pragma once
// What every store-using command shares: its coroutine run to completion on an io_context of
// its own, a PostgreSQL connection, and a failure reported as one line with exit code 1.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include <string_view>

#include "app/commands.hpp"
#include "store/pg_connection.hpp"

namespace keygate::app {

// Runs `command` on `io` until it finishes; its exceptions reach main unchanged.
int run_to_completion(boost::asio::io_context& io, boost::asio::awaitable<int> command);

// "keygate: <message>" on stderr; returns exit_failure.
int report_failure(std::string_view message);

// Connects with postgres.dsn and postgres.connect_timeout; on failure reports it and
// returns false.
boost::asio::awaitable<bool> connect_postgres(store::PgConnection& connection, const Config& config);

}  // namespace keygate::app
