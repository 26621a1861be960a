#include "store/pg_connection.hpp"

#include <libpq-fe.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <deque>
#include <stdexcept>
#include <unordered_set>

#include "core/hex.hpp"

namespace keygate::store {

namespace asio = boost::asio;
using namespace boost::asio::experimental::awaitable_operators;
using SteadyClock = std::chrono::steady_clock;
using Deadline = SteadyClock::time_point;

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

// ---------------------------------------------------------------------------------------------
// Connection state

struct PgConnection::Impl {
  explicit Impl(asio::any_io_executor executor) : socket(executor), timer(executor) {}

  asio::posix::stream_descriptor socket;  // libpq's fd, never closed by Asio (release())
  asio::steady_timer timer;
  PGconn* conn = nullptr;
  bool broken = false;
  bool busy = false;
  std::string address = "(not connected)";
  std::string password;  // only to scrub it from messages
  std::chrono::milliseconds timeout{0};  // of the operation in flight, for messages
  std::unordered_set<std::string> prepared;
  std::deque<PgNotification> notifications;
};

namespace {

// Marks an operation in flight; two at once on one connection is a caller bug.
class BusyGuard {
 public:
  explicit BusyGuard(bool& busy) : busy_(busy) {
    if (busy_) throw std::logic_error("PgConnection: concurrent operations on one connection");
    busy_ = true;
  }
  ~BusyGuard() { busy_ = false; }
  BusyGuard(const BusyGuard&) = delete;
  BusyGuard& operator=(const BusyGuard&) = delete;

 private:
  bool& busy_;
};

std::string replace_all(std::string text, std::string_view what, std::string_view with) {
  if (what.empty()) return text;
  for (std::size_t at = text.find(what); at != std::string::npos;
       at = text.find(what, at + with.size())) {
    text.replace(at, what.size(), with);
  }
  return text;
}

// libpq's messages are multi-line and capitalized; ours are one line after a colon.
std::string one_line(std::string_view message) {
  std::string line(message.substr(0, message.find('\n')));
  while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
  // "connection to server at "127.0.0.1", port 5999 failed: Connection refused" -> the reason.
  if (line.starts_with("connection to server")) {
    if (auto at = line.find(" failed: "); at != std::string::npos) line.erase(0, at + 9);
  }
  for (std::string_view level : {"FATAL:  ", "ERROR:  "}) {
    if (line.starts_with(level)) line.erase(0, level.size());
  }
  if (line.size() > 1 && std::isupper(static_cast<unsigned char>(line[0])) &&
      std::islower(static_cast<unsigned char>(line[1]))) {
    line[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(line[0])));
  }
  return line.empty() ? "unknown error" : line;
}

std::string scrub(const PgConnection::Impl& s, std::string message) {
  return replace_all(std::move(message), s.password, "***");
}

std::string libpq_error(const PgConnection::Impl& s) {
  return s.conn ? one_line(PQerrorMessage(s.conn)) : "not connected";
}

void release_socket(PgConnection::Impl& s) {
  if (s.socket.is_open()) {
    boost::system::error_code ignored;
    s.socket.cancel(ignored);
    (void)s.socket.release();  // libpq owns the fd
  }
}

// The fd can change while connecting (another address is tried), and a fd number reused by a
// new socket is not registered with the reactor: always register afresh in that phase.
bool register_socket(PgConnection::Impl& s) {
  release_socket(s);
  const int fd = PQsocket(s.conn);
  if (fd < 0) return false;
  boost::system::error_code ec;
  s.socket.assign(fd, ec);
  return !ec;
}

void drop(PgConnection::Impl& s) {
  release_socket(s);
  if (s.conn) PQfinish(s.conn);
  s.conn = nullptr;
  s.broken = true;
  s.prepared.clear();
}

PgResult connection_failure(PgConnection::Impl& s, std::string_view what) {
  auto message = scrub(s, "lost connection to PostgreSQL at " + s.address + ": " + std::string(what));
  drop(s);
  return PgResult::failure(PgStatus::connection_error, std::move(message));
}

PgResult timeout_failure(PgConnection::Impl& s) {
  auto message = "PostgreSQL at " + s.address + " did not answer within " +
                 std::to_string(s.timeout.count()) + " ms";
  drop(s);  // libpq 15 can only cancel with a blocking call; dropping the session is immediate
  return PgResult::failure(PgStatus::timeout, std::move(message));
}

enum class Readiness { ready, readable, writable, timeout, error };

asio::awaitable<Readiness> wait_socket(PgConnection::Impl& s,
                                       asio::posix::descriptor_base::wait_type what,
                                       Deadline deadline) {
  if (!s.socket.is_open()) co_return Readiness::error;
  s.timer.expires_at(deadline);
  auto outcome = co_await (s.socket.async_wait(what, asio::as_tuple(asio::use_awaitable)) ||
                           s.timer.async_wait(asio::as_tuple(asio::use_awaitable)));
  if (outcome.index() == 1) co_return Readiness::timeout;
  auto [ec] = std::get<0>(outcome);
  co_return ec ? Readiness::error : Readiness::ready;
}

// While sending, the server may answer (or complain) before taking everything: libpq's advice
// is to wait for either direction and read when readable, or the two sides can deadlock.
asio::awaitable<Readiness> wait_read_or_write(PgConnection::Impl& s, Deadline deadline) {
  if (!s.socket.is_open()) co_return Readiness::error;
  using asio::posix::descriptor_base;
  s.timer.expires_at(deadline);
  auto outcome = co_await (
      s.socket.async_wait(descriptor_base::wait_read, asio::as_tuple(asio::use_awaitable)) ||
      s.socket.async_wait(descriptor_base::wait_write, asio::as_tuple(asio::use_awaitable)) ||
      s.timer.async_wait(asio::as_tuple(asio::use_awaitable)));
  switch (outcome.index()) {
    case 0: {
      auto [ec] = std::get<0>(outcome);
      co_return ec ? Readiness::error : Readiness::readable;
    }
    case 1: {
      auto [ec] = std::get<1>(outcome);
      co_return ec ? Readiness::error : Readiness::writable;
    }
    default: co_return Readiness::timeout;
  }
}

void stash_notifications(PgConnection::Impl& s) {
  while (PGnotify* n = PQnotifies(s.conn)) {
    s.notifications.push_back({n->relname, n->extra ? n->extra : ""});
    PQfreemem(n);
  }
}

// Sends everything libpq has buffered. Returns an ok result or the failure.
asio::awaitable<PgResult> flush(PgConnection::Impl& s, Deadline deadline) {
  for (;;) {
    const int pending = PQflush(s.conn);
    if (pending == 0) co_return PgResult();
    if (pending < 0) co_return connection_failure(s, libpq_error(s));
    const Readiness r = co_await wait_read_or_write(s, deadline);
    if (r == Readiness::timeout) co_return timeout_failure(s);
    if (r == Readiness::error) co_return connection_failure(s, "socket wait failed");
    if (r == Readiness::readable) {
      if (PQconsumeInput(s.conn) == 0) co_return connection_failure(s, libpq_error(s));
      stash_notifications(s);
    }
  }
}

PgResult query_failure(PgConnection::Impl& s, PGresult* result) {
  const char* primary = PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY);
  const char* state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
  std::string message = primary ? primary : one_line(PQresultErrorMessage(result));
  std::string sqlstate = state ? state : "";
  PQclear(result);  // owns the two strings above
  return PgResult::failure(PgStatus::query_error,
                           scrub(s, "PostgreSQL at " + s.address + ": " + message), std::move(sqlstate));
}

// Reads the results of the command in flight until libpq has none left (or COPY IN starts,
// when `entered_copy` is given: it is then set). The first error wins, else the last result.
asio::awaitable<PgResult> collect(PgConnection::Impl& s, Deadline deadline,
                                  bool* entered_copy = nullptr) {
  PgResult last;
  std::optional<PgResult> first_error;
  for (;;) {
    while (PQisBusy(s.conn) != 0) {
      const Readiness r = co_await wait_socket(s, asio::posix::descriptor_base::wait_read, deadline);
      if (r == Readiness::timeout) co_return timeout_failure(s);
      if (r != Readiness::ready) co_return connection_failure(s, "socket wait failed");
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

asio::awaitable<PgResult> finish(PgConnection::Impl& s, Deadline deadline) {
  PgResult flushed = co_await flush(s, deadline);
  if (!flushed.ok()) co_return flushed;
  co_return co_await collect(s, deadline);
}

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

std::optional<PgResult> not_connected(PgConnection::Impl& s) {
  if (s.conn != nullptr && !s.broken) return std::nullopt;
  return PgResult::failure(PgStatus::connection_error,
                           "not connected to PostgreSQL at " + s.address);
}

std::string dsn_option(std::string_view dsn, std::string_view keyword) {
  std::string result;
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(std::string(dsn).c_str(), &error);
  if (error) PQfreemem(error);
  if (!options) return result;
  for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (keyword == o->keyword && o->val != nullptr) result = o->val;
  }
  PQconninfoFree(options);
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

asio::awaitable<PgResult> PgConnection::connect(std::string dsn, std::chrono::milliseconds timeout) {
  Impl& s = *impl_;
  BusyGuard busy(s.busy);
  drop(s);
  s.notifications.clear();
  s.address = pg_address(dsn);
  s.password = dsn_option(dsn, "password");
  s.timeout = timeout;
  const Deadline deadline = SteadyClock::now() + timeout;
  auto fail = [&](std::string reason) {
    auto message = scrub(s, "cannot reach PostgreSQL at " + s.address + ": " + reason);
    drop(s);
    return PgResult::failure(PgStatus::connection_error, std::move(message));
  };

  s.conn = PQconnectStart(dsn.c_str());
  if (s.conn == nullptr) co_return fail("out of memory");
  if (PQstatus(s.conn) == CONNECTION_BAD) co_return fail(libpq_error(s));
  s.broken = false;
  PostgresPollingStatusType poll = PGRES_POLLING_WRITING;
  while (poll != PGRES_POLLING_OK) {
    if (poll == PGRES_POLLING_FAILED) co_return fail(libpq_error(s));
    if (!register_socket(s)) co_return fail("no socket");
    const Readiness r = co_await wait_socket(
        s, poll == PGRES_POLLING_READING ? asio::posix::descriptor_base::wait_read
                                         : asio::posix::descriptor_base::wait_write,
        deadline);
    if (r == Readiness::timeout) {
      co_return fail("no answer within " + std::to_string(timeout.count()) + " ms");
    }
    if (r != Readiness::ready) co_return fail("socket wait failed");
    poll = PQconnectPoll(s.conn);
  }
  if (PQsetnonblocking(s.conn, 1) != 0) co_return fail(libpq_error(s));
  if (!register_socket(s)) co_return fail("no socket");
  co_return PgResult();
}

asio::awaitable<PgResult> PgConnection::execute(std::string sql, std::chrono::milliseconds timeout) {
  Impl& s = *impl_;
  BusyGuard busy(s.busy);
  if (auto failed = not_connected(s)) co_return std::move(*failed);
  s.timeout = timeout;
  const Deadline deadline = SteadyClock::now() + timeout;
  if (PQsendQuery(s.conn, sql.c_str()) == 0) co_return connection_failure(s, libpq_error(s));
  co_return co_await finish(s, deadline);
}

asio::awaitable<PgResult> PgConnection::query(std::string sql, PgParams params,
                                              std::chrono::milliseconds timeout) {
  Impl& s = *impl_;
  BusyGuard busy(s.busy);
  if (auto failed = not_connected(s)) co_return std::move(*failed);
  s.timeout = timeout;
  const Deadline deadline = SteadyClock::now() + timeout;
  const auto values = param_pointers(params);
  if (PQsendQueryParams(s.conn, sql.c_str(), static_cast<int>(values.size()), nullptr,
                        values.data(), nullptr, nullptr, 0) == 0) {
    co_return connection_failure(s, libpq_error(s));
  }
  co_return co_await finish(s, deadline);
}

asio::awaitable<PgResult> PgConnection::query_prepared(const PgStatement& statement,
                                                       PgParams params,
                                                       std::chrono::milliseconds timeout) {
  Impl& s = *impl_;
  BusyGuard busy(s.busy);
  if (auto failed = not_connected(s)) co_return std::move(*failed);
  s.timeout = timeout;
  const Deadline deadline = SteadyClock::now() + timeout;
  if (!s.prepared.contains(statement.name)) {
    if (PQsendPrepare(s.conn, statement.name.c_str(), statement.sql.c_str(), 0, nullptr) == 0) {
      co_return connection_failure(s, libpq_error(s));
    }
    PgResult prepared = co_await finish(s, deadline);
    if (!prepared.ok()) co_return prepared;
    s.prepared.insert(statement.name);
  }
  const auto values = param_pointers(params);
  if (PQsendQueryPrepared(s.conn, statement.name.c_str(), static_cast<int>(values.size()),
                          values.data(), nullptr, nullptr, 0) == 0) {
    co_return connection_failure(s, libpq_error(s));
  }
  co_return co_await finish(s, deadline);
}

asio::awaitable<PgResult> PgConnection::copy_in(std::string sql, std::string data,
                                                std::chrono::milliseconds timeout) {
  Impl& s = *impl_;
  BusyGuard busy(s.busy);
  if (auto failed = not_connected(s)) co_return std::move(*failed);
  s.timeout = timeout;
  const Deadline deadline = SteadyClock::now() + timeout;
  if (PQsendQuery(s.conn, sql.c_str()) == 0) co_return connection_failure(s, libpq_error(s));
  {
    PgResult sent = co_await flush(s, deadline);
    if (!sent.ok()) co_return sent;
  }
  bool entered_copy = false;
  PgResult started = co_await collect(s, deadline, &entered_copy);
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
    PgResult sent = co_await flush(s, deadline);
    if (!sent.ok()) co_return sent;
  }
  for (;;) {
    const int end = PQputCopyEnd(s.conn, nullptr);
    if (end < 0) co_return connection_failure(s, libpq_error(s));
    PgResult sent = co_await flush(s, deadline);
    if (!sent.ok()) co_return sent;
    if (end == 1) break;
  }
  co_return co_await collect(s, deadline);
}

asio::awaitable<PgNotificationResult> PgConnection::wait_notification(
    std::chrono::milliseconds timeout) {
  Impl& s = *impl_;
  BusyGuard busy(s.busy);
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
  const Deadline deadline = SteadyClock::now() + timeout;
  for (;;) {
    if (PQconsumeInput(s.conn) == 0) {
      auto failed = connection_failure(s, libpq_error(s));
      co_return notification_failure(failed.error());
    }
    stash_notifications(s);
    if (!s.notifications.empty()) co_return take();
    const Readiness r = co_await wait_socket(s, asio::posix::descriptor_base::wait_read, deadline);
    if (r == Readiness::timeout) co_return PgNotificationResult();  // quiet, connection kept
    if (r != Readiness::ready) {
      auto failed = connection_failure(s, "socket wait failed");
      co_return notification_failure(failed.error());
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Text forms

std::string pg_address(std::string_view dsn) {
  std::string host = dsn_option(dsn, "host");
  if (host.empty()) host = dsn_option(dsn, "hostaddr");
  std::string port = dsn_option(dsn, "port");
  if (auto comma = host.find(','); comma != std::string::npos) host.resize(comma);
  if (auto comma = port.find(','); comma != std::string::npos) port.resize(comma);
  if (host.empty()) host = "localhost";
  if (port.empty()) port = "5432";
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  return host + ":" + port;
}

std::optional<std::vector<std::optional<std::string>>> parse_pg_array(std::string_view text) {
  // Optional dimension decoration for non-default bounds: "[0:1]={a,b}".
  if (!text.empty() && text.front() == '[') {
    const auto eq = text.find('=');
    if (eq == std::string_view::npos) return std::nullopt;
    text.remove_prefix(eq + 1);
  }
  if (text.size() < 2 || text.front() != '{' || text.back() != '}') return std::nullopt;
  std::vector<std::optional<std::string>> elements;
  std::size_t i = 1;
  const std::size_t end = text.size() - 1;
  if (i == end) return elements;
  for (;;) {
    while (i < end && text[i] == ' ') ++i;
    if (i >= end) return std::nullopt;  // missing element
    std::string value;
    bool quoted = false;
    if (text[i] == '{') return std::nullopt;  // nested: not a one-dimensional array
    if (text[i] == '"') {
      quoted = true;
      ++i;
      for (;;) {
        if (i >= end) return std::nullopt;  // unterminated quote
        const char c = text[i++];
        if (c == '"') break;
        if (c == '\\') {
          if (i >= end) return std::nullopt;
          value += text[i++];
        } else {
          value += c;
        }
      }
      while (i < end && text[i] == ' ') ++i;
    } else {
      while (i < end && text[i] != ',') {
        const char c = text[i++];
        if (c == '"' || c == '{' || c == '}') return std::nullopt;
        if (c == '\\') {
          if (i >= end) return std::nullopt;
          value += text[i++];
        } else {
          value += c;
        }
      }
      while (!value.empty() && value.back() == ' ') value.pop_back();
      if (value.empty()) return std::nullopt;
    }
    const bool is_null = !quoted && value.size() == 4 &&
                         std::equal(value.begin(), value.end(), "NULL", [](char a, char b) {
                           return std::toupper(static_cast<unsigned char>(a)) == b;
                         });
    if (is_null) elements.emplace_back(std::nullopt);
    else elements.emplace_back(std::move(value));
    if (i == end) return elements;
    if (text[i] != ',') return std::nullopt;
    ++i;
  }
}

std::string format_pg_array(const std::vector<std::string>& elements) {
  std::string out = "{";
  for (std::size_t i = 0; i < elements.size(); ++i) {
    if (i != 0) out += ',';
    out += '"';
    for (const char c : elements[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  out += '}';
  return out;
}

std::optional<std::vector<std::uint8_t>> parse_pg_bytea(std::string_view text) {
  if (!text.starts_with("\\x")) return std::nullopt;
  return core::decode_hex(text.substr(2));
}

std::string format_pg_bytea(const std::uint8_t* data, std::size_t size) {
  std::string out = "\\x";
  core::append_hex(out, std::span<const std::uint8_t>(data, size));
  return out;
}

}  // namespace keygate::store
