// Threads, listeners, signals and the graceful drain. The request path is in session.cpp.
#include "proxy/server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/as_tuple.hpp>

#include <csignal>
#include <cstdio>
#include <exception>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <thread>

#include "core/log.hpp"
#include "proxy/access_log.hpp"
#include "proxy/admin.hpp"
#include "proxy/ops_metrics.hpp"
#include "proxy/session.hpp"
#include "proxy/tls.hpp"
#include "proxy/turn_away.hpp"
#include "proxy/worker.hpp"

namespace keygate::proxy {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

std::string describe(const std::string& host, std::uint16_t port) {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::vector<tcp::endpoint> resolve(asio::io_context& io, const std::string& host,
                                   std::uint16_t port, const char* what) {
  boost::system::error_code ec;
  tcp::resolver resolver(io);
  const auto results = resolver.resolve(host, std::to_string(port),
                                        tcp::resolver::numeric_service, ec);
  if (ec || results.empty()) {
    if (!ec) ec = asio::error::host_not_found;
    throw std::system_error(ec, std::string("cannot resolve ") + what + " " + describe(host, port));
  }
  std::vector<tcp::endpoint> endpoints;
  for (const auto& entry : results) endpoints.push_back(entry.endpoint());
  return endpoints;
}

tcp::acceptor open_acceptor(asio::io_context& io, const tcp::endpoint& endpoint, bool share_port,
                            const std::string& name) {
  tcp::acceptor acceptor(io);
  boost::system::error_code ec;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec && share_port) acceptor.set_option(reuse_port(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) throw std::system_error(ec, "cannot listen on " + name);
  return acceptor;
}

// Idle keep-alive connections get this long, at most, to send one more request once a drain
// has begun: a client that was about to send is answered (with Connection: close) instead of
// finding its connection closed under it.
std::chrono::milliseconds idle_grace(const ProxyOptions& options) {
  return std::min(std::chrono::milliseconds(1000), options.shutdown_timeout / 2);
}

asio::awaitable<void> accept_connections(Worker& worker) {
  for (;;) {
    auto [ec, socket] = co_await worker.acceptor->async_accept(asio::as_tuple(asio::use_awaitable));
    if (ec) {
      if (ec == asio::error::operation_aborted || !worker.acceptor->is_open()) co_return;
      // Out of descriptors or similar: back off briefly rather than spin.
      asio::steady_timer pause(worker.io, std::chrono::milliseconds(50));
      co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
      continue;
    }
    if (worker.shared.connections.load(std::memory_order_relaxed) < worker.options.max_connections) {
      worker.shared.connections.fetch_add(1, std::memory_order_relaxed);
      asio::co_spawn(worker.io, serve_connection(worker, std::move(socket)),
                     [](std::exception_ptr e) { report_failure(e, "connection"); });
    } else {
      turn_away(worker, std::move(socket));  // 503 over_capacity, or closed: not awaited
    }
  }
}

}  // namespace

// ---- Server -------------------------------------------------------------------------------

struct Server::State {
  State(ProxyOptions options, std::function<bool()> ready)
      : shared(std::move(options)), is_ready(std::move(ready)) {}
  ~State();

  Worker& main() { return *workers.front(); }
  void begin_drain();
  void finish();
  void count_cut(std::size_t requests);
  void stop_loops();
  void wait_for_reload();

  ServerShared shared;
  std::function<bool()> is_ready;
  std::unique_ptr<AccessLog> access_log;  // outlives the workers (suspended sessions log)
  std::vector<std::unique_ptr<Worker>> workers;  // destroyed after everything below
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  std::optional<tcp::acceptor> admin;
  struct ExtraListener {
    std::string what, host;
    std::uint16_t port = 0;
    Server::ListenerLoop serve;
    std::optional<tcp::acceptor> acceptor;
  };
  std::vector<ExtraListener> extra_listeners;
  std::optional<asio::signal_set> signals;
  std::optional<asio::signal_set> reload_signals;  // SIGHUP
  std::function<bool()> reload;
  std::optional<asio::steady_timer> drain_timer;
  std::optional<asio::steady_timer> last_run_timer;  // bounds the stacks' finish()
  std::chrono::steady_clock::time_point drain_deadline{};
  std::size_t workers_cut = 0;     // workers that closed what was left open
  std::size_t requests_cut = 0;    // requests in flight on those connections
  std::size_t stacks_running = 0;  // WorkerStack::finish() not yet done
  bool listener_tls = false;  // fixed at construction
  bool listening = false;
  bool drain_started = false;
  bool finished = false;
  bool loops_stopped = false;
};

// What the stacks' last run (WorkerStack::finish) gets at most before the loops stop.
constexpr std::chrono::milliseconds last_run_limit{1000};

// The requests still suspended (cut at shutdown_timeout, or never resumed) are destroyed
// first, while the stacks they reference exist: every loop stops, then every io_context is
// shut down, which destroys its pending handlers and with them the coroutines waiting there
// (on any worker: a coroutine may post to another's context). Only then the stacks. Sockets
// and timers may outlive a shut-down context; they must not outlive a destroyed one.
Server::State::~State() {
  for (auto& worker : workers) worker->io.stop();
  for (auto& worker : workers) worker->io.shutdown();
  for (auto& worker : workers) worker->services = WorkerServices{};
}

// Runs on worker 0.
void Server::State::begin_drain() {
  if (drain_started) return;
  drain_started = true;
  drain_deadline = std::chrono::steady_clock::now() + shared.options.shutdown_timeout;
  shared.draining.store(true);
  const auto grace = idle_grace(shared.options);
  for (auto& worker : workers) {
    Worker* w = worker.get();
    asio::post(w->io, [w, grace] { w->start_draining(grace); });
  }
  boost::system::error_code ignored;
  if (admin) admin->close(ignored);
  for (auto& extra : extra_listeners) {
    if (extra.acceptor) extra.acceptor->close(ignored);
  }
  if (signals) signals->cancel(ignored);
  if (reload_signals) reload_signals->cancel(ignored);
  if (shared.connections.load() == 0) {
    finish();
    return;
  }
  drain_timer.emplace(main().io, drain_deadline);
  drain_timer->async_wait([this](const boost::system::error_code&) { finish(); });
}

// Runs on worker 0: one reload per SIGHUP, until the drain begins.
void Server::State::wait_for_reload() {
  reload_signals->async_wait([this](const boost::system::error_code& ec, int) {
    if (ec || drain_started) return;
    bool applied = false;
    if (reload) {
      try {
        applied = reload();
      } catch (...) {
        report_failure(std::current_exception(), "reload");
      }
    } else {
      core::log_warn("SIGHUP ignored: nothing to reload");
    }
    (applied ? ops_metrics().reloads_applied : ops_metrics().reloads_rejected)
        .fetch_add(1, std::memory_order_relaxed);
    wait_for_reload();
  });
}

// Runs on worker 0 once every connection has closed, or at shutdown_timeout: each worker
// closes what is still open, then its stack has its last run; when every stack is done (or
// last_run_limit passed) the loops stop and run() returns.
void Server::State::finish() {
  if (finished) return;
  finished = true;
  if (drain_timer) drain_timer->cancel();
  stacks_running = workers.size();
  last_run_timer.emplace(main().io, last_run_limit);
  last_run_timer->async_wait([this](const boost::system::error_code& ec) {
    if (!ec) stop_loops();
  });
  for (auto& worker : workers) {
    Worker* w = worker.get();
    asio::post(w->io, [this, w] {
      const std::size_t cut = w->cut_connections();
      asio::post(main().io, [this, cut] { count_cut(cut); });
      asio::co_spawn(w->io, w->services.stack->finish(), [this](std::exception_ptr e) {
        report_failure(e, "the last run of a worker's stores");
        asio::post(main().io, [this] {
          if (--stacks_running == 0) stop_loops();
        });
      });
    });
  }
}

// Runs on worker 0.
void Server::State::count_cut(std::size_t requests) {
  requests_cut += requests;
  if (++workers_cut < workers.size() || requests_cut == 0) return;
  // Their clients saw the connection close with no answer.
  core::log_warn("shutdown_timeout reached: requests still in flight were cut",
                 {{"requests", requests_cut},
                  {"shutdown_timeout_ms", shared.options.shutdown_timeout.count()}});
}

// Runs on worker 0: every worker's loop stops; run() returns.
void Server::State::stop_loops() {
  if (loops_stopped) return;
  loops_stopped = true;
  if (last_run_timer) last_run_timer->cancel();
  if (stacks_running > 0) {
    core::log_warn("the stores' last run at shutdown did not finish in time; the rest is dropped",
                   {{"workers", stacks_running}, {"limit_ms", last_run_limit.count()}});
  }
  guards.clear();
  for (auto& worker : workers) worker->io.stop();
}

Server::Server(ProxyOptions options, WorkerFactory make_worker, std::function<bool()> is_ready)
    : state_(std::make_unique<State>(std::move(options), std::move(is_ready))) {
  const ProxyOptions& opts = state_->shared.options;
  const unsigned count = opts.threads == 0 ? 1 : opts.threads;
  std::shared_ptr<asio::ssl::context> listener_tls;
  if (opts.tls.enabled()) {
    TlsContext built = make_server_context(opts.tls);
    if (!built.context) throw std::runtime_error(built.error);
    listener_tls = std::move(built.context);
    state_->listener_tls = true;
  }
  if (opts.mode == ProxyOptions::Mode::proxy && opts.upstream_tls.enabled) {
    TlsContext built = make_client_context(opts.upstream_tls);
    if (!built.context) throw std::runtime_error(built.error);
    state_->shared.upstream_tls = std::move(built.context);
    state_->shared.upstream_server_name = opts.upstream_tls.server_name.empty()
                                              ? opts.upstream_host
                                              : opts.upstream_tls.server_name;
  }
  state_->access_log = std::make_unique<AccessLog>(opts.access_log, count);
  state_->shared.access_log = state_->access_log.get();
  for (unsigned i = 0; i < count; ++i) {
    std::vector<tcp::endpoint> upstream;
    if (opts.mode == ProxyOptions::Mode::proxy) {
      // Resolved once at startup; the worker's own context is only used for the lookup.
      asio::io_context resolver_context;
      upstream = resolve(resolver_context, opts.upstream_host, opts.upstream_port, "upstream");
    }
    state_->workers.push_back(std::make_unique<Worker>(state_->shared, i, std::move(upstream)));
    state_->workers.back()->tls = listener_tls;
  }
  for (auto& worker : state_->workers) {
    worker->services = make_worker(worker->io, worker->index);
    if (!worker->services.stack || worker->services.authorizer == nullptr) {
      throw std::invalid_argument(
          "proxy::Server: the worker factory returned no stack or no authorizer");
    }
  }
  State* state = state_.get();
  state_->shared.on_drained = [state] {
    asio::post(state->main().io, [state] { state->finish(); });
  };
}

Server::~Server() = default;  // the order is State's (see ~State)

asio::awaitable<void> WorkerStack::finish() { co_return; }

void Server::listen() {
  State& s = *state_;
  if (s.listening) return;
  const ProxyOptions& opts = s.shared.options;
  const std::string name = describe(opts.listen_host, opts.listen_port);
  const tcp::endpoint first = resolve(s.main().io, opts.listen_host, opts.listen_port, "listen")[0];
  std::uint16_t bound_port = 0;
  for (auto& worker : s.workers) {
    const tcp::endpoint endpoint(first.address(), bound_port == 0 ? first.port() : bound_port);
    worker->acceptor.emplace(open_acceptor(worker->io, endpoint, true, name));
    bound_port = worker->acceptor->local_endpoint().port();
  }
  const std::string admin_name = describe(opts.admin_host, opts.admin_port);
  const tcp::endpoint admin_endpoint =
      resolve(s.main().io, opts.admin_host, opts.admin_port, "admin listen")[0];
  s.admin.emplace(open_acceptor(s.main().io, admin_endpoint, false, admin_name));
  for (auto& extra : s.extra_listeners) {
    const tcp::endpoint endpoint = resolve(s.main().io, extra.host, extra.port, extra.what.c_str())[0];
    extra.acceptor.emplace(open_acceptor(s.main().io, endpoint, false, describe(extra.host, extra.port)));
  }
  s.listening = true;
}

std::uint16_t Server::port() const {
  return state_->main().acceptor ? state_->main().acceptor->local_endpoint().port() : 0;
}

void Server::add_listener(std::string what, std::string host, std::uint16_t port, ListenerLoop serve) {
  state_->extra_listeners.push_back({std::move(what), std::move(host), port, std::move(serve), std::nullopt});
}

std::uint16_t Server::listener_port(std::size_t index) const {
  const auto& extra = state_->extra_listeners.at(index);
  return extra.acceptor ? extra.acceptor->local_endpoint().port() : 0;
}

std::uint16_t Server::admin_port() const {
  return state_->admin ? state_->admin->local_endpoint().port() : 0;
}

void Server::run() {
  State& s = *state_;
  listen();
  for (auto& worker : s.workers) {
    s.guards.push_back(asio::make_work_guard(worker->io));
    asio::co_spawn(worker->io, accept_connections(*worker),
                   [](std::exception_ptr e) { report_failure(e, "accept"); });
  }
  asio::co_spawn(s.main().io, serve_admin(*s.admin, s.is_ready),
                 [](std::exception_ptr e) { report_failure(e, "admin"); });
  for (auto& extra : s.extra_listeners) {
    asio::co_spawn(s.main().io, extra.serve(*extra.acceptor),
                   [what = extra.what](std::exception_ptr e) { report_failure(e, what.c_str()); });
  }
  if (s.shared.options.handle_signals) {
    s.signals.emplace(s.main().io, SIGTERM, SIGINT);
    s.signals->async_wait([&s](const boost::system::error_code& ec, int) {
      if (!ec) s.begin_drain();
    });
    s.reload_signals.emplace(s.main().io, SIGHUP);
    s.wait_for_reload();
  }
  s.access_log->start();
  std::vector<std::thread> threads;
  for (std::size_t i = 1; i < s.workers.size(); ++i) {
    Worker* w = s.workers[i].get();
    threads.emplace_back([w] { w->io.run(); });
  }
  s.main().io.run();
  for (auto& thread : threads) thread.join();
  s.access_log->stop();
}

void Server::stop() {
  State* s = state_.get();
  asio::post(s->main().io, [s] { s->begin_drain(); });
}

void Server::post_to_workers(std::function<void(unsigned worker_index)> fn) {
  for (auto& worker : state_->workers) {
    const unsigned index = worker->index;
    asio::post(worker->io, [fn, index] { fn(index); });
  }
}

boost::asio::io_context& Server::main_context() { return state_->main().io; }

std::chrono::milliseconds Server::shutdown_time_left() const {
  const auto left = state_->drain_deadline - std::chrono::steady_clock::now();
  if (!state_->drain_started || left <= left.zero()) return std::chrono::milliseconds(0);
  return std::chrono::duration_cast<std::chrono::milliseconds>(left);
}

void Server::on_reload(std::function<bool()> reload) { state_->reload = std::move(reload); }

std::string Server::reload_tls(const TlsOptions& tls) {
  const bool running = state_->listener_tls;
  if (!tls.enabled()) {
    return running ? "tls: turning TLS off needs a restart" : std::string();
  }
  if (!running) return "tls: turning TLS on needs a restart";
  TlsContext built = make_server_context(tls);
  if (!built.context) return built.error;
  std::shared_ptr<asio::ssl::context> context = std::move(built.context);
  for (auto& worker : state_->workers) {
    Worker* w = worker.get();
    asio::post(w->io, [w, context] { w->tls = context; });
  }
  return {};
}

std::shared_ptr<asio::ssl::context> Server::worker_tls_context() const { return state_->main().tls; }

std::string Server::reload_access_log(const AccessLogOptions& options) {
  return state_->access_log->reconfigure(options);
}

}  // namespace keygate::proxy
