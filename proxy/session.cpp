// The life of one client connection, and of each request on it, in the order things happen:
//
//   await_request        idle keep-alive wait for the first byte (idle_timeout)
//   read_header          the request header (header_timeout, max_header_bytes; obs-fold)
//   check_request_head   what RFC 9112 refuses and Beast lets through (framing, Host, target
//                        form, method): 400/405/414/501, the connection closes (framing: always)
//   describe_request     target -> normalized path, credential, client address
//   authorize            the worker's authz::Authorizer: allow | deny(reason) | error
//   forward              mode proxy, allowed: to the upstream and back (forward.cpp)
//   answer               mode authz: 200 + identity headers, or the rejection
//   reject               denied or undecided: JSON error answer
//   log                  on_completed, the access log and the metrics, for every request
//                        however it ended
//
// With TLS on the listener, the connection starts with the handshake (header_timeout) and
// ends with close_notify.
#include "proxy/session.hpp"

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/read.hpp>

#include <boost/asio/ssl/stream.hpp>

#include <exception>

#include "authz/client_address.hpp"
#include "authz/credential.hpp"
#include "authz/decision.hpp"
#include "authz/request_path.hpp"
#include "proxy/exchange.hpp"
#include "proxy/forward.hpp"
#include "proxy/access_log.hpp"
#include "proxy/headers.hpp"
#include "proxy/request_checks.hpp"
#include "core/json_line.hpp"
#include "proxy/ops_metrics.hpp"
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

// What the authorizer and the logging phase know about a request.
struct RequestFacts {
  std::string_view method;
  std::optional<authz::NormalizedTarget> target;
  std::optional<std::string_view> credential;
  std::string_view credential_header;  // lower-case name it came from; empty: none or query
  bool credential_in_query = false;
  core::IpAddress client_ip;
};

// ---- waiting and reading ------------------------------------------------------------------

// True when a request has begun: bytes are buffered or arrive within the idle time.
asio::awaitable<bool> await_request(ClientConnection& conn, SessionLink& link, bool first) {
  // RFC 9112 2.2: an empty line after the last request (old clients end a body so) is none.
  conn.buffer.consume(empty_lines_before_request(buffered(conn.buffer)));
  if (conn.buffer.size() > 0) co_return true;
  const Worker& worker = conn.worker;
  auto wait = first ? worker.options.header_timeout : worker.options.idle_timeout;
  if (worker.draining) {
    // A client told keep-alive just before the drain began may still send one more request:
    // it is served (with Connection: close) until the idle grace ends.
    const auto left = worker.idle_grace_end - Deadline::Clock::now();
    if (left <= Deadline::Clock::duration::zero()) co_return false;
    wait = std::min(wait, std::chrono::duration_cast<std::chrono::milliseconds>(left) +
                              std::chrono::milliseconds(1));
  }
  link.idle = true;
  conn.deadline.arm(Phase::idle, wait);
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
// over `limit`, malformed, or the client stalls: the connection must close.
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
    x.conn.deadline.arm(Phase::request_body, worker.options.header_timeout);
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

// ---- what the request is ------------------------------------------------------------------

// All of the request's values of `name`, joined with ',' (a list header sent several times).
std::string_view joined_values(const Request& request, std::string_view name, std::string& out) {
  std::string_view first;
  std::size_t count = 0;
  for (const auto& field : request) {
    if (!beast::iequals(field.name_string(), name)) continue;
    if (count++ == 0) {
      first = field.value();
    } else {
      if (count == 2) out.assign(first);
      out += ',';
      out += field.value();
    }
  }
  return count > 1 ? std::string_view(out) : first;
}

std::string_view first_value(const Request& request, std::string_view a, std::string_view b) {
  if (auto it = request.find(a); it != request.end()) return it->value();
  if (auto it = request.find(b); it != request.end()) return it->value();
  return {};
}

RequestFacts describe_request(const Exchange& x) {
  const ProxyOptions& options = x.conn.worker.options;
  const Request& request = x.parser.get();
  RequestFacts facts;
  facts.method = request.method_string();
  std::string_view target = request.target();
  if (options.mode == ProxyOptions::Mode::authz) {
    // The original request, as nginx auth_request / Traefik forwardAuth / Envoy pass it.
    const auto method = first_value(request, "x-original-method", "x-forwarded-method");
    const auto uri = first_value(request, "x-original-uri", "x-forwarded-uri");
    if (!method.empty()) facts.method = method;
    if (!uri.empty()) target = uri;
  }
  facts.target = authz::normalize_target(target);

  for (const auto& name : options.credential_headers) {
    for (const auto& field : request) {
      if (!beast::iequals(field.name_string(), name)) continue;
      facts.credential = authz::credential_from_header(name, field.value());
      if (facts.credential) {
        facts.credential_header = name;
        break;
      }
    }
    if (facts.credential) break;
  }
  if (!facts.credential && facts.target && !options.credential_query_parameter.empty()) {
    facts.credential =
        authz::credential_from_query(facts.target->query, options.credential_query_parameter);
    facts.credential_in_query = facts.credential.has_value();
  }

  std::string joined;
  const auto forwarded_for =
      x.conn.peer_trusted ? joined_values(request, "x-forwarded-for", joined) : std::string_view();
  facts.client_ip = authz::client_address(x.conn.peer, forwarded_for, options.trusted_proxies);
  return facts;
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
    // A bug in the authorizer: fail closed as "could not decide".
    result = {};
    result.decision = authz::Decision::error(authz::DenyReason::store_unavailable);
  }
  const auto reason = static_cast<std::size_t>(result.decision.reason);
  auto& counters = store::metrics().requests_by_decision;
  counters[reason < counters.size() ? reason : counters.size() - 1].fetch_add(
      1, std::memory_order_relaxed);
  co_return result;
}

// ---- answering ----------------------------------------------------------------------------

asio::awaitable<void> reject(Exchange& x, const authz::AuthResult& result) {
  // Never invite the body of a rejected request; a small one already sent is dropped.
  // (co_await stays out of conditions: g++ 12 miscompiles some of those.)
  bool drained = false;
  if (!x.expect_continue) drained = co_await discard_body(x, discard_limit);
  if (!drained) x.keep_alive = false;
  format_rejection(x.conn.scratch, result, framing_of(x));
  co_await send_answer(x, authz::http_status(result.decision.reason));
}

// Authz mode: never forwards; any body is dropped.
asio::awaitable<void> answer_authz(Exchange& x, const authz::AuthResult& result) {
  const bool drained = co_await discard_body(x, x.conn.worker.options.max_body_bytes);
  if (!drained) x.keep_alive = false;
  if (result.decision.allowed()) {
    format_authz_allowed(x.conn.scratch, result, framing_of(x));
    co_await send_answer(x, 200);
  } else {
    format_rejection(x.conn.scratch, result, framing_of(x));
    co_await send_answer(x, authz::http_status(result.decision.reason));
  }
}

// ---- logging ------------------------------------------------------------------------------

// One access-log line: what was asked, by which key, what was decided and answered. Never the
// key, the credential header or the query string (which may hold a key).
void format_access_line(std::string& out, const Exchange& x, const CompletedRequest& done) {
  out.clear();
  core::json::begin_line(out, "info", "request");
  core::json::add(out, "method", done.method.empty() ? std::string_view(x.parser.get().method_string())
                                               : done.method);
  if (!done.path.empty()) {
    core::json::add(out, "path", done.path);
  } else {
    core::json::add_null(out, "path");
  }
  core::json::add(out, "status", std::int64_t{done.status});
  const authz::AuthResult* auth = done.auth;
  if (auth != nullptr) {
    const auto reason = auth->decision.reason;
    core::json::add(out, "decision",
              reason == authz::DenyReason::none ? "allowed" : authz::error_code(reason));
  } else {
    core::json::add_null(out, "decision");
  }
  if (auth != nullptr && auth->key) {
    core::json::add(out, "key_id", auth->key->id);
    std::string owner = auth->key->owner_type;
    owner.append(":").append(auth->key->owner_id);
    core::json::add(out, "owner", owner);
  } else {
    core::json::add_null(out, "key_id");
    core::json::add_null(out, "owner");
  }
  core::json::add(out, "client_ip", done.client_ip.to_string());
  core::json::add(out, "duration_us", static_cast<std::int64_t>(done.duration.count()));
  if (x.upstream_status != 0) {
    core::json::add(out, "upstream_status", std::int64_t{x.upstream_status});
  } else {
    core::json::add_null(out, "upstream_status");
  }
  if (x.upstream_latency.count() >= 0) {
    core::json::add(out, "upstream_latency_us", static_cast<std::int64_t>(x.upstream_latency.count()));
  } else {
    core::json::add_null(out, "upstream_latency_us");
  }
  core::json::end_line(out);
}

void log(const Exchange& x, const RequestFacts* facts, const authz::AuthResult* result) {
  const int status = x.status != 0 ? x.status : 499;  // 499: the client left first
  const auto status_class = static_cast<std::size_t>(status / 100);
  auto& classes = store::metrics().responses_by_status_class;
  if (status_class < classes.size()) {
    classes[status_class].fetch_add(1, std::memory_order_relaxed);
  }
  Worker& worker = x.conn.worker;
  const auto& on_completed = worker.services.on_completed;
  AccessLog* access_log = worker.shared.access_log;
  const bool wants_line = access_log != nullptr && access_log->wants(worker.index, status);
  if (!on_completed && !wants_line) return;
  const Request& request = x.parser.get();
  CompletedRequest done{};
  done.auth = result;
  done.status = status;
  done.duration = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::steady_clock::now() - x.started);
  done.client_ip = x.conn.peer;
  if (facts != nullptr) {
    done.method = facts->method;
    if (facts->target) done.path = facts->target->path;
    done.client_ip = facts->client_ip;
    done.user_agent = request[http::field::user_agent];
  }
  if (on_completed) on_completed(done);
  if (wants_line) {
    format_access_line(worker.log_line, x, done);
    access_log->append(worker.index, worker.log_line);
  }
}

// ---- one request --------------------------------------------------------------------------

// Serves one request whose first bytes are buffered; false: close the connection.
asio::awaitable<bool> serve_request(ClientConnection& conn) {
  Worker& worker = conn.worker;
  const ProxyOptions& options = worker.options;
  HeaderArena arena(worker);
  RequestParser parser = make_parser<RequestParser>(arena);
  parser.header_limit(static_cast<std::uint32_t>(options.max_header_bytes));
  parser.body_limit(options.max_body_bytes);
  Exchange x{conn, arena, parser, std::chrono::steady_clock::now()};

  conn.deadline.arm(Phase::request_header, options.header_timeout);
  bool got_bytes = false;
  const error_code ec = co_await read_header(conn.stream, conn.buffer, parser, got_bytes);
  if (ec) {
    // Where the RFC names another status than header_error's (505, 414).
    const auto rejection = check_unparsed_head(ec, parser.get(), buffered(conn.buffer));
    const ProxyError* error =
        rejection ? &rejection->error : header_error(ec, conn.deadline.expired());
    if (error == nullptr || !got_bytes) co_return false;
    x.keep_alive = false;
    x.body_unread = true;  // whatever follows is unread
    co_await send_proxy_error(x, *error);
    log(x, nullptr, nullptr);
    co_return false;
  }

  const Request& request = parser.get();
  x.method = request.method();
  x.http10 = request.version() < 11;
  x.keep_alive = request.keep_alive() && !worker.draining;
  x.body_unread = !parser.is_done();
  x.expect_continue = request.version() >= 11 && x.body_unread &&
                      beast::iequals(request[http::field::expect], "100-continue");

  if (const auto rejection = check_request_head(request)) {
    if (rejection->close) x.keep_alive = false;
    co_await send_proxy_error(x, rejection->error);
    log(x, nullptr, nullptr);
    co_return x.keep_alive;
  }

  const RequestFacts facts = describe_request(x);
  if (!facts.target) {
    x.keep_alive = false;
    co_await send_proxy_error(x, bad_request);
    log(x, &facts, nullptr);
    co_return false;
  }

  conn.deadline.disarm();  // the authorizer bounds its own store calls
  const authz::AuthResult result = co_await authorize(worker, facts);

  if (options.mode == ProxyOptions::Mode::authz) {
    co_await answer_authz(x, result);
  } else if (result.decision.allowed()) {
    ForwardPlan plan{result, *facts.target, facts.credential_header, facts.credential_in_query};
    co_await forward(x, plan);
  } else {
    co_await reject(x, result);
  }
  log(x, &facts, &result);
  // A drain that began after the answer went out keep-alive: await_request still serves the
  // client's next request within the idle grace (so the client is told Connection: close).
  co_return x.keep_alive;
}

// Closes after a last answer; when the client may still be sending, reads a little first so
// that the kernel does not reset the connection before the client has read the answer.
asio::awaitable<void> close_connection(ClientConnection& conn) {
  error_code ec;
  if (conn.stream.is_tls()) {
    // close_notify, then the client's (or its leaving, or the deadline): with a body still
    // coming, the shutdown reads and drops it meanwhile.
    conn.deadline.arm(Phase::linger, conn.linger ? linger_time : tls_close_time);
    auto [shutdown_error] = co_await conn.stream.tls().async_shutdown(awaitable_tuple);
    (void)shutdown_error;  // whichever way it ended, the connection closes now
    conn.stream.socket().close(ec);
    co_return;
  }
  conn.stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  if (conn.linger && !ec) {
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
  if (worker.tls) {
    conn.stream.use_tls(worker.tls);  // the certificate current now, kept for this connection
    conn.deadline.arm(Phase::request_header, worker.options.header_timeout);
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
  for (;;) {
    const bool started = co_await await_request(conn, link, first);
    if (!started) break;
    first = false;
    const bool keep = co_await serve_request(conn);
    if (!keep) break;
  }
  co_await close_connection(conn);
}

}  // namespace keygate::proxy
