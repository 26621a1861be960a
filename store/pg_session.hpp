#pragma once
// Inside PgConnection (private to store/pg_*.cpp): the libpq state and the waits every
// operation is made of. libpq's non-blocking API does the protocol; Asio only waits for socket
// readiness, each wait bounded by the operation's deadline.
#include <libpq-fe.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>

#include "store/pg_connection.hpp"

namespace keygate::store {

struct PgConnection::Impl {
  explicit Impl(boost::asio::any_io_executor executor) : socket(executor), timer(executor) {}

  boost::asio::posix::stream_descriptor socket;  // libpq's fd, never closed by Asio (release())
  boost::asio::steady_timer timer;
  PGconn* conn = nullptr;
  bool broken = false;
  bool busy = false;
  std::string address = "(not connected)";
  std::string password;  // only to scrub it from messages
  std::chrono::milliseconds timeout{0};  // of the operation in flight, for messages
  std::unordered_set<std::string> prepared;
  std::deque<PgNotification> notifications;
};

namespace detail {

using PgSession = PgConnection::Impl;
using PgDeadline = std::chrono::steady_clock::time_point;

// One operation in flight, for the life of the coroutine running it: marks the session busy
// (two at once on one connection is a caller bug: std::logic_error) and holds its deadline.
class PgOperation {
 public:
  PgOperation(PgSession& s, std::chrono::milliseconds timeout);
  ~PgOperation() { busy_ = false; }
  PgOperation(const PgOperation&) = delete;
  PgOperation& operator=(const PgOperation&) = delete;

  const PgDeadline deadline;

 private:
  bool& busy_;
};

std::string libpq_error(const PgSession& s);  // PQerrorMessage as one line
std::string scrub(const PgSession& s, std::string message);  // the password hidden

// Registers libpq's current fd afresh: the fd can change while connecting (another address is
// tried), and a reused fd number is not registered with the reactor.
bool register_socket(PgSession& s);
// PQfinish and forget the fd and what was prepared; the session counts as broken.
void drop(PgSession& s);

PgResult connection_failure(PgSession& s, std::string_view what);  // drops the session
PgResult timeout_failure(PgSession& s);                             // drops the session
// A failure if the session is not open, else nullopt.
std::optional<PgResult> not_connected(const PgSession& s);

enum class PgReadiness { ready, readable, writable, timeout, error };
boost::asio::awaitable<PgReadiness> wait_socket(PgSession& s,
                                                boost::asio::posix::descriptor_base::wait_type what,
                                                PgDeadline deadline);

void stash_notifications(PgSession& s);
// Reads the results of the command in flight until libpq has none left (or COPY IN starts,
// when `entered_copy` is given: it is then set). The first error wins, else the last result.
boost::asio::awaitable<PgResult> collect(PgSession& s, PgDeadline deadline,
                                         bool* entered_copy = nullptr);
// Sends everything libpq has buffered: an ok result, or the failure.
boost::asio::awaitable<PgResult> flush(PgSession& s, PgDeadline deadline);
// flush, then collect.
boost::asio::awaitable<PgResult> finish(PgSession& s, PgDeadline deadline);

}  // namespace detail
}  // namespace keygate::store
