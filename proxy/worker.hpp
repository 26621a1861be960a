#pragma once
// Internal to proxy/: one worker thread's state. Everything here is touched only from the
// worker's own io_context, except ServerShared's atomics.
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "proxy/server.hpp"
#include "proxy/upstream_pool.hpp"

namespace keygate::proxy {

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
};

// A client connection as the worker sees it, so that draining can close idle ones.
struct SessionLink {
  SessionLink* prev = nullptr;
  SessionLink* next = nullptr;
  boost::asio::ip::tcp::socket* socket = nullptr;
  bool idle = true;  // waiting for the first byte of a request
};

// Body bytes move through one of these fixed buffers; kept per worker so that idle
// keep-alive connections hold none.
class RelayBuffers {
 public:
  static constexpr std::size_t size = 32 * 1024;
  std::unique_ptr<char[]> take();
  void give_back(std::unique_ptr<char[]> buffer);

 private:
  std::vector<std::unique_ptr<char[]>> spare_;
};

struct Worker {
  Worker(ServerShared& shared_state, unsigned worker_index,
         std::vector<boost::asio::ip::tcp::endpoint> upstream);

  void add(SessionLink& link);
  void remove(SessionLink& link);
  // Stops accepting; idle connections close now, busy ones after their current response.
  void start_draining();

  WorkerContext io;  // first: destroyed last
  ServerShared& shared;
  const ProxyOptions& options;
  const unsigned index;
  UpstreamPool pool;
  RelayBuffers buffers;
  SessionLink sessions;  // sentinel of the list of open connections
  bool draining = false;
  std::optional<boost::asio::ip::tcp::acceptor> acceptor;
  WorkerServices services;
};

}  // namespace keygate::proxy
