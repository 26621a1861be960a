#pragma once
// One libpq connection driven by Asio on the caller's executor: connect, queries (plain,
// parameterized, prepared), COPY FROM STDIN and LISTEN notifications, each bounded by a timeout.
// libpq's non-blocking API does the protocol; Asio only waits for socket readiness.
//
// Not thread-safe, and one operation at a time: a second operation while one is in flight is a
// bug (std::logic_error). The connection must outlive every operation it runs, and may be
// destroyed once its io_context has stopped (and its pending handlers were destroyed).
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "store/pg_dsn.hpp"   // pg_address
#include "store/pg_text.hpp"  // parse_pg_array, format_pg_array, parse_pg_bytea, format_pg_bytea

struct pg_conn;    // libpq's PGconn
struct pg_result;  // libpq's PGresult

namespace keygate::store {

// Statement parameters in text form; nullopt is SQL NULL.
using PgParams = std::vector<std::optional<std::string>>;

enum class PgStatus {
  ok,
  query_error,       // the server rejected the statement; the connection is still usable
  timeout,           // no answer in time; the connection was dropped
  connection_error,  // could not connect, or the connection broke
};

// The outcome of one operation: a result set (possibly empty) or an error message that names
// PostgreSQL and its address, and never the password.
class PgResult {
 public:
  PgResult();  // ok, no rows
  static PgResult from(pg_result* result);  // takes ownership
  static PgResult failure(PgStatus status, std::string error, std::string sqlstate = {});

  bool ok() const { return status_ == PgStatus::ok; }
  PgStatus status() const { return status_; }
  const std::string& error() const { return error_; }
  const std::string& sqlstate() const { return sqlstate_; }  // e.g. "23505"; empty if none

  int rows() const;
  int columns() const;
  std::string_view get(int row, int column) const;  // text form; empty for NULL
  bool is_null(int row, int column) const;
  std::optional<std::string_view> get_optional(int row, int column) const;
  std::uint64_t affected_rows() const;  // INSERT/UPDATE/DELETE/COPY row count

 private:
  struct Clear {
    void operator()(pg_result* result) const;
  };
  std::unique_ptr<pg_result, Clear> result_;
  PgStatus status_ = PgStatus::ok;
  std::string error_;
  std::string sqlstate_;
};

struct PgNotification {
  std::string channel;
  std::string payload;
};

struct PgNotificationResult {
  PgStatus status = PgStatus::ok;  // ok with no notification: the timeout passed quietly
  std::optional<PgNotification> notification;
  std::string error;
};

// A named server-side prepared statement; connections prepare it on first use.
struct PgStatement {
  std::string name;
  std::string sql;
};

class PgConnection {
 public:
  explicit PgConnection(boost::asio::any_io_executor executor);
  ~PgConnection();
  PgConnection(const PgConnection&) = delete;
  PgConnection& operator=(const PgConnection&) = delete;

  // Opens (or re-opens) the connection within `timeout`. dsn: a libpq URI or key=value string.
  // Host names in it are resolved off the event loop (every address is tried in turn; `host`
  // is kept for TLS and authentication), so nothing blocks; a name that does not resolve is
  // a connection_error naming it.
  boost::asio::awaitable<PgResult> connect(std::string dsn, std::chrono::milliseconds timeout);

  // Simple-protocol query: may hold several statements (migrations); returns the first
  // error, else the last statement's result.
  boost::asio::awaitable<PgResult> execute(std::string sql, std::chrono::milliseconds timeout);
  // One statement with $1.. parameters (unnamed prepared statement).
  boost::asio::awaitable<PgResult> query(std::string sql, PgParams params,
                                         std::chrono::milliseconds timeout);
  // Prepares `statement` on this connection the first time, then executes it.
  boost::asio::awaitable<PgResult> query_prepared(const PgStatement& statement, PgParams params,
                                                  std::chrono::milliseconds timeout);
  // COPY ... FROM STDIN with `data` in COPY text format; waits for the socket between chunks,
  // so a large batch never piles up in libpq's buffer.
  boost::asio::awaitable<PgResult> copy_in(std::string sql, std::string data,
                                           std::chrono::milliseconds timeout);

  // After `LISTEN channel` (via execute): the next notification, or ok with none when
  // `timeout` passes. Notifications that arrived during other operations are kept in order.
  boost::asio::awaitable<PgNotificationResult> wait_notification(std::chrono::milliseconds timeout);

  bool connected() const;  // open and not broken
  bool usable() const;     // connected and not inside a transaction: fit to hand to a new user
  const std::string& address() const;  // "host:port", for messages
  void close();

  struct Impl;  // the libpq state (store/pg_session.hpp, private to store/pg_*.cpp)

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace keygate::store
