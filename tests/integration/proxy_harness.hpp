#pragma once
// In-process harness for the proxy tests: a proxy::Server on loopback with a test double of
// the authorizer, a throwaway upstream that records what it received, and a raw-socket client
// whose every wait is bounded by poll() timeouts.
#include <doctest/doctest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <future>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "authz/authorizer.hpp"
#include "proxy/server.hpp"
#include "store/metrics.hpp"

#pragma GCC diagnostic ignored "-Wmismatched-new-delete"  // g++ 12 false positive on coroutines

namespace keygate::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

inline constexpr const char* good_key = "kg_test_good";
inline constexpr const char* limited_key = "kg_test_limited";
inline constexpr const char* undecidable_key = "kg_test_store_down";

// ---- the authorizer's test double ---------------------------------------------------------

struct AuthCall {
  std::string method, path, client_ip;
  std::optional<std::string> credential;  // nullopt: none; "<conflicting>": two keys
};

struct AuthLog {
  std::mutex mutex;
  std::vector<AuthCall> calls;
  std::vector<AuthCall> snapshot() {
    std::lock_guard lock(mutex);
    return calls;
  }
};

// good_key: allowed as key "key-1" of user:42 with scopes read,write; limited_key: over its
// rate limit; undecidable_key: the stores are down; no key: 401 except under /public/;
// anything else: invalid.
class TestAuthorizer final : public authz::Authorizer {
 public:
  explicit TestAuthorizer(std::shared_ptr<AuthLog> log) : log_(std::move(log)) {}

  asio::awaitable<authz::AuthResult> authorize(const authz::AuthRequest& request) override {
    using Kind = authz::PresentedKey::Kind;
    const Kind kind = request.credential.kind;
    {
      std::optional<std::string> credential;
      if (kind == Kind::one) credential = std::string(request.credential.key);
      if (kind == Kind::conflicting) credential = "<conflicting>";
      std::lock_guard lock(log_->mutex);
      log_->calls.push_back({std::string(request.method), std::string(request.path),
                             request.client_ip.to_string(), credential});
    }
    authz::AuthResult result;
    const bool is_public = request.path.starts_with("/public/");
    if (kind == Kind::conflicting) {
      result.decision = authz::Decision::deny(authz::DenyReason::conflicting_keys);
      co_return result;
    }
    const std::string_view presented = request.credential.key;
    if (kind == Kind::none) {
      result.decision = is_public ? authz::Decision::allow()
                                  : authz::Decision::deny(authz::DenyReason::missing_key);
      result.public_route = is_public;
      co_return result;
    }
    if (presented == good_key || presented == limited_key) {
      auto key = std::make_shared<store::KeyRecord>();
      key->id = "key-1";
      key->owner_type = "user";
      key->owner_id = "42";
      key->scopes = {"read", "write"};
      result.key = key;
      result.rate = {true, 100, 99, 60, 0};
      result.decision = authz::Decision::allow();
      if (presented == limited_key) {
        result.rate = {true, 100, 0, 30, 30};
        result.decision = authz::Decision::deny(authz::DenyReason::rate_limited);
      }
      co_return result;
    }
    if (presented == undecidable_key) {
      result.decision = authz::Decision::error(authz::DenyReason::store_unavailable);
      co_return result;
    }
    result.decision = authz::Decision::deny(authz::DenyReason::invalid_key);
    co_return result;
  }

 private:
  std::shared_ptr<AuthLog> log_;
};

// A worker's stack in these tests: the TestAuthorizer alone.
struct TestStack final : proxy::WorkerStack {
  explicit TestStack(std::shared_ptr<AuthLog> log) : authorizer(std::move(log)) {}
  TestAuthorizer authorizer;
};

// ---- the upstream -------------------------------------------------------------------------

struct Received {
  std::string method, target;
  std::vector<std::pair<std::string, std::string>> headers;  // lower-case names
  std::uint64_t body_bytes = 0;
  int connection = 0;  // which upstream connection it came on (1, 2, ...)

  std::optional<std::string> header(std::string_view name) const {
    for (const auto& [n, v] : headers) {
      if (n == name) return v;
    }
    return std::nullopt;
  }
  bool has(std::string_view name) const { return header(name).has_value(); }
};

// Answers 200 "upstream ok" with some hop-by-hop headers, except:
//   /slow          after `slow_ms`
//   /chunked       a chunked body "hello, chunked"
//   /close         with Connection: close
//   /drop          closes the connection without answering
//   /big?bytes=N   N bytes with Content-Length
class TestUpstream {
 public:
  TestUpstream() : acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    port = acceptor_.local_endpoint().port();
    asio::co_spawn(io_, accept(), asio::detached);
    thread_ = std::thread([this] { io_.run(); });
  }
  ~TestUpstream() {
    io_.stop();
    thread_.join();
  }

  std::vector<Received> received() {
    std::lock_guard lock(mutex_);
    return received_;
  }
  int connections() const { return connections_.load(); }
  // True once `n` requests have arrived (headers and body), within `limit`.
  bool wait_for_requests(std::size_t n, std::chrono::milliseconds limit = 5s) {
    std::unique_lock lock(mutex_);
    return arrived_.wait_for(lock, limit, [&] { return received_.size() >= n; });
  }
  // Closes every connection waiting for its next request (an upstream's keep-alive timeout).
  // Closes every connection once all of them wait for a next request: a connection that has
  // just written its answer is not idle yet until its loop comes back to the read (up to 5 s).
  void close_idle() {
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    for (;;) {
      std::promise<bool> done;
      asio::post(io_, [&] {
        if (idle_.size() < open_ && std::chrono::steady_clock::now() < deadline) {
          done.set_value(false);
          return;
        }
        for (auto* socket : idle_) socket->close();
        done.set_value(true);
      });
      auto result = done.get_future();
      if (result.wait_for(5s) != std::future_status::ready || result.get()) return;
      std::this_thread::sleep_for(5ms);
    }
  }

  std::uint16_t port = 0;
  std::atomic<int> slow_ms{2000};

 private:
  asio::awaitable<void> accept() {
    for (;;) {
      auto [ec, socket] = co_await acceptor_.async_accept(asio::as_tuple(asio::use_awaitable));
      if (ec) co_return;
      asio::co_spawn(io_, serve(std::move(socket), ++connections_), asio::detached);
    }
  }

  asio::awaitable<void> serve(tcp::socket socket, int connection) {
    constexpr auto tuple = asio::as_tuple(asio::use_awaitable);
    ++open_;
    struct Closed {
      std::size_t& open;
      ~Closed() { --open; }
    } closed{open_};
    beast::flat_buffer buffer;
    std::vector<char> window(64 * 1024);
    for (;;) {
      http::request_parser<http::buffer_body> parser;
      parser.body_limit(boost::none);
      idle_.push_back(&socket);
      auto [ec, n] = co_await http::async_read_header(socket, buffer, parser, tuple);
      idle_.remove(&socket);
      if (ec) co_return;
      Received got;
      got.connection = connection;
      got.method = parser.get().method_string();
      got.target = parser.get().target();
      for (const auto& field : parser.get()) {
        std::string name(field.name_string());
        for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        got.headers.emplace_back(name, std::string(field.value()));
      }
      while (!parser.is_done()) {
        parser.get().body().data = window.data();
        parser.get().body().size = window.size();
        auto [body_error, m] = co_await http::async_read(socket, buffer, parser, tuple);
        if (body_error && body_error != http::error::need_buffer) co_return;
        got.body_bytes += window.size() - parser.get().body().size;
      }
      const std::string target = got.target;
      {
        std::lock_guard lock(mutex_);
        received_.push_back(std::move(got));
      }
      arrived_.notify_all();
      std::string answer;
      if (target == "/drop") co_return;
      if (target == "/slow") {
        asio::steady_timer timer(io_, std::chrono::milliseconds(slow_ms.load()));
        co_await timer.async_wait(tuple);
      }
      if (target.starts_with("/big?bytes=")) {
        const auto total = std::stoull(target.substr(11));
        answer = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(total) + "\r\n\r\n";
        auto [write_error, w] = co_await asio::async_write(socket, asio::buffer(answer), tuple);
        if (write_error) co_return;
        std::uint64_t sent = 0;
        while (sent < total) {
          const auto size = std::min<std::uint64_t>(window.size(), total - sent);
          auto [chunk_error, c] =
              co_await asio::async_write(socket, asio::buffer(window.data(), size), tuple);
          if (chunk_error) co_return;
          sent += size;
        }
        continue;
      }
      if (target == "/chunked") {
        answer =
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"
            "7\r\nhello, \r\n7\r\nchunked\r\n0\r\n\r\n";
      } else {
        answer =
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n"
            "Keep-Alive: timeout=5\r\nConnection: X-Hop\r\nX-Hop: secret\r\n"
            "X-Upstream: yes\r\n";
        if (target == "/close") answer += "Connection: close\r\n";
        answer += "\r\nupstream ok";
      }
      auto [write_error, w] = co_await asio::async_write(socket, asio::buffer(answer), tuple);
      if (write_error || target == "/close") co_return;
    }
  }

  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable arrived_;
  std::vector<Received> received_;
  std::atomic<int> connections_{0};
  std::list<tcp::socket*> idle_;
  std::size_t open_ = 0;  // serve() loops running (on io_ only)
};

// ---- the proxy under test -----------------------------------------------------------------

struct Completed {
  bool had_auth;
  std::string method, path, user_agent, client_ip;
  int status;
};

inline proxy::ProxyOptions test_options(std::uint16_t upstream_port) {
  proxy::ProxyOptions options;
  options.listen_host = "127.0.0.1";
  options.listen_port = 0;
  options.admin_host = "127.0.0.1";
  options.admin_port = 0;
  options.upstream_host = "127.0.0.1";
  options.upstream_port = upstream_port;
  options.threads = 1;
  options.handle_signals = false;
  options.shutdown_timeout = 3s;
  options.header_timeout = 3s;
  options.idle_timeout = 5s;
  options.upstream_response_timeout = 5s;
  return options;
}

class ProxyUnderTest {
 public:
  explicit ProxyUnderTest(proxy::ProxyOptions options,
                          std::function<bool()> is_ready = [] { return true; })
      : auth(std::make_shared<AuthLog>()),
        server_(std::move(options),
                [this](asio::io_context&, unsigned) {
                  auto stack = std::make_unique<TestStack>(auth);
                  proxy::WorkerServices services;
                  services.authorizer = &stack->authorizer;
                  services.stack = std::move(stack);
                  services.on_completed = [this](const proxy::CompletedRequest& done) {
                    std::lock_guard lock(mutex_);
                    completed_.push_back({done.auth != nullptr, std::string(done.method),
                                          std::string(done.path), std::string(done.user_agent),
                                          done.client_ip.to_string(), done.status});
                  };
                  return services;
                },
                std::move(is_ready)) {
    server_.listen();
    port = server_.port();
    admin_port = server_.admin_port();
    thread_ = std::thread([this] { server_.run(); });
  }
  ~ProxyUnderTest() { stop(); }

  void stop() {
    if (!thread_.joinable()) return;
    server_.stop();
    thread_.join();
  }
  std::vector<Completed> completed() {
    std::lock_guard lock(mutex_);
    return completed_;
  }
  proxy::Server& server() { return server_; }

  std::shared_ptr<AuthLog> auth;
  std::uint16_t port = 0;
  std::uint16_t admin_port = 0;

 private:
  std::mutex mutex_;
  std::vector<Completed> completed_;
  proxy::Server server_;
  std::thread thread_;
};

// ---- the client ---------------------------------------------------------------------------

struct Reply {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // lower-case names
  std::string body;

  std::optional<std::string> header(std::string_view name) const {
    for (const auto& [n, v] : headers) {
      if (n == name) return v;
    }
    return std::nullopt;
  }
  bool has(std::string_view name) const { return header(name).has_value(); }
};

class RawClient {
 public:
  explicit RawClient(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  ~RawClient() { ::close(fd_); }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  // False when the peer stopped reading or closed before everything was sent.
  bool send(std::string_view data, std::chrono::milliseconds limit = 10s) {
    while (!data.empty()) {
      if (!wait(POLLOUT, limit)) return false;
      const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  // The next response, or nullopt if none arrived complete within `limit`.
  std::optional<Reply> read_reply(std::chrono::milliseconds limit = 5s, bool head = false) {
    http::response_parser<http::string_body> parser;
    parser.body_limit(boost::none);
    parser.eager(true);
    if (head) parser.skip(true);
    const auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
      if (!pending_.empty()) {
        beast::error_code ec;
        const std::size_t used = parser.put(asio::buffer(pending_), ec);
        pending_.erase(0, used);
        if (ec && ec != http::error::need_more) return std::nullopt;
        if (parser.is_done()) break;
        if (used > 0 && !pending_.empty()) continue;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || !wait(POLLIN, left)) return std::nullopt;
      char chunk[65536];
      const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n <= 0) {
        beast::error_code ec;
        if (parser.got_some()) parser.put_eof(ec);
        if (parser.is_done() && !ec) break;
        return std::nullopt;
      }
      pending_.append(chunk, static_cast<std::size_t>(n));
    }
    Reply reply;
    reply.status = parser.get().result_int();
    for (const auto& field : parser.get()) {
      std::string name(field.name_string());
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      reply.headers.emplace_back(name, std::string(field.value()));
    }
    reply.body = std::move(parser.get().body());
    return reply;
  }

  // Bytes that arrived within `limit` (for interim responses such as 100 Continue).
  std::string read_some(std::chrono::milliseconds limit = 5s) {
    if (!pending_.empty()) return std::exchange(pending_, {});
    if (!wait(POLLIN, limit)) return {};
    char chunk[4096];
    const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    return n > 0 ? std::string(chunk, static_cast<std::size_t>(n)) : std::string();
  }

  // True when the peer closes (EOF or reset) within `limit`; data before that is dropped.
  bool closed_by_peer(std::chrono::milliseconds limit = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || !wait(POLLIN, left)) return false;
      char chunk[4096];
      const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n <= 0) return true;
    }
  }

  void shutdown_send() { ::shutdown(fd_, SHUT_WR); }

 private:
  bool wait(short events, std::chrono::milliseconds limit) {
    pollfd p{fd_, events, 0};
    return ::poll(&p, 1, static_cast<int>(limit.count())) == 1;
  }

  int fd_ = -1;
  std::string pending_;
};

// One request on a fresh connection.
inline std::optional<Reply> round_trip(std::uint16_t port, std::string_view request) {
  RawClient client(port);
  if (!client.send(request)) return std::nullopt;
  return client.read_reply();
}

inline std::string get(std::string_view target, std::string_view extra_headers = "") {
  return "GET " + std::string(target) + " HTTP/1.1\r\nHost: app\r\n" + std::string(extra_headers) +
         "\r\n";
}

inline std::string bearer(const char* key) {
  return std::string("Authorization: Bearer ") + key + "\r\n";
}

// Resident set size of this process, from /proc.
inline std::size_t resident_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.starts_with("VmRSS:")) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

inline std::uint64_t count(const store::Counter& counter) { return counter.load(); }

}  // namespace keygate::test
