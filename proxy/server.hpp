#pragma once
// The HTTP front of keygate: one io_context per worker thread, each with its own acceptor on
// the listen port (SO_REUSEPORT), a pool of keep-alive upstream connections, and the admin
// listener (/healthz, /readyz, /metrics) on worker 0. Each request is authorized by the
// worker's authz::Authorizer, then forwarded (mode proxy) or answered (mode authz).
// Light header: Asio's io_context only, no Beast.
#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "authz/authorizer.hpp"
#include "store/ip_network.hpp"

namespace keygate::proxy {

struct ProxyOptions {
  enum class Mode { proxy, authz } mode = Mode::proxy;
  std::string listen_host = "0.0.0.0";
  std::uint16_t listen_port = 8080;  // 0: any free port (see Server::port())
  std::string admin_host = "127.0.0.1";
  std::uint16_t admin_port = 9901;   // 0: any free port (see Server::admin_port())
  std::string upstream_host = "127.0.0.1";  // plain http
  std::uint16_t upstream_port = 9000;
  unsigned threads = 1;
  std::vector<std::string> credential_headers{"authorization", "x-api-key"};  // lower case
  std::string credential_query_parameter;  // empty: keys in the query string are not accepted
  bool hide_credentials = true;
  std::vector<store::IpNetwork> trusted_proxies;
  std::size_t max_header_bytes = 16 * 1024;
  std::uint64_t max_body_bytes = 101ull * 1024 * 1024;
  std::chrono::milliseconds header_timeout{10000};
  std::chrono::milliseconds idle_timeout{60000};
  std::chrono::milliseconds upstream_connect_timeout{2000};
  std::chrono::milliseconds upstream_response_timeout{30000};
  std::chrono::milliseconds shutdown_timeout{15000};
  std::size_t max_connections = 10000;
  std::size_t upstream_pool_size = 64;  // idle keep-alive upstream connections per worker
  bool handle_signals = true;           // SIGTERM/SIGINT drain and stop (tests turn it off)
};

// What the logging phase sees for every request, passed or rejected (usage log, issue #5).
// Valid only during the call. `auth` is null when keygate answered before authorizing
// (400, 408, 413, 431). `path` is the normalized path without the query (which may hold a
// key); empty when the target could not be normalized.
struct CompletedRequest {
  const authz::AuthResult* auth;
  std::string_view method, path, user_agent;
  store::IpAddress client_ip;
  int status;
  std::chrono::microseconds duration;
};

// What each worker thread gets from the composition root; built on that worker's io_context.
struct WorkerServices {
  std::unique_ptr<authz::Authorizer> authorizer;
  std::function<void(const CompletedRequest&)> on_completed;  // may be empty; must not block
};
using WorkerFactory =
    std::function<WorkerServices(boost::asio::io_context& io, unsigned worker_index)>;

class Server {
 public:
  // Creates the workers' io_contexts and calls make_worker once for each (on this thread).
  Server(ProxyOptions options, WorkerFactory make_worker, std::function<bool()> is_ready);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the listener and the admin listener; throws std::system_error naming the address on
  // failure. run() calls it when it was not called before.
  void listen();
  std::uint16_t port() const;        // after listen(): the bound listen port
  std::uint16_t admin_port() const;  // after listen(): the bound admin port

  // Serves (worker 0 on the calling thread) until SIGTERM/SIGINT or stop(); then stops
  // accepting, lets in-flight requests finish within shutdown_timeout (keep-alive connections
  // close after their current response) and returns. The io_contexts are stopped on return;
  // the caller may restart() and run main_context() to finish its own background work.
  void run();
  void stop();  // thread-safe; also before run()

  // Runs fn on every worker's io_context (e.g. to invalidate each worker's L1 cache).
  void post_to_workers(std::function<void(unsigned worker_index)> fn);
  // The io_context of worker 0, for process-wide background tasks (LISTEN, subscriber).
  boost::asio::io_context& main_context();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace keygate::proxy
