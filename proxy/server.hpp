#pragma once
// The HTTP front of keygate: one io_context per worker thread, each with its own acceptor on
// the listen port (SO_REUSEPORT), a pool of keep-alive upstream connections, and the admin
// listener (/healthz, /readyz, /metrics) on worker 0. Each request is authorized by the
// worker's authz::Authorizer, then forwarded (mode proxy) or answered (mode authz).
// Light header: Asio's io_context and awaitable only, no Beast.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "authz/authorizer.hpp"
#include "core/ip_network.hpp"

namespace boost::asio::ssl {
class context;
}

namespace keygate::proxy {

// TLS on the listener (edge mode); off while cert_file is empty.
struct TlsOptions {
  std::string cert_file;  // PEM: the certificate, then any intermediates
  std::string key_file;   // PEM private key (unencrypted)
  enum class Version { tls1_2, tls1_3 } min_version = Version::tls1_2;
  bool enabled() const { return !cert_file.empty(); }
};

// TLS to the upstream (an https:// upstream).
struct UpstreamTlsOptions {
  bool enabled = false;
  bool verify = true;       // verify the certificate chain and the name
  std::string ca_file;      // PEM bundle; empty: the system's trust store
  std::string server_name;  // SNI and the name checked; empty: upstream_host
};

// One JSON line per request, written by a background thread (see access_log.hpp).
struct AccessLogOptions {
  enum class Mode { off, sampled, all } mode = Mode::off;
  double sample_rate = 0.01;     // sampled: this share of requests (every 5xx is written)
  std::string path = "stderr";   // stderr | stdout | a file, appended to
};

struct ProxyOptions {
  enum class Mode { proxy, authz } mode = Mode::proxy;
  std::string listen_host = "0.0.0.0";
  std::uint16_t listen_port = 8080;  // 0: any free port (see Server::port())
  std::string admin_host = "127.0.0.1";
  std::uint16_t admin_port = 9901;   // 0: any free port (see Server::admin_port())
  std::string upstream_host = "127.0.0.1";
  std::uint16_t upstream_port = 9000;
  TlsOptions tls;
  UpstreamTlsOptions upstream_tls;
  AccessLogOptions access_log;
  unsigned threads = 1;
  std::vector<std::string> credential_headers{"authorization", "x-api-key"};  // lower case
  std::string credential_query_parameter;  // empty: keys in the query string are not accepted
  bool hide_credentials = true;
  std::vector<core::IpNetwork> trusted_proxies;
  std::size_t max_header_bytes = 16 * 1024;
  std::uint64_t max_body_bytes = 101ull * 1024 * 1024;
  // The first request's header: from the connection's opening (a TLS handshake included); a
  // later one's from its first byte. Then 408.
  std::chrono::milliseconds header_timeout{10000};
  // The longest wait between two reads of a request body (nginx's client_body_timeout); then
  // 408, or a close when the answer is already decided.
  std::chrono::milliseconds body_timeout{60000};
  std::chrono::milliseconds idle_timeout{60000};  // keep-alive, between two requests
  std::chrono::milliseconds upstream_connect_timeout{2000};
  std::chrono::milliseconds upstream_response_timeout{30000};
  std::chrono::milliseconds shutdown_timeout{15000};
  // Open client connections, all workers. One over it is answered 503 over_capacity and
  // closed, without being counted (see turn_away.hpp).
  std::size_t max_connections = 10000;
  std::size_t upstream_pool_size = 64;  // idle keep-alive upstream connections per worker
  bool handle_signals = true;  // SIGTERM/SIGINT drain and stop, SIGHUP reloads (tests: off)
};

// What the logging phase sees for every request, passed or rejected (usage log, issue #5).
// Valid only during the call. `auth` is null when keygate answered before authorizing
// (400, 408, 413, 431). `path` is the normalized path without the query (which may hold a
// key); empty when the target could not be normalized.
struct CompletedRequest {
  const authz::AuthResult* auth;
  std::string_view method, path, user_agent;
  core::IpAddress client_ip;
  int status;
  std::chrono::microseconds duration;
};

// Everything one worker's requests use below the proxy: its stores, rate limiter and
// authorizer, built by the composition root on that worker's io_context. The Server owns it
// and destroys it only after every request of that worker has finished, or had its suspended
// coroutine destroyed: no request outlives what it waits on (a PostgreSQL pool, a Redis
// connection).
class WorkerStack {
 public:
  virtual ~WorkerStack() = default;
  // The last run of background work that must not be lost (e.g. quota counts still to be
  // written), on the worker's thread after the drain (requests finished, or cut at
  // shutdown_timeout) while its io_context still runs. The Server waits for it at most 1 s;
  // what is still running then is destroyed with the requests.
  virtual boost::asio::awaitable<void> finish();
};

// What each worker thread gets from the composition root; built on that worker's io_context.
struct WorkerServices {
  std::unique_ptr<WorkerStack> stack;       // required; owns what `authorizer` points into
  authz::Authorizer* authorizer = nullptr;  // required; inside `stack`
  std::function<void(const CompletedRequest&)> on_completed;  // may be empty; must not block
};
using WorkerFactory =
    std::function<WorkerServices(boost::asio::io_context& io, unsigned worker_index)>;

// Destruction order: every io_context is stopped and shut down first, which destroys the
// requests still suspended in them (their stacks still exist), then the stacks, then the rest.
class Server {
 public:
  // Creates the workers' io_contexts and calls make_worker once for each (on this thread).
  // Throws std::runtime_error naming the file when a TLS certificate, key or CA file cannot be
  // used, or the access log cannot be opened.
  Server(ProxyOptions options, WorkerFactory make_worker, std::function<bool()> is_ready);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the listener and the admin listener; throws std::system_error naming the address on
  // failure. run() calls it when it was not called before.
  void listen();
  std::uint16_t port() const;        // after listen(): the bound listen port
  std::uint16_t admin_port() const;  // after listen(): the bound admin port

  // One more listener on worker 0 (the key-management API), added before listen(): bound by
  // listen() (which throws naming `what` and the address), served by `serve` from run(),
  // closed when the drain begins, destroyed with the io_contexts.
  using ListenerLoop = std::function<boost::asio::awaitable<void>(boost::asio::ip::tcp::acceptor&)>;
  void add_listener(std::string what, std::string host, std::uint16_t port, ListenerLoop serve);
  std::uint16_t listener_port(std::size_t index) const;  // after listen(), in the order added

  // Serves (worker 0 on the calling thread) until SIGTERM/SIGINT or stop(); then stops
  // accepting and lets in-flight requests finish within shutdown_timeout (keep-alive
  // connections close after their current response; idle ones after a short grace in which a
  // request that arrives is still served). At shutdown_timeout the connections still open are
  // closed with no answer (the count is logged); their requests stay suspended until the
  // Server is destroyed. Then each worker's WorkerStack::finish() runs, and run() returns with
  // the io_contexts stopped and the access log flushed.
  void run();
  // After run(): what is left of shutdown_timeout since the drain began (for flushing the
  // caller's own work within the same deadline); zero when it has run out.
  std::chrono::milliseconds shutdown_time_left() const;
  void stop();  // thread-safe; also before run()

  // SIGHUP (with handle_signals) calls `reload` on worker 0's thread; it returns whether the
  // new configuration was applied (counted in keygate_config_reloads_total). Set before run().
  void on_reload(std::function<bool()> reload);
  // Loads a new certificate and key for the connections accepted from now on (open ones keep
  // theirs). Thread-safe. Returns an empty string when applied, else the reason; the running
  // certificate is then kept. A listener started without TLS cannot turn it on.
  std::string reload_tls(const TlsOptions& tls);
  // The listener's TLS context as worker 0 hands it to a connection it accepts now (reloads
  // included), for the listeners added with add_listener; null without TLS. Only on worker
  // 0's thread.
  std::shared_ptr<boost::asio::ssl::context> worker_tls_context() const;
  // New access-log settings (and the file reopened, for log rotation). Thread-safe. Returns an
  // empty string when applied, else the reason; the running settings are then kept.
  std::string reload_access_log(const AccessLogOptions& options);

  // Runs fn on every worker's io_context (e.g. to invalidate each worker's L1 cache).
  void post_to_workers(std::function<void(unsigned worker_index)> fn);
  // The io_context of worker 0, for process-wide background tasks (LISTEN, subscriber).
  boost::asio::io_context& main_context();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace keygate::proxy
