// PgConnection's operations (connect is in pg_connect.cpp) and PgResult.
#include "store/pg_connection.hpp"

#include <libpq-fe.h>

#include <algorithm>
#include <cstdlib>

#include "store/pg_session.hpp"

namespace keygate::store {

namespace asio = boost::asio;
using namespace detail;

// ---------------------------------------------------------------------------------------------
// PgResult

void PgResult::Clear::operator()(pg_result* result) const { PQclear(result); }

PgResult::PgResult() = default;

PgResult PgResult::from(pg_result* result) {
  PgResult r;
  r.result_.reset(result);
  return r;
}

PgResult PgResult::failure(PgStatus status, std::string error, std::string sqlstate) {
  PgResult r;
  r.status_ = status;
  r.error_ = std::move(error);
  r.sqlstate_ = std::move(sqlstate);
  return r;
}

int PgResult::rows() const { return result_ ? PQntuples(result_.get()) : 0; }
int PgResult::columns() const { return result_ ? PQnfields(result_.get()) : 0; }

std::string_view PgResult::get(int row, int column) const {
  if (!result_ || row >= rows() || column >= columns()) return {};
  return {PQgetvalue(result_.get(), row, column),
          static_cast<std::size_t>(PQgetlength(result_.get(), row, column))};
}

bool PgResult::is_null(int row, int column) const {
  return !result_ || row >= rows() || column >= columns() ||
         PQgetisnull(result_.get(), row, column) != 0;
}

std::optional<std::string_view> PgResult::get_optional(int row, int column) const {
  if (is_null(row, column)) return std::nullopt;
  return get(row, column);
}

std::uint64_t PgResult::affected_rows() const {
  if (!result_) return 0;
  const char* text = PQcmdTuples(result_.get());
  return (text != nullptr && *text != '\0') ? std::strtoull(text, nullptr, 10) : 0;
}

namespace {

std::vector<const char*> param_pointers(const PgParams& params) {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
  return values;
}

// Built outside the coroutine: g++ 12 mis-builds braced temporaries inside coroutine bodies.
PgNotificationResult notification_failure(std::string error) {
  PgNotificationResult result;
  result.status = PgStatus::connection_error;
  result.error = std::move(error);
  return result;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// PgConnection

PgConnection::PgConnection(asio::any_io_executor executor)
    : impl_(std::make_unique<Impl>(std::move(executor))) {}

PgConnection::~PgConnection() { close(); }

void PgConnection::close() {
  drop(*impl_);
  impl_->notifications.clear();
}

bool PgConnection::connected() const {
  return impl_->conn != nullptr && !impl_->broken && PQstatus(impl_->conn) == CONNECTION_OK;
}

bool PgConnection::usable() const {
  return connected() && !impl_->busy && PQtransactionStatus(impl_->conn) == PQTRANS_IDLE;
}

const std::string& PgConnection::address() const { return impl_->address; }

asio::awaitable<PgResult> PgConnection::execute(std::string sql, std::chrono::milliseconds timeout) {
  Impl& s = *impl_;
  const PgOperation operation(s, timeout);
  if (auto failed = not_connected(s)) co_return std::move(*failed);
  if (PQsendQuery(s.conn, sql.c_str()) == 0) co_return connection_failure(s, libpq_error(s));
  co_return co_await finish(s, operation.deadline);
}

asio::awaitable<PgResult> PgConnection::query(std::string sql, PgParams params,
                                              std::chrono::milliseconds timeout) {
  Impl& s = *impl_;
  const PgOperation operation(s, timeout);
  if (auto failed = not_connected(s)) co_return std::move(*failed);
  const auto values = param_pointers(params);
  if (PQsendQueryParams(s.conn, sql.c_str(), static_cast<int>(values.size()), nullptr,
                        values.data(), nullptr, nullptr, 0) == 0) {
    co_return connection_failure(s, libpq_error(s));
  }
  co_return co_await finish(s, operation.deadline);
}

asio::awaitable<PgResult> PgConnection::query_prepared(const PgStatement& statement,
                                                       PgParams params,
                                                       std::chrono::milliseconds timeout) {
  Impl& s = *impl_;
  const PgOperation operation(s, timeout);
  if (auto failed = not_connected(s)) co_return std::move(*failed);
  if (!s.prepared.contains(statement.name)) {
    if (PQsendPrepare(s.conn, statement.name.c_str(), statement.sql.c_str(), 0, nullptr) == 0) {
      co_return connection_failure(s, libpq_error(s));
    }
    PgResult prepared = co_await finish(s, operation.deadline);
    if (!prepared.ok()) co_return prepared;
    s.prepared.insert(statement.name);
  }
  const auto values = param_pointers(params);
  if (PQsendQueryPrepared(s.conn, statement.name.c_str(), static_cast<int>(values.size()),
                          values.data(), nullptr, nullptr, 0) == 0) {
    co_return connection_failure(s, libpq_error(s));
  }
  co_return co_await finish(s, operation.deadline);
}

asio::awaitable<PgResult> PgConnection::copy_in(std::string sql, std::string data,
                                                std::chrono::milliseconds timeout) {
  Impl& s = *impl_;
  const PgOperation operation(s, timeout);
  if (auto failed = not_connected(s)) co_return std::move(*failed);
  if (PQsendQuery(s.conn, sql.c_str()) == 0) co_return connection_failure(s, libpq_error(s));
  {
    PgResult sent = co_await flush(s, operation.deadline);
    if (!sent.ok()) co_return sent;
  }
  bool entered_copy = false;
  PgResult started = co_await collect(s, operation.deadline, &entered_copy);
  if (!started.ok()) co_return started;
  if (!entered_copy) {
    co_return PgResult::failure(PgStatus::query_error,
                                "PostgreSQL at " + s.address + ": not a COPY FROM STDIN statement");
  }

  // Feed the data in chunks; PQputCopyData returns 0 when libpq's buffer is full.
  constexpr std::size_t chunk = 64 * 1024;
  for (std::size_t at = 0; at < data.size();) {
    const std::size_t n = std::min(chunk, data.size() - at);
    const int put = PQputCopyData(s.conn, data.data() + at, static_cast<int>(n));
    if (put < 0) co_return connection_failure(s, libpq_error(s));
    if (put == 1) at += n;
    PgResult sent = co_await flush(s, operation.deadline);
    if (!sent.ok()) co_return sent;
  }
  for (;;) {
    const int end = PQputCopyEnd(s.conn, nullptr);
    if (end < 0) co_return connection_failure(s, libpq_error(s));
    PgResult sent = co_await flush(s, operation.deadline);
    if (!sent.ok()) co_return sent;
    if (end == 1) break;
  }
  co_return co_await collect(s, operation.deadline);
}

asio::awaitable<PgNotificationResult> PgConnection::wait_notification(
    std::chrono::milliseconds timeout) {
  Impl& s = *impl_;
  const PgOperation operation(s, timeout);
  auto take = [&] {
    PgNotificationResult result;
    result.notification = std::move(s.notifications.front());
    s.notifications.pop_front();
    return result;
  };
  if (!s.notifications.empty()) co_return take();
  if (auto failed = not_connected(s)) {
    co_return notification_failure(failed->error());
  }
  for (;;) {
    if (PQconsumeInput(s.conn) == 0) {
      auto failed = connection_failure(s, libpq_error(s));
      co_return notification_failure(failed.error());
    }
    stash_notifications(s);
    if (!s.notifications.empty()) co_return take();
    const PgReadiness r =
        co_await wait_socket(s, asio::posix::descriptor_base::wait_read, operation.deadline);
    if (r == PgReadiness::timeout) co_return PgNotificationResult();  // quiet, connection kept
    if (r != PgReadiness::ready) {
      auto failed = connection_failure(s, "socket wait failed");
      co_return notification_failure(failed.error());
    }
  }
}

}  // namespace keygate::store
