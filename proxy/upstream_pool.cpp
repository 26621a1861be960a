#include "proxy/upstream_pool.hpp"

#include <sys/socket.h>

#include <cerrno>

#include "store/metrics.hpp"

namespace keygate::proxy {

namespace {

// A connection idle longer than this is probed before reuse: upstreams close idle keep-alive
// connections after some seconds, and a probe (one non-blocking recv) is cheaper than a
// failed request. Fresher connections skip it; a stale one is then retried (see forward.cpp).
constexpr auto probe_after = std::chrono::seconds(1);

// Open and quiet: the upstream neither closed it nor sent bytes nobody asked for.
bool looks_open(boost::asio::ip::tcp::socket& socket) {
  char byte;
  const ssize_t n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

}  // namespace

UpstreamConnection::UpstreamConnection(boost::asio::io_context& io) : stream(io) {
  store::metrics().open_upstream_connections.fetch_add(1, std::memory_order_relaxed);
}

UpstreamConnection::~UpstreamConnection() {
  store::metrics().open_upstream_connections.fetch_sub(1, std::memory_order_relaxed);
}

UpstreamPool::UpstreamPool(std::vector<boost::asio::ip::tcp::endpoint> endpoints,
                           std::size_t max_idle)
    : endpoints_(std::move(endpoints)), max_idle_(max_idle) {
  idle_.reserve(max_idle_);
}

UpstreamConnectionPtr UpstreamPool::take(bool probe_always) {
  const auto now = std::chrono::steady_clock::now();
  while (!idle_.empty()) {
    UpstreamConnectionPtr connection = std::move(idle_.back());
    idle_.pop_back();
    const bool fresh = !probe_always && now - connection->idle_since < probe_after;
    if (fresh || looks_open(connection->stream.socket())) {
      connection->reused = true;
      return connection;
    }
  }
  return nullptr;
}

void UpstreamPool::give_back(UpstreamConnectionPtr connection) {
  if (idle_.size() >= max_idle_ || !connection->stream.socket().is_open()) return;
  connection->idle_since = std::chrono::steady_clock::now();
  idle_.push_back(std::move(connection));
}

}  // namespace keygate::proxy
