// PgConnection and PgPool against a real PostgreSQL (KEYGATE_TEST_PG_DSN).
#include <doctest/doctest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "store/metrics.hpp"
#include "store/pg_connection.hpp"
#include "store/pg_pool.hpp"
#include "support/run_coro.hpp"
#include "support/scratch_database.hpp"
#include "support/test_env.hpp"

namespace asio = boost::asio;
using namespace std::chrono_literals;
using keygate::store::PgConnection;
using keygate::store::PgLease;
using keygate::store::PgOptions;
using keygate::store::PgParams;
using keygate::store::PgPool;
using keygate::store::PgResult;
using keygate::store::PgStatement;
using keygate::store::PgStatus;
using keygate::test::run_coro;
using keygate::test::ScratchDatabase;
using Clock = std::chrono::steady_clock;

namespace {

// A loopback port with nothing listening on it.
unsigned short closed_port() {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  return acceptor.local_endpoint().port();
}

std::string dsn_on_port(unsigned short port, const std::string& credentials = "postgres") {
  return "postgresql://" + credentials + "@127.0.0.1:" + std::to_string(port) + "/keygate";
}

long long elapsed_ms(Clock::time_point since) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - since).count();
}

// The test server's DSN with its host (127.0.0.1) given as `host`.
std::string dsn_with_host(const std::string& host) {
  std::string dsn = keygate::test::postgres_dsn();
  const auto at = dsn.find("@127.0.0.1:");
  REQUIRE_MESSAGE(at != std::string::npos, "expected a postgresql://user@127.0.0.1:port DSN");
  return dsn.replace(at + 1, 9, host);
}

// An io_context whose pending handlers (suspended coroutines among them) can be destroyed
// while the objects they used live on, as the server does before it destroys the stores.
struct ShutdownContext : asio::io_context {
  using asio::io_context::shutdown;
};

asio::awaitable<void> sleep_for(Clock::duration duration) {
  asio::steady_timer timer(co_await asio::this_coro::executor, duration);
  co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
}

}  // namespace

TEST_CASE("a connection runs parameterized queries and reports NULLs") {
  const std::string dsn = keygate::test::postgres_dsn();
  run_coro([&]() -> asio::awaitable<void> {
    PgConnection connection(co_await asio::this_coro::executor);
    PgResult connected = co_await connection.connect(dsn, 5s);
    REQUIRE_MESSAGE(connected.ok(), connected.error());
    CHECK(connection.connected());

    PgParams params;
    params.emplace_back("41");
    params.emplace_back(std::nullopt);
    PgResult r = co_await connection.query("SELECT $1::int + 1, $2::text, 'x''y'", params, 2s);
    REQUIRE_MESSAGE(r.ok(), r.error());
    CHECK(r.rows() == 1);
    CHECK(r.columns() == 3);
    CHECK(r.get(0, 0) == "42");
    CHECK(r.is_null(0, 1));
    CHECK_FALSE(r.get_optional(0, 1).has_value());
    CHECK(r.get(0, 2) == "x'y");

    PgResult last = co_await connection.execute("SELECT 1; SELECT 2 UNION ALL SELECT 3", 2s);
    REQUIRE(last.ok());
    CHECK(last.rows() == 2);
    CHECK(last.get(1, 0) == "3");
  }());
}

TEST_CASE("an SQL error is a query_error with its SQLSTATE and the connection stays usable") {
  const std::string dsn = keygate::test::postgres_dsn();
  run_coro([&]() -> asio::awaitable<void> {
    PgConnection connection(co_await asio::this_coro::executor);
    {
      auto r1 = co_await connection.connect(dsn, 5s);
      REQUIRE(r1.ok());
    }
    PgResult bad = co_await connection.execute("SELECT 1/0", 2s);
    CHECK(bad.status() == PgStatus::query_error);
    CHECK(bad.sqlstate() == "22012");
    CHECK(bad.error().find("division by zero") != std::string::npos);
    CHECK(bad.error().find("PostgreSQL at 127.0.0.1:") == 0);
    CHECK(connection.usable());
    PgResult good = co_await connection.execute("SELECT 7", 2s);
    REQUIRE(good.ok());
    CHECK(good.get(0, 0) == "7");
  }());
}

TEST_CASE("a query that outlives its timeout fails fast and drops the connection") {
  const std::string dsn = keygate::test::postgres_dsn();
  run_coro([&]() -> asio::awaitable<void> {
    PgConnection connection(co_await asio::this_coro::executor);
    {
      auto r2 = co_await connection.connect(dsn, 5s);
      REQUIRE(r2.ok());
    }
    const auto start = Clock::now();
    PgResult slow = co_await connection.execute("SELECT pg_sleep(10)", 200ms);
    CHECK(slow.status() == PgStatus::timeout);
    CHECK(slow.error().find("did not answer within 200 ms") != std::string::npos);
    CHECK(elapsed_ms(start) < 2000);
    CHECK_FALSE(connection.connected());
    PgResult after = co_await connection.execute("SELECT 1", 1s);
    CHECK(after.status() == PgStatus::connection_error);
  }());
}

TEST_CASE("connecting to a closed port fails fast with a message naming PostgreSQL and the address") {
  const unsigned short port = closed_port();
  run_coro([&]() -> asio::awaitable<void> {
    PgConnection connection(co_await asio::this_coro::executor);
    const auto start = Clock::now();
    PgResult r = co_await connection.connect(dsn_on_port(port, "postgres:Sup3rSecretPw"), 3s);
    CHECK(r.status() == PgStatus::connection_error);
    CHECK(r.error() == "cannot reach PostgreSQL at 127.0.0.1:" + std::to_string(port) +
                           ": connection refused");
    CHECK(r.error().find("Sup3rSecretPw") == std::string::npos);
    CHECK(elapsed_ms(start) < 1000);
    CHECK_FALSE(connection.connected());
  }());
}

TEST_CASE("a malformed connection string fails at once, with libpq's reason and without the password") {
  run_coro([&]() -> asio::awaitable<void> {
    PgConnection connection(co_await asio::this_coro::executor);
    PgResult r = co_await connection.connect("postgresql://kg:Sup3rSecretPw%zz@127.0.0.1:1/db", 3s);
    CHECK(r.status() == PgStatus::connection_error);
    CHECK(r.error() == "cannot reach PostgreSQL: malformed connection string: invalid "
                       "percent-encoded token: \"***\"");
    CHECK_FALSE(connection.connected());
  }());
}

TEST_CASE("connecting to a server that never answers times out") {
  asio::io_context io;
  // Listening but never accepting: the TCP handshake completes, the startup packet is ignored.
  asio::ip::tcp::acceptor silent(io, {asio::ip::make_address("127.0.0.1"), 0});
  const unsigned short port = silent.local_endpoint().port();
  run_coro([&]() -> asio::awaitable<void> {
    PgConnection connection(co_await asio::this_coro::executor);
    const auto start = Clock::now();
    PgResult r = co_await connection.connect(dsn_on_port(port), 300ms);
    CHECK(r.status() == PgStatus::connection_error);
    CHECK(r.error() == "cannot reach PostgreSQL at 127.0.0.1:" + std::to_string(port) +
                           ": no answer within 300 ms");
    const auto took = elapsed_ms(start);
    CHECK(took >= 250);
    CHECK(took < 2000);
  }());
}

TEST_CASE("server-side errors at connect never echo the password") {
  const auto at = keygate::test::postgres_dsn().find("@");
  REQUIRE(at != std::string::npos);
  const std::string dsn = "postgresql://postgres:Pa55wordXYZ" +
                          keygate::test::postgres_dsn().substr(at, std::string::npos);
  const std::string missing_db = keygate::test::dsn_with_database(dsn, "kg_no_such_database");
  run_coro([&]() -> asio::awaitable<void> {
    PgConnection connection(co_await asio::this_coro::executor);
    PgResult r = co_await connection.connect(missing_db, 5s);
    CHECK(r.status() == PgStatus::connection_error);
    CHECK(r.error().find("kg_no_such_database") != std::string::npos);
    CHECK(r.error().find("Pa55wordXYZ") == std::string::npos);
    PgConnection bad(co_await asio::this_coro::executor);
    PgResult syntax = co_await bad.connect("postgresql://u:Pa55wordXYZ@127.0.0.1:noport/x", 5s);
    CHECK(syntax.status() == PgStatus::connection_error);
    CHECK(syntax.error().find("Pa55wordXYZ") == std::string::npos);
  }());
}

TEST_CASE("prepared statements are prepared once per connection and again after a reconnect") {
  ScratchDatabase db;
  const PgStatement statement{"kg_test_double", "SELECT $1::int * 2"};
  run_coro([&]() -> asio::awaitable<void> {
    PgConnection connection(co_await asio::this_coro::executor);
    for (int round = 0; round < 2; ++round) {
      {
        auto r3 = co_await connection.connect(db.dsn(), 5s);
        REQUIRE(r3.ok());
      }
      for (int i = 1; i <= 3; ++i) {
        PgParams params;
        params.emplace_back(std::to_string(i));
        PgResult r = co_await connection.query_prepared(statement, params, 2s);
        REQUIRE_MESSAGE(r.ok(), r.error());
        CHECK(r.get(0, 0) == std::to_string(i * 2));
      }
      PgResult count = co_await connection.execute(
          "SELECT count(*) FROM pg_prepared_statements WHERE name = 'kg_test_double'", 2s);
      CHECK(count.get(0, 0) == "1");
      connection.close();
    }
  }());
}

TEST_CASE("LISTEN delivers notifications from another session, and a quiet wait times out cleanly") {
  ScratchDatabase db;
  run_coro([&]() -> asio::awaitable<void> {
    const auto executor = co_await asio::this_coro::executor;
    PgConnection listener(executor);
    PgConnection sender(executor);
    {
      auto r4 = co_await listener.connect(db.dsn(), 5s);
      REQUIRE(r4.ok());
    }
    {
      auto r5 = co_await sender.connect(db.dsn(), 5s);
      REQUIRE(r5.ok());
    }
    {
      auto r6 = co_await listener.execute("LISTEN kg_test_channel", 2s);
      REQUIRE(r6.ok());
    }

    auto quiet = co_await listener.wait_notification(100ms);
    CHECK(quiet.status == PgStatus::ok);
    CHECK_FALSE(quiet.notification.has_value());
    CHECK(listener.connected());

    {
      auto r7 = co_await sender.execute("NOTIFY kg_test_channel, 'first'; "
                                     "SELECT pg_notify('kg_test_channel', 'second')", 2s);
      REQUIRE(r7.ok());
    }
    auto first = co_await listener.wait_notification(5s);
    REQUIRE(first.notification.has_value());
    CHECK(first.notification->channel == "kg_test_channel");
    CHECK(first.notification->payload == "first");
    auto second = co_await listener.wait_notification(5s);
    REQUIRE(second.notification.has_value());
    CHECK(second.notification->payload == "second");
  }());
}

TEST_CASE("copy_in streams a large batch into a table") {
  ScratchDatabase db;
  db.sql("CREATE TABLE copied (n integer, label text)");
  std::string data;
  constexpr int rows = 50000;
  for (int i = 0; i < rows; ++i) data += std::to_string(i) + "\trow with some text " + std::to_string(i) + "\n";
  run_coro([&]() -> asio::awaitable<void> {
    PgConnection connection(co_await asio::this_coro::executor);
    {
      auto r8 = co_await connection.connect(db.dsn(), 5s);
      REQUIRE(r8.ok());
    }
    PgResult copied = co_await connection.copy_in("COPY copied (n, label) FROM STDIN", data, 20s);
    REQUIRE_MESSAGE(copied.ok(), copied.error());
    CHECK(copied.affected_rows() == rows);
    PgResult bad = co_await connection.copy_in("COPY copied (n) FROM STDIN", "not a number\n", 5s);
    CHECK(bad.status() == PgStatus::query_error);
    CHECK(bad.sqlstate() == "22P02");
    PgResult not_copy = co_await connection.copy_in("SELECT 1", "", 5s);
    CHECK(not_copy.status() == PgStatus::query_error);
    CHECK(connection.usable());
  }());
  CHECK(db.sql("SELECT count(*), sum(n) FROM copied").get(0, 0) == std::to_string(rows));
}

TEST_CASE("text arrays round-trip through PostgreSQL unchanged") {
  const std::string dsn = keygate::test::postgres_dsn();
  const std::vector<std::string> tricky{"plain", "with space", "comma,inside", "quote\"d",
                                        "back\\slash", "NULL", "{braces}", ""};
  run_coro([&]() -> asio::awaitable<void> {
    PgConnection connection(co_await asio::this_coro::executor);
    {
      auto r9 = co_await connection.connect(dsn, 5s);
      REQUIRE(r9.ok());
    }
    PgParams params;
    params.emplace_back(keygate::store::format_pg_array(tricky));
    PgResult r = co_await connection.query("SELECT $1::text[], cardinality($1::text[])", params, 2s);
    REQUIRE_MESSAGE(r.ok(), r.error());
    CHECK(r.get(0, 1) == std::to_string(tricky.size()));
    auto parsed = keygate::store::parse_pg_array(r.get(0, 0));
    REQUIRE(parsed.has_value());
    REQUIRE(parsed->size() == tricky.size());
    for (std::size_t i = 0; i < tricky.size(); ++i) CHECK((*parsed)[i] == tricky[i]);
  }());
}

TEST_CASE("the pool opens connections lazily, never more than pool_size, and queues the rest") {
  ScratchDatabase db;
  PgOptions options{db.dsn(), 2, 5s, 5s};
  run_coro([&]() -> asio::awaitable<void> {
    const auto executor = co_await asio::this_coro::executor;
    PgPool pool(executor, options);
    CHECK(pool.open_connections() == 0);
    int done = 0;
    unsigned most_open = 0;
    for (int i = 0; i < 6; ++i) {
      asio::co_spawn(executor, [&]() -> asio::awaitable<void> {
        PgResult r = co_await pool.query("SELECT pg_sleep(0.05)", {});
        CHECK_MESSAGE(r.ok(), r.error());
        most_open = std::max(most_open, pool.open_connections());
        ++done;
      }, asio::detached);
    }
    asio::steady_timer timer(executor);
    const auto deadline = Clock::now() + 10s;
    while (done < 6 && Clock::now() < deadline) {
      timer.expires_after(10ms);
      co_await timer.async_wait(asio::use_awaitable);
    }
    CHECK(done == 6);
    CHECK(most_open == 2);
    CHECK(pool.idle_connections() == 2);
  }());
}

TEST_CASE("while PostgreSQL is unreachable the pool fails at once, remembering the failure") {
  const unsigned short port = closed_port();
  PgOptions options{dsn_on_port(port), 4, 2s, 2s};
  run_coro([&]() -> asio::awaitable<void> {
    PgPool pool(co_await asio::this_coro::executor, options);
    PgResult first = co_await pool.query("SELECT 1", {});
    CHECK(first.status() == PgStatus::connection_error);
    CHECK(first.error().find("cannot reach PostgreSQL at 127.0.0.1:" + std::to_string(port)) == 0);
    const auto start = Clock::now();
    for (int i = 0; i < 20; ++i) {
      PgResult again = co_await pool.query("SELECT 1", {});
      CHECK(again.status() == PgStatus::connection_error);
      CHECK(again.error() == first.error());
    }
    CHECK(elapsed_ms(start) < 100);
    CHECK(pool.open_connections() == 0);
  }());
}

TEST_CASE("a pooled connection killed by the server is replaced, re-prepared and counted") {
  ScratchDatabase db;
  PgOptions options{db.dsn(), 1, 5s, 5s};
  const PgStatement pid_statement{"kg_test_pid", "SELECT pg_backend_pid()"};
  run_coro([&]() -> asio::awaitable<void> {
    PgPool pool(co_await asio::this_coro::executor, options);
    PgResult first = co_await pool.query_prepared(pid_statement, {});
    REQUIRE_MESSAGE(first.ok(), first.error());
    const std::string pid(first.get(0, 0));
    const auto reconnects = keygate::store::metrics().postgres_reconnects.load();
    db.sql("SELECT pg_terminate_backend(" + pid + ", 5000)");
    PgResult second = co_await pool.query_prepared(pid_statement, {});
    REQUIRE_MESSAGE(second.ok(), second.error());
    CHECK(second.get(0, 0) != pid);
    CHECK(keygate::store::metrics().postgres_reconnects.load() == reconnects + 1);
    CHECK(pool.open_connections() == 1);
  }());
}

TEST_CASE("a host name (localhost) is resolved off the loop and the connection keeps the name") {
  const std::string dsn = dsn_with_host("localhost");
  run_coro([&]() -> asio::awaitable<void> {
    PgConnection connection(co_await asio::this_coro::executor);
    PgResult connected = co_await connection.connect(dsn, 5s);
    REQUIRE_MESSAGE(connected.ok(), connected.error());
    CHECK(connection.address().starts_with("localhost:"));
    // Over TCP to the address localhost resolved to, not a Unix socket.
    PgResult server = co_await connection.execute("SELECT host(inet_server_addr())", 2s);
    REQUIRE_MESSAGE(server.ok(), server.error());
    CHECK(server.get(0, 0) == "127.0.0.1");
  }());
}

TEST_CASE("a name that does not resolve fails within the timeout, naming it and not the password") {
  const std::string dsn = "postgresql://postgres:Sup3rSecretPw@kg-no-such-host.invalid:5432/keygate";
  run_coro([&]() -> asio::awaitable<void> {
    PgConnection connection(co_await asio::this_coro::executor);
    const auto start = Clock::now();
    PgResult r = co_await connection.connect(dsn, 2s);
    CHECK(elapsed_ms(start) < 2500);
    CHECK(r.status() == PgStatus::connection_error);
    CHECK(r.error().starts_with("cannot reach PostgreSQL at kg-no-such-host.invalid:5432: "
                                "could not resolve \"kg-no-such-host.invalid\": "));
    CHECK(r.error().find("Sup3rSecretPw") == std::string::npos);
    CHECK(r.error().find('\n') == std::string::npos);
    CHECK_FALSE(connection.connected());
  }());
}

TEST_CASE("in a host list, a name that does not resolve is skipped for the next host") {
  const std::string good = dsn_with_host("localhost");
  const std::string dsn = good.substr(0, good.find("@") + 1) + "kg-no-such-host.invalid:5432," +
                          good.substr(good.find("@") + 1);
  run_coro([&]() -> asio::awaitable<void> {
    PgConnection connection(co_await asio::this_coro::executor);
    PgResult connected = co_await connection.connect(dsn, 5s);
    REQUIRE_MESSAGE(connected.ok(), connected.error());
    PgResult one = co_await connection.execute("SELECT 1", 2s);
    CHECK(one.get(0, 0) == "1");
  }());
}

TEST_CASE("a connection is safe to destroy after its io_context shut down mid-query") {
  const std::string dsn = keygate::test::postgres_dsn();
  auto io = std::make_unique<ShutdownContext>();
  PgConnection connection(io->get_executor());
  bool connected = false;
  bool query_returned = false;
  asio::co_spawn(*io, [&]() -> asio::awaitable<void> {
    connected = (co_await connection.connect(dsn, 5s)).ok();
    (void)co_await connection.execute("SELECT pg_sleep(30)", 60s);
    query_returned = true;
  }, asio::detached);
  const auto deadline = Clock::now() + 5s;
  while (!connected && Clock::now() < deadline) io->run_for(10ms);
  REQUIRE(connected);
  io->run_for(50ms);  // the query is sent and its coroutine waits for the socket
  io->stop();
  io->shutdown();  // destroys the suspended coroutine, which used the connection
  CHECK_FALSE(query_returned);
  CHECK_FALSE(connection.usable());
  connection.close();  // and ~PgConnection after it: neither touches the context's handlers
}

TEST_CASE("a pool is safe to destroy after its io_context shut down with callers queued in it") {
  const std::string dsn = keygate::test::postgres_dsn();
  // Both orders in which shutdown may destroy the lease holder and the queued caller.
  for (const bool holder_waits_longer : {true, false}) {
    CAPTURE(holder_waits_longer);
    auto io = std::make_unique<ShutdownContext>();
    const PgOptions options{dsn, 1, 5s, 20s};
    auto pool = std::make_unique<PgPool>(io->get_executor(), options);
    bool holding = false;
    bool queued_returned = false;
    asio::co_spawn(*io, [&]() -> asio::awaitable<void> {
      PgLease lease = co_await pool->acquire();
      holding = lease.ok();
      co_await sleep_for(holder_waits_longer ? 1h : 10s);
    }, asio::detached);
    const auto deadline = Clock::now() + 5s;
    while (!holding && Clock::now() < deadline) io->run_for(10ms);
    REQUIRE(holding);
    asio::co_spawn(*io, [&]() -> asio::awaitable<void> {
      PgLease lease = co_await pool->acquire();  // queued: the one connection is leased
      queued_returned = true;
    }, asio::detached);
    io->run_for(20ms);
    io->stop();
    io->shutdown();
    CHECK_FALSE(queued_returned);
    // Every lease is gone: what the pool counts as open is what it holds idle.
    CHECK(pool->open_connections() == pool->idle_connections());
    pool.reset();
  }
}
