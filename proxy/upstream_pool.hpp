#pragma once
// A worker's idle keep-alive connections to the upstream (at most max_idle), reused newest
// first. Connections are counted in store::metrics().open_upstream_connections while open.
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <vector>

#include "proxy/stream.hpp"

namespace keygate::proxy {

class UpstreamConnection {
 public:
  explicit UpstreamConnection(boost::asio::io_context& io);
  ~UpstreamConnection();
  UpstreamConnection(const UpstreamConnection&) = delete;
  UpstreamConnection& operator=(const UpstreamConnection&) = delete;

  Stream stream;  // TLS when the upstream is https
  std::chrono::steady_clock::time_point idle_since{};
  bool reused = false;  // came from the pool: may have been closed by the upstream meanwhile
};

using UpstreamConnectionPtr = std::unique_ptr<UpstreamConnection>;

class UpstreamPool {
 public:
  UpstreamPool(std::vector<boost::asio::ip::tcp::endpoint> endpoints, std::size_t max_idle);

  // The most recently used idle connection that still looks open, or null. Connections idle
  // for a while are probed (one non-blocking recv); with `probe_always`, every one is.
  UpstreamConnectionPtr take(bool probe_always);
  // Keeps a connection whose last response ended cleanly (closes it when the pool is full).
  void give_back(UpstreamConnectionPtr connection);
  const std::vector<boost::asio::ip::tcp::endpoint>& endpoints() const { return endpoints_; }
  std::size_t idle_count() const { return idle_.size(); }

 private:
  std::vector<boost::asio::ip::tcp::endpoint> endpoints_;
  std::size_t max_idle_;
  std::vector<UpstreamConnectionPtr> idle_;
};

}  // namespace keygate::proxy
