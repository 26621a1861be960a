// Forwarding an allowed request, in the order things happen:
//
//   prepare_request       hop-by-hop fields out, identity headers in, credentials out,
//                         normalized target, X-Forwarded-For/-Proto, framing re-stated
//   acquire               a pooled keep-alive connection, else a new one (connect timeout: 502;
//                         https: TLS handshake, certificate verified, else 502)
//   send_request          header, then the body streamed from the client (100 Continue first)
//   read_response_header  response timeout: 504; a stale pooled connection is retried once
//   prepare_response      hop-by-hop fields out, framing for this client, RateLimit-*
//   relay_response        the body streamed back; the connection goes back to the pool
#include "proxy/forward.hpp"

#include <boost/beast/http/read.hpp>

#include <boost/asio/ssl/stream.hpp>

#include <optional>

#include "proxy/headers.hpp"
#include "proxy/outgoing.hpp"
#include "proxy/ops_metrics.hpp"
#include "proxy/tls.hpp"
#include "proxy/worker.hpp"
#include "store/metrics.hpp"

namespace keygate::proxy {

void prepare_upstream_request(Request& request, const ForwardPlan& plan,
                              const UpstreamRequestContext& context,
                              const ProxyOptions& options, std::string& scratch) {
  remove_hop_by_hop(request);
  request.erase(http::field::expect);  // keygate answers 100 Continue itself
  remove_identity(request);
  if (plan.result.key) set_identity(request, *plan.result.key, scratch);
  if (options.hide_credentials) {
    for (const std::string& name : options.credential_headers) request.erase(name);
  }

  scratch = plan.target.path;
  if (options.hide_credentials && !options.credential_query_parameter.empty()) {
    const std::string query =
        remove_query_parameter(plan.target.query, options.credential_query_parameter);
    if (!query.empty()) scratch.append("?").append(query);
  } else if (!plan.target.query.empty()) {
    scratch.append("?").append(plan.target.query);
  }
  request.target(scratch);
  set_forwarded(request, context.peer_text, context.peer_trusted, context.tls ? "https" : "http",
                scratch);

  // The body's framing, re-stated from what the parser saw (one Content-Length at most).
  if (context.chunked) {
    request.chunked(true);
  } else if (context.content_length) {
    request.content_length(*context.content_length);
  }
  // RFC 9112 3.2.2: an absolute-form target's authority replaces the Host header.
  if (!plan.target.authority.empty()) request.set(http::field::host, plan.target.authority);
  if (request.version() < 11 && request.find(http::field::host) == request.end()) {
    scratch = options.upstream_host + ":" + std::to_string(options.upstream_port);
    request.set(http::field::host, scratch);
  }
  request.version(11);  // keep-alive to the upstream
}

namespace {

constexpr std::uint32_t upstream_header_limit = 64 * 1024;

// ok: go on. retry: a reused connection failed before anything of the request body was
// consumed and before any response byte; try once more on a fresh one. done: answered.
enum class Step { ok, retry, done };

void count(store::Counter& counter) { counter.fetch_add(1, std::memory_order_relaxed); }

// ---- request ------------------------------------------------------------------------------

void prepare_request(Exchange& x, const ForwardPlan& plan) {
  UpstreamRequestContext context{x.conn.peer_text, x.conn.peer_trusted, x.conn.stream.is_tls(),
                                 x.parser.chunked(), std::nullopt};
  if (const auto length = x.parser.content_length()) context.content_length = *length;
  prepare_upstream_request(x.parser.get(), plan, context, x.conn.worker.options, x.conn.scratch);
}

asio::awaitable<UpstreamConnectionPtr> connect(Exchange& x) {
  Worker& worker = x.conn.worker;
  auto connection = std::make_unique<UpstreamConnection>(worker.io);
  tcp::socket& socket = connection->stream.socket();
  x.conn.deadline.watch_upstream(&socket);
  x.conn.deadline.arm(Phase::upstream_connect, worker.options.upstream_connect_timeout);
  bool connected = false;
  for (const auto& endpoint : worker.pool.endpoints()) {
    error_code ignored;
    socket.close(ignored);
    auto [ec] = co_await socket.async_connect(endpoint, awaitable_tuple);
    if (!ec) {
      socket.set_option(tcp::no_delay(true), ignored);
      connected = true;
      break;
    }
    if (x.conn.deadline.expired()) break;
  }
  if (connected && worker.shared.upstream_tls) {
    // Within the same connect deadline: a certificate that does not verify is a 502.
    connection->stream.use_tls(worker.shared.upstream_tls);
    expect_server_name(connection->stream, worker.shared.upstream_server_name,
                       worker.options.upstream_tls.verify);
    auto [ec] = co_await connection->stream.tls().async_handshake(
        asio::ssl::stream_base::client, awaitable_tuple);
    if (ec) {
      ops_metrics().tls_handshake_failures_upstream.fetch_add(1, std::memory_order_relaxed);
      connected = false;
    }
  }
  if (connected) co_return connection;
  x.conn.deadline.watch_upstream(nullptr);
  co_return nullptr;
}

// The upload failed on the client's side: a bad or oversized body, a stall, or it left.
asio::awaitable<void> fail_upload(Exchange& x, const error_code& ec) {
  x.close_after_answer();
  if (x.conn.deadline.expired()) {
    co_await send_proxy_error(x, request_timeout);
  } else if (ec == http::error::body_limit) {
    co_await send_proxy_error(x, body_too_large);
  } else if (ec.category() == http::make_error_code(http::error::bad_chunk).category() &&
             ec != http::error::partial_message && ec != http::error::end_of_stream) {
    co_await send_proxy_error(x, bad_request);
  }
  // else: the client left; nobody to answer.
}

asio::awaitable<void> fail_upstream(Exchange& x) {
  if (x.conn.deadline.expired() && x.conn.deadline.phase() == Phase::upstream_response) {
    count(store::metrics().upstream_errors_timeout);
    co_await send_proxy_error(x, upstream_timeout);
  } else {
    count(store::metrics().upstream_errors_other);
    co_await send_proxy_error(x, upstream_unavailable);
  }
}

asio::awaitable<Step> send_request(Exchange& x, UpstreamConnection& upstream, char* window,
                                   bool& body_consumed) {
  const ProxyOptions& options = x.conn.worker.options;
  Request& request = x.parser.get();
  auto& body = request.body();
  x.conn.scratch.clear();
  format_header(x.conn.scratch, request);
  Outgoing outgoing(x.conn.scratch, request.chunked());
  bool last = false;
  do {
    const char* data = nullptr;
    std::size_t size = 0;
    if (!x.parser.is_done()) {
      body.data = window;
      body.size = RelayBuffers::size;
      x.conn.deadline.arm(Phase::request_body, options.body_timeout);
      error_code ec;
      if (!parse_buffered_body(x.conn.buffer, x.parser, ec)) {
        auto [read_error, n] = co_await http::async_read_some(x.conn.stream, x.conn.buffer,
                                                              x.parser, awaitable_tuple);
        ec = read_error == http::error::need_buffer ? error_code() : read_error;
      }
      if (ec) {
        co_await fail_upload(x, ec);
        co_return Step::done;
      }
      body_consumed = true;
      size = RelayBuffers::size - body.size;
      data = window;
      if (x.parser.is_done()) x.body_unread = false;
      if (size == 0 && !x.parser.is_done()) continue;  // only framing was read
    }
    last = x.parser.is_done();
    x.conn.deadline.arm(Phase::upstream_response, options.upstream_response_timeout);
    const auto buffers = outgoing.next(data, size, last);
    auto [ec, n] = co_await asio::async_write(upstream.stream, buffers, awaitable_tuple);
    if (ec) {
      if (upstream.reused && !body_consumed && !x.conn.deadline.expired()) co_return Step::retry;
      co_await fail_upstream(x);
      co_return Step::done;
    }
  } while (!last);
  co_return Step::ok;
}

// ---- response -----------------------------------------------------------------------------

asio::awaitable<Step> read_response_header(Exchange& x, UpstreamConnection& upstream,
                                           std::optional<ResponseParser>& parser,
                                           bool body_consumed) {
  const ProxyOptions& options = x.conn.worker.options;
  const bool head = x.parser.get().method() == http::verb::head;
  for (;;) {
    // (An interim response's fields stay in the arena until the exchange ends.)
    parser.emplace(std::piecewise_construct, std::tuple<>(),
                   std::make_tuple(x.arena.allocator()));
    parser->header_limit(upstream_header_limit);
    parser->body_limit(boost::none);
    if (head) parser->skip(true);
    x.conn.deadline.arm(Phase::upstream_response, options.upstream_response_timeout);
    bool got_bytes = false;
    const error_code ec =
        co_await read_header(upstream.stream, x.conn.upstream_buffer, *parser, got_bytes);
    if (ec) {
      if (!got_bytes && upstream.reused && !body_consumed && !x.conn.deadline.expired()) {
        co_return Step::retry;
      }
      co_await fail_upstream(x);
      co_return Step::done;
    }
    const int status = parser->get().result_int();
    if (status == 101) {  // Upgrade was removed; a switch would leave both ends confused
      co_await fail_upstream(x);
      co_return Step::done;
    }
    if (status / 100 != 1) co_return Step::ok;
    // An interim response (103 Early Hints): dropped; the final one follows.
  }
}

void prepare_response(Exchange& x, ResponseParser& parser, const ForwardPlan& plan) {
  Response& response = parser.get();
  const int status = response.result_int();
  const bool has_body = x.method != http::verb::head && status != 204 && status != 304;
  const auto length = parser.content_length();
  remove_hop_by_hop(response);
  if (has_body) {
    if (length) {
      response.content_length(*length);
    } else if (!x.http10) {
      response.chunked(true);  // chunked or close-delimited upstream body, chunked here
    } else {
      x.close_after_answer();  // an HTTP/1.0 client reads to the end of the connection
    }
  }
  set_rate_limit(response, plan.result.rate);
  if (x.conn.worker.draining) x.close_after_answer();
  response.version(11);
  if (!x.keeps_alive()) {
    response.set(http::field::connection, "close");
  } else if (x.http10) {
    response.set(http::field::connection, "keep-alive");
  }
}

// True when the whole response reached the client.
asio::awaitable<bool> relay_response(Exchange& x, UpstreamConnection& upstream,
                                     ResponseParser& parser, char* window) {
  const ProxyOptions& options = x.conn.worker.options;
  Response& response = parser.get();
  auto& body = response.body();
  x.conn.scratch.clear();
  format_header(x.conn.scratch, response);
  Outgoing outgoing(x.conn.scratch, response.chunked());
  bool header_sent = false;
  bool last = false;
  do {
    const char* data = nullptr;
    std::size_t size = 0;
    if (!parser.is_done()) {
      body.data = window;
      body.size = RelayBuffers::size;
      x.conn.deadline.arm(Phase::response_body, options.idle_timeout);
      error_code ec;
      if (!parse_buffered_body(x.conn.upstream_buffer, parser, ec)) {
        auto [read_error, n] = co_await http::async_read_some(
            upstream.stream, x.conn.upstream_buffer, parser, awaitable_tuple);
        ec = read_error == http::error::need_buffer ? error_code() : read_error;
      }
      if (ec) {
        x.close_after_answer();
        if (!header_sent) {
          co_await fail_upstream(x);
        } else {
          count(store::metrics().upstream_errors_other);  // the client sees a cut response
        }
        co_return false;
      }
      size = RelayBuffers::size - body.size;
      data = window;
      if (size == 0 && !parser.is_done()) continue;  // only framing was read
    }
    last = parser.is_done();
    x.conn.deadline.arm(Phase::response_body, options.idle_timeout);
    const auto buffers = outgoing.next(data, size, last);
    auto [ec, n] = co_await asio::async_write(x.conn.stream, buffers, awaitable_tuple);
    if (ec) {
      x.close_after_answer();
      co_return false;
    }
    if (!header_sent) x.status = response.result_int();
    header_sent = true;
  } while (!last);
  co_return true;
}

}  // namespace

asio::awaitable<void> forward(Exchange& x, const ForwardPlan& plan) {
  if (plan.result.rate.applies) x.rate = &plan.result.rate;
  Worker& worker = x.conn.worker;
  Deadline& deadline = x.conn.deadline;
  const auto started = std::chrono::steady_clock::now();
  prepare_request(x, plan);
  Window window(worker.buffers);

  UpstreamConnectionPtr upstream;
  // The deadline must never point at a connection that is gone.
  auto release = [&] {
    deadline.watch_upstream(nullptr);
    upstream.reset();
  };
  struct Release {
    decltype(release)& fn;
    ~Release() { fn(); }
  } release_at_exit{release};

  std::optional<ResponseParser> response;
  bool continue_sent = false;
  bool body_consumed = false;
  for (int attempt = 0;; ++attempt) {
    release();
    x.conn.upstream_buffer.clear();
    // A connection that might have gone stale is probed first when a retry would be
    // impossible (a body will be consumed).
    if (attempt == 0) upstream = worker.pool.take(x.body_unread);
    if (!upstream) {
      upstream = co_await connect(x);
      if (!upstream) {
        count(store::metrics().upstream_errors_connect);
        co_await send_proxy_error(x, upstream_unavailable);
        co_return;
      }
    }
    deadline.watch_upstream(&upstream->stream.socket());
    if (x.expect_continue && !continue_sent) {
      continue_sent = true;
      const error_code ec = co_await write_text(x.conn.stream, continue_answer);
      if (ec) {
        x.close_after_answer();
        co_return;
      }
    }
    Step step = co_await send_request(x, *upstream, window.get(), body_consumed);
    if (step == Step::ok) {
      step = co_await read_response_header(x, *upstream, response, body_consumed);
    }
    if (step == Step::done) co_return;
    if (step == Step::ok) break;
  }
  x.upstream_latency = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::steady_clock::now() - started);
  x.upstream_status = response->get().result_int();
  store::metrics().upstream_latency.observe_us(
      static_cast<std::uint64_t>(x.upstream_latency.count()));

  const bool reusable = response->keep_alive() && !response->need_eof();
  prepare_response(x, *response, plan);
  const bool complete = co_await relay_response(x, *upstream, *response, window.get());
  if (complete && reusable && response->is_done() && x.conn.upstream_buffer.size() == 0) {
    deadline.watch_upstream(nullptr);
    worker.pool.give_back(std::move(upstream));
  }
}

}  // namespace keygate::proxy
