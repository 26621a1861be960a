#pragma once
// Internal to proxy/: one worker thread's state. Everything here is touched only from the
// worker's own io_context, except ServerShared's atomics.
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "proxy/server.hpp"
#include "proxy/upstream_pool.hpp"

namespace boost::asio::ssl {
class context;
}

namespace keygate::proxy {

class AccessLog;

// An io_context whose pending handlers (suspended sessions) can be destroyed on demand, so
// that they go before the services they reference (see ~Server).
class WorkerContext : public boost::asio::io_context {
 public:
  WorkerContext() : boost::asio::io_context(1) {}
  using boost::asio::io_context::shutdown;
};

// State every worker shares.
struct ServerShared {
  explicit ServerShared(ProxyOptions opts) : options(std::move(opts)) {}
  const ProxyOptions options;
  std::atomic<std::size_t> connections{0};  // open client connections, all workers
  std::atomic<bool> draining{false};
  std::function<void()> on_drained;  // called on some worker when the last connection closes
  AccessLog* access_log = nullptr;    // null: none
  std::shared_ptr<boost::asio::ssl::context> upstream_tls;  // null: plain http upstream
  std::string upstream_server_name;
};

// A client connection as the worker sees it, so that draining can close idle ones.
struct SessionLink {
  SessionLink* prev = nullptr;
  SessionLink* next = nullptr;
  boost::asio::ip::tcp::socket* socket = nullptr;
  bool idle = true;  // waiting for the first byte of a request
};

// Fixed-size buffers lent for the length of one exchange; kept per worker so that idle
// keep-alive connections hold none.
template <std::size_t Size>
class BufferPool {
 public:
  static constexpr std::size_t size = Size;
  std::unique_ptr<char[]> take() {
    if (spare_.empty()) return std::make_unique_for_overwrite<char[]>(size);
    auto buffer = std::move(spare_.back());
    spare_.pop_back();
    return buffer;
  }
  void give_back(std::unique_ptr<char[]> buffer) {
    if (spare_.size() < 64) spare_.push_back(std::move(buffer));
  }

 private:
  std::vector<std::unique_ptr<char[]>> spare_;
};

using RelayBuffers = BufferPool<32 * 1024>;  // body bytes move through one of these
using HeaderBlocks = BufferPool<4 * 1024>;   // the header fields of one exchange (HeaderArena)

struct Worker {
  Worker(ServerShared& shared_state, unsigned worker_index,
         std::vector<boost::asio::ip::tcp::endpoint> upstream);

  void add(SessionLink& link);
  void remove(SessionLink& link);
  // Stops accepting; busy connections close after their current response, idle ones after
  // `idle_grace` (a request arriving meanwhile is served, with Connection: close).
  void start_draining(std::chrono::milliseconds idle_grace);
  void close_idle();
  // shutdown_timeout has passed: closes every connection still open, so that no client waits
  // on a request that will never be answered. A session suspended below the proxy (in a
  // store) stays suspended until the io_context is shut down. Returns how many connections
  // had a request in flight.
  std::size_t cut_connections();

  WorkerContext io;  // first: destroyed last
  ServerShared& shared;
  const ProxyOptions& options;
  const unsigned index;
  UpstreamPool pool;
  RelayBuffers buffers;
  HeaderBlocks header_blocks;
  SessionLink sessions;  // sentinel of the list of open connections
  std::size_t turning_away = 0;  // over max_connections, being answered 503 (turn_away.hpp)
  bool draining = false;
  std::optional<boost::asio::ip::tcp::acceptor> acceptor;
  std::optional<boost::asio::steady_timer> idle_timer;  // the drain's idle grace
  std::chrono::steady_clock::time_point idle_grace_end{};
  std::shared_ptr<boost::asio::ssl::context> tls;      // listener TLS; null: plain http
  std::string log_line;                                 // access-log lines are formatted here
  WorkerServices services;  // reset by ~Server after `io` is shut down (see there)
};

// The completion of a coroutine spawned on a worker's loop: an exception that escaped it is a
// bug, not a client's doing, and gets one log line (never request data). `where` names it.
void report_failure(std::exception_ptr failure, const char* where);

}  // namespace keygate::proxy
