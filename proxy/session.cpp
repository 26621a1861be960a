// The life of one client connection, and of each request on it, in the order things happen:
//
//   await_request        wait for the first byte (idle_timeout; the first request: within
//                        its header_timeout)
//   read_header          the request header (header_timeout, the whole header: for the first
//                        request from the connection's opening, for later ones from their
//                        first byte; max_header_bytes; obs-fold)
//   check_request_head   what RFC 9112 refuses and Beast lets through (framing, Host, target
//                        form, method): 400/405/414/501, the connection closes (framing: always)
//   describe_request     target -> normalized path, every credential, client address
//                        (request_facts.cpp)
//   authorize            the worker's authz::Authorizer: allow | deny(reason) | error
//   forward              mode proxy, allowed: to the upstream and back (forward.cpp)
//   answer               mode authz: 200 + identity headers, or the rejection
//   reject               denied or undecided: JSON error answer
//   log                  on_completed, the access log and the metrics, for every request
//                        however it ended: a scope guard (exchange_log.hpp)
//
// What becomes of the connection is one value, the exchange's Fate (exchange.hpp).
//
// With TLS on the listener, the connection starts with the handshake (within the first
// request's header_timeout) and ends with close_notify.
#include "proxy/session.hpp"

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/read.hpp>

#include <boost/asio/ssl/stream.hpp>

#include <exception>

#include "authz/decision.hpp"
#include "proxy/exchange.hpp"
#include "proxy/exchange_log.hpp"
#include "proxy/forward.hpp"
#include "proxy/headers.hpp"
#include "proxy/request_checks.hpp"
#include "proxy/ops_metrics.hpp"
#include "proxy/request_facts.hpp"
#include "proxy/worker.hpp"
#include "store/metrics.hpp"

namespace keygate::proxy {

namespace {

// A rejected request's body up to this size is read and dropped so that the connection can
// serve the next request; a larger one closes the connection instead.
constexpr std::uint64_t discard_limit = 64 * 1024;
constexpr auto linger_time = std::chrono::seconds(2);
// After close_notify, how long to wait for the client's before closing anyway.
constexpr auto tls_close_time = std::chrono::milliseconds(500);

// ---- waiting and reading ------------------------------------------------------------------

// True when a request has begun: bytes are buffered or arrive before `due`.
asio::awaitable<bool> await_request(ClientConnection& conn, SessionLink& link,
                                    Deadline::Clock::time_point due) {
  // RFC 9112 2.2: an empty line after the last request (old clients end a body so) is none.
  conn.buffer.consume(empty_lines_before_request(buffered(conn.buffer)));
  if (conn.buffer.size() > 0) co_return true;
  const Worker& worker = conn.worker;
  if (worker.draining) {
    // A client told keep-alive just before the drain began may still send one more request:
    // it is served (with Connection: close) until the idle grace ends.
    if (worker.idle_grace_end <= Deadline::Clock::now()) co_return false;
    due = std::min(due, worker.idle_grace_end + std::chrono::milliseconds(1));
  }
  link.idle = true;
  conn.deadline.arm_until(Phase::idle, due);
  auto [ec, n] = co_await conn.stream.async_read_some(conn.buffer.prepare(16 * 1024),
                                                      awaitable_tuple);
  link.idle = false;
  if (ec) co_return false;
  conn.buffer.commit(n);
  co_return true;
}

// The answer to a request whose header could not be read; nothing when the client left.
const ProxyError* header_error(const error_code& ec, bool expired) {
  if (expired) return &request_timeout;
  if (ec == http::error::header_limit) return &header_too_large;
  if (ec == http::error::body_limit) return &body_too_large;  // Content-Length over the limit
  if (ec.category() == http::make_error_code(http::error::end_of_stream).category() &&
      ec != http::error::partial_message && ec != http::error::end_of_stream) {
    return &bad_request;
  }
  return nullptr;  // eof, reset, partial message: nobody to answer
}

// Reads the body and drops it, so the connection can serve another request. False when it is
// over `limit`, malformed, or the client stalls (body_timeout between two reads): the
// connection must close.
asio::awaitable<bool> discard_body(Exchange& x, std::uint64_t limit) {
  if (!x.body_unread) co_return true;
  RequestParser& parser = x.parser;
  if (const auto length = parser.content_length(); length && *length > limit) co_return false;
  Worker& worker = x.conn.worker;
  if (x.expect_continue) {
    const error_code ec = co_await write_text(x.conn.stream, continue_answer);
    if (ec) co_return false;
  }
  auto window = worker.buffers.take();
  std::uint64_t total = 0;
  bool ok = true;
  while (!parser.is_done()) {
    auto& body = parser.get().body();
    body.data = window.get();
    body.size = RelayBuffers::size;
    x.conn.deadline.arm(Phase::request_body, worker.options.body_timeout);
    auto [ec, n] = co_await http::async_read_some(x.conn.stream, x.conn.buffer, parser,
                                                  awaitable_tuple);
    total += RelayBuffers::size - body.size;
    if ((ec && ec != http::error::need_buffer) || total > limit) {
      ok = false;
      break;
    }
  }
  worker.buffers.give_back(std::move(window));
  if (ok) x.body_unread = false;
  co_return ok;
}

// ---- deciding -----------------------------------------------------------------------------

asio::awaitable<authz::AuthResult> authorize(Worker& worker, const RequestFacts& facts) {
  authz::AuthRequest request;
  request.method = facts.method;
  request.path = facts.target->path;
  request.client_ip = facts.client_ip;
  request.credential = facts.credential;
  authz::AuthResult result;
  try {
    result = co_await worker.services.authorizer->authorize(request);
  } catch (const std::exception&) {
    result = {};  // a bug in the authorizer: undecided, answered 500 (never an allow)
  }
  store::metrics().requests_by_decision[authz::decision_index(result.decision)].fetch_add(
      1, std::memory_order_relaxed);
  co_return result;
}

// ---- answering ----------------------------------------------------------------------------

asio::awaitable<void> reject(Exchange& x, const authz::AuthResult& result) {
  // Never invite the body of a rejected request; a small one already sent is dropped.
  // (co_await stays out of conditions: g++ 12 miscompiles some of those.)
  bool drained = false;
  if (!x.expect_continue) drained = co_await discard_body(x, discard_limit);
  if (!drained) x.close_after_answer();
  format_rejection(x.conn.scratch, result, framing_of(x));
  co_await send_answer(x, authz::http_status(result.decision));
}

// Authz mode: never forwards; any body is dropped.
asio::awaitable<void> answer_authz(Exchange& x, const authz::AuthResult& result) {
  const bool drained = co_await discard_body(x, x.conn.worker.options.max_body_bytes);
  if (!drained) x.close_after_answer();
  if (result.decision.allowed()) {
    format_authz_allowed(x.conn.scratch, result, framing_of(x));
  } else {
    format_rejection(x.conn.scratch, result, framing_of(x));
  }
  co_await send_answer(x, authz::http_status(result.decision));
}

// ---- one request --------------------------------------------------------------------------

// Serves one request whose first bytes are buffered and whose header is due by `header_due`;
// returns what becomes of the connection.
asio::awaitable<Fate> serve_request(ClientConnection& conn,
                                    Deadline::Clock::time_point header_due) {
  Worker& worker = conn.worker;
  const ProxyOptions& options = worker.options;
  HeaderArena arena(worker);
  RequestParser parser = make_parser<RequestParser>(arena);
  parser.header_limit(static_cast<std::uint32_t>(options.max_header_bytes));
  parser.body_limit(options.max_body_bytes);
  Exchange x{conn, arena, parser, std::chrono::steady_clock::now()};
  ExchangeLog logged(x);  // the logging phase, however this exchange ends

  conn.deadline.arm_until(Phase::request_header, header_due);
  bool got_bytes = false;
  const error_code ec = co_await read_header(conn.stream, conn.buffer, parser, got_bytes);
  if (ec) {
    x.close_after_answer();
    // Where the RFC names another status than header_error's (505, 414).
    const auto rejection = check_unparsed_head(ec, parser.get(), buffered(conn.buffer));
    const ProxyError* error =
        rejection ? &rejection->error : header_error(ec, conn.deadline.expired());
    if (error == nullptr || !got_bytes) {
      logged.dismiss();  // the client left inside a header: no request, nobody to answer
      co_return x.fate;
    }
    x.body_unread = true;  // whatever follows is unread
    co_await send_proxy_error(x, *error);
    co_return x.fate;
  }

  const Request& request = parser.get();
  x.method = request.method();
  x.http10 = request.version() < 11;
  if (!request.keep_alive() || worker.draining) x.close_after_answer();
  x.body_unread = !parser.is_done();
  x.expect_continue = request.version() >= 11 && x.body_unread &&
                      beast::iequals(request[http::field::expect], "100-continue");

  if (const auto rejection = check_request_head(request)) {
    if (rejection->close) x.close_after_answer();
    co_await send_proxy_error(x, rejection->error);
    co_return x.fate;
  }

  const RequestFacts& facts =
      logged.facts.emplace(describe_request(request, options, Peer{conn.peer, conn.peer_trusted}));
  if (!facts.target) {
    x.close_after_answer();
    co_await send_proxy_error(x, bad_request);
    co_return x.fate;
  }

  conn.deadline.disarm();  // the authorizer bounds its own store calls
  authz::AuthResult decided = co_await authorize(worker, facts);
  const authz::AuthResult& result = logged.auth.emplace(std::move(decided));

  if (options.mode == ProxyOptions::Mode::authz) {
    co_await answer_authz(x, result);
  } else if (result.decision.allowed()) {
    co_await forward(x, ForwardPlan{result, *facts.target});
  } else {
    co_await reject(x, result);
  }
  // A drain that began after the answer went out keep-alive: await_request still serves the
  // client's next request within the idle grace (so the client is told Connection: close).
  co_return x.fate;
}

// Closes after a last answer; when the client may still be sending, reads a little first so
// that the kernel does not reset the connection before the client has read the answer.
asio::awaitable<void> close_connection(ClientConnection& conn, Fate fate) {
  const bool linger = fate == Fate::close_lingering;
  error_code ec;
  if (conn.stream.is_tls()) {
    // close_notify, then the client's (or its leaving, or the deadline): with a body still
    // coming, the shutdown reads and drops it meanwhile.
    conn.deadline.arm(Phase::linger, linger ? linger_time : tls_close_time);
    auto [shutdown_error] = co_await conn.stream.tls().async_shutdown(awaitable_tuple);
    (void)shutdown_error;  // whichever way it ended, the connection closes now
    conn.stream.socket().close(ec);
    co_return;
  }
  conn.stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  if (linger && !ec) {
    conn.deadline.arm(Phase::linger, linger_time);
    for (;;) {
      conn.buffer.clear();
      auto [read_error, n] =
          co_await conn.stream.async_read_some(conn.buffer.prepare(16 * 1024), awaitable_tuple);
      if (read_error) break;
    }
  }
  conn.stream.socket().close(ec);
}

}  // namespace

asio::awaitable<void> serve_connection(Worker& worker, tcp::socket socket) {
  store::metrics().open_connections.fetch_add(1, std::memory_order_relaxed);
  SessionLink link;
  link.socket = &socket;
  worker.add(link);
  struct Leave {
    Worker& worker;
    SessionLink& link;
    ~Leave() {
      worker.remove(link);
      store::metrics().open_connections.fetch_sub(1, std::memory_order_relaxed);
      if (worker.shared.connections.fetch_sub(1) == 1 && worker.shared.draining.load()) {
        worker.shared.on_drained();
      }
    }
  } leave{worker, link};

  ClientConnection conn(worker, std::move(socket));
  link.socket = &conn.stream.socket();
  link.idle = false;
  // The first request's header is due header_timeout after the connection opened, however
  // long the handshake and the wait for its first byte took: a client trickling its first
  // bytes gets no more time than one trickling the header (nginx's client_header_timeout).
  auto header_due = Deadline::Clock::now() + worker.options.header_timeout;
  if (worker.tls) {
    conn.stream.use_tls(worker.tls);  // the certificate current now, kept for this connection
    conn.deadline.arm_until(Phase::request_header, header_due);
    auto [ec] = co_await conn.stream.tls().async_handshake(asio::ssl::stream_base::server,
                                                           awaitable_tuple);
    if (ec) {
      ops_metrics().tls_handshake_failures_client.fetch_add(1, std::memory_order_relaxed);
      conn.deadline.disarm();
      error_code ignored;
      conn.stream.socket().close(ignored);
      co_return;
    }
  }
  bool first = true;
  Fate fate = Fate::close;
  for (;;) {
    const auto due = first ? header_due : Deadline::Clock::now() + worker.options.idle_timeout;
    const bool started = co_await await_request(conn, link, due);
    if (!started) break;
    // A later request's header: from its first byte.
    if (!first) header_due = Deadline::Clock::now() + worker.options.header_timeout;
    first = false;
    fate = co_await serve_request(conn, header_due);
    if (fate != Fate::keep_alive) break;
  }
  co_await close_connection(conn, fate);
}

}  // namespace keygate::proxy
