#include "store/pg_session.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <stdexcept>

#include "store/pg_text.hpp"

namespace keygate::store::detail {

namespace asio = boost::asio;
using namespace boost::asio::experimental::awaitable_operators;
using SteadyClock = std::chrono::steady_clock;

namespace {

void release_socket(PgSession& s) {
  if (s.socket.is_open()) {
    boost::system::error_code ignored;
    s.socket.cancel(ignored);
    (void)s.socket.release();  // libpq owns the fd
  }
}

// While sending, the server may answer (or complain) before taking everything: libpq's advice
// is to wait for either direction and read when readable, or the two sides can deadlock.
asio::awaitable<PgReadiness> wait_read_or_write(PgSession& s, PgDeadline deadline) {
  if (!s.socket.is_open()) co_return PgReadiness::error;
  using asio::posix::descriptor_base;
  s.timer.expires_at(deadline);
  auto outcome = co_await (
      s.socket.async_wait(descriptor_base::wait_read, asio::as_tuple(asio::use_awaitable)) ||
      s.socket.async_wait(descriptor_base::wait_write, asio::as_tuple(asio::use_awaitable)) ||
      s.timer.async_wait(asio::as_tuple(asio::use_awaitable)));
  switch (outcome.index()) {
    case 0: {
      auto [ec] = std::get<0>(outcome);
      co_return ec ? PgReadiness::error : PgReadiness::readable;
    }
    case 1: {
      auto [ec] = std::get<1>(outcome);
      co_return ec ? PgReadiness::error : PgReadiness::writable;
    }
    default: co_return PgReadiness::timeout;
  }
}

PgResult query_failure(PgSession& s, PGresult* result) {
  const char* primary = PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY);
  const char* state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
  std::string message = primary ? primary : one_line_reason(PQresultErrorMessage(result));
  std::string sqlstate = state ? state : "";
  PQclear(result);  // owns the two strings above
  return PgResult::failure(PgStatus::query_error,
                           scrub(s, "PostgreSQL at " + s.address + ": " + message), std::move(sqlstate));
}

}  // namespace

PgOperation::PgOperation(PgSession& s, std::chrono::milliseconds timeout)
    : deadline(SteadyClock::now() + timeout), busy_(s.busy) {
  if (busy_) throw std::logic_error("PgConnection: concurrent operations on one connection");
  busy_ = true;
  s.timeout = timeout;
}

std::optional<PgResult> not_connected(const PgSession& s) {
  if (s.conn != nullptr && !s.broken) return std::nullopt;
  return PgResult::failure(PgStatus::connection_error,
                           "not connected to PostgreSQL at " + s.address);
}

std::string scrub(const PgSession& s, std::string message) {
  return hide_secret(std::move(message), s.password);
}

std::string libpq_error(const PgSession& s) {
  return s.conn ? one_line_reason(PQerrorMessage(s.conn)) : "not connected";
}

bool register_socket(PgSession& s) {
  release_socket(s);
  const int fd = PQsocket(s.conn);
  if (fd < 0) return false;
  boost::system::error_code ec;
  s.socket.assign(fd, ec);
  return !ec;
}

void drop(PgSession& s) {
  release_socket(s);
  if (s.conn) PQfinish(s.conn);
  s.conn = nullptr;
  s.broken = true;
  s.prepared.clear();
}

PgResult connection_failure(PgSession& s, std::string_view what) {
  auto message = scrub(s, "lost connection to PostgreSQL at " + s.address + ": " + std::string(what));
  drop(s);
  return PgResult::failure(PgStatus::connection_error, std::move(message));
}

PgResult timeout_failure(PgSession& s) {
  auto message = "PostgreSQL at " + s.address + " did not answer within " +
                 std::to_string(s.timeout.count()) + " ms";
  drop(s);  // libpq 15 can only cancel with a blocking call; dropping the session is immediate
  return PgResult::failure(PgStatus::timeout, std::move(message));
}

asio::awaitable<PgReadiness> wait_socket(PgSession& s,
                                       asio::posix::descriptor_base::wait_type what,
                                       PgDeadline deadline) {
  if (!s.socket.is_open()) co_return PgReadiness::error;
  s.timer.expires_at(deadline);
  auto outcome = co_await (s.socket.async_wait(what, asio::as_tuple(asio::use_awaitable)) ||
                           s.timer.async_wait(asio::as_tuple(asio::use_awaitable)));
  if (outcome.index() == 1) co_return PgReadiness::timeout;
  auto [ec] = std::get<0>(outcome);
  co_return ec ? PgReadiness::error : PgReadiness::ready;
}

void stash_notifications(PgSession& s) {
  while (PGnotify* n = PQnotifies(s.conn)) {
    s.notifications.push_back({n->relname, n->extra ? n->extra : ""});
    PQfreemem(n);
  }
}

asio::awaitable<PgResult> flush(PgSession& s, PgDeadline deadline) {
  for (;;) {
    const int pending = PQflush(s.conn);
    if (pending == 0) co_return PgResult();
    if (pending < 0) co_return connection_failure(s, libpq_error(s));
    const PgReadiness r = co_await wait_read_or_write(s, deadline);
    if (r == PgReadiness::timeout) co_return timeout_failure(s);
    if (r == PgReadiness::error) co_return connection_failure(s, "socket wait failed");
    if (r == PgReadiness::readable) {
      if (PQconsumeInput(s.conn) == 0) co_return connection_failure(s, libpq_error(s));
      stash_notifications(s);
    }
  }
}

asio::awaitable<PgResult> collect(PgSession& s, PgDeadline deadline, bool* entered_copy) {
  PgResult last;
  std::optional<PgResult> first_error;
  for (;;) {
    while (PQisBusy(s.conn) != 0) {
      const PgReadiness r = co_await wait_socket(s, asio::posix::descriptor_base::wait_read, deadline);
      if (r == PgReadiness::timeout) co_return timeout_failure(s);
      if (r != PgReadiness::ready) co_return connection_failure(s, "socket wait failed");
      if (PQconsumeInput(s.conn) == 0) co_return connection_failure(s, libpq_error(s));
      stash_notifications(s);
    }
    PGresult* result = PQgetResult(s.conn);
    if (result == nullptr) break;
    const ExecStatusType status = PQresultStatus(result);
    if (status == PGRES_COPY_IN && entered_copy != nullptr) {
      *entered_copy = true;
      co_return PgResult::from(result);
    }
    if (status == PGRES_COPY_IN || status == PGRES_COPY_OUT || status == PGRES_COPY_BOTH) {
      PQclear(result);  // not asked for: the session is in a state we do not drive
      co_return connection_failure(s, "unexpected COPY state");
    }
    if (status == PGRES_FATAL_ERROR || status == PGRES_BAD_RESPONSE ||
        status == PGRES_NONFATAL_ERROR) {
      if (!first_error) first_error = query_failure(s, result);
      else PQclear(result);
    } else {
      last = PgResult::from(result);
    }
  }
  stash_notifications(s);
  if (PQstatus(s.conn) == CONNECTION_BAD) {
    co_return connection_failure(s, first_error ? first_error->error() : libpq_error(s));
  }
  if (first_error) co_return std::move(*first_error);
  co_return last;
}

asio::awaitable<PgResult> finish(PgSession& s, PgDeadline deadline) {
  PgResult flushed = co_await flush(s, deadline);
  if (!flushed.ok()) co_return flushed;
  co_return co_await collect(s, deadline);
}

}  // namespace keygate::store::detail
