// The key-management API (see api_server.hpp). Each call: bounded read, route, the admin token
// (a keygate key with admin:* or admin:self, read from PostgreSQL so that a revoked token stops
// at once), the body decoded (api/key_request.hpp), owner isolation, one repository call, a
// JSON answer. Another owner's key answers 404, as a key that does not exist does.
#include "api/api_server.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <optional>

#include "api/api_call.hpp"
#include "api/api_routes.hpp"
#include "api/key_handlers.hpp"
#include "api/key_json.hpp"
#include "api/leak_handler.hpp"
#include "api/query_string.hpp"
#include "authz/authorizer.hpp"
#include "authz/credential.hpp"
#include "authz/key_format.hpp"
#include "authz/key_hash.hpp"
#include "authz/policy.hpp"
#include "core/hex.hpp"
#include "core/log.hpp"
#include "proxy/peer_address.hpp"
#include "store/api_session.hpp"
#include "store/metrics.hpp"
#include "store/key_repository.hpp"
#include "store/pg_pool.hpp"

#include <openssl/rand.h>

namespace keygate::api {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = asio::ip::tcp;

constexpr auto io_timeout = std::chrono::seconds(10);
constexpr std::size_t max_header_bytes = 16 * 1024;
constexpr std::size_t max_body_bytes = 64 * 1024;
constexpr auto tuple = asio::as_tuple(asio::use_awaitable);

using Request = http::request<http::string_body>;

// 16 random bytes in hex: the audit rows of one call, and its X-Request-Id.
std::string new_request_id() {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof bytes) != 1) throw std::runtime_error("api: the CSPRNG failed");
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

// The admin token: present, well formed, known, active, from an allowed address, and holding
// admin:* or admin:self. Failures answer 401 / 403 without saying more than the proxy would.
asio::awaitable<std::optional<Answer>> authenticate(const Request& request, const core::IpAddress& peer,
                                                    const ApiServices& services, Caller& caller) {
  std::optional<std::string_view> token;
  if (auto header = request.find(http::field::authorization); header != request.end()) {
    token = authz::credential_from_header("authorization", header->value());
  }
  if (!token) {
    Answer a = error_answer(http::status::unauthorized, "missing_token", "an admin token is required (Authorization: Bearer ...)");
    a.challenge = true;
    co_return a;
  }
  auto refused = [](std::string_view code, std::string_view message) {
    Answer a = error_answer(http::status::unauthorized, code, message);
    a.challenge = true;
    return a;
  };
  if (authz::check_key_format(*token) != authz::KeyFormat::valid) co_return refused("invalid_token", "the token is not valid");
  auto found = co_await services.repository->find_by_hash(authz::hash_key(*token, services.pepper));
  if (found.status == store::RepoStatus::not_found) co_return refused("invalid_token", "the token is not valid");
  if (!found.ok()) co_return store_failure(found.error);
  const authz::Decision decision = authz::decide(found.value, nullptr, peer, store::Clock::now());
  if (!decision.allowed()) {
    if (authz::refusal_status(decision.reason) == 401) {
      co_return refused(decision.reason == authz::DenyReason::expired_key ? "expired_token" : "revoked_token",
                        authz::error_message(decision.reason));
    }
    co_return error_answer(http::status::forbidden, authz::error_code(decision.reason), authz::error_message(decision.reason));
  }
  caller.authority = admin_authority(found.value);
  caller.key_id = found.value.id;
  if (caller.authority.role == AdminRole::none) {
    co_return error_answer(http::status::forbidden, "forbidden", "the token has neither admin:* nor admin:self");
  }
  if (caller.authority.role == AdminRole::owner) {
    auto scope = store::OwnerScope::owner(caller.authority.owner_type, caller.authority.owner_id);
    if (!scope) co_return error_answer(http::status::forbidden, "forbidden", "the token's owner cannot be scoped");
    caller.scope = std::move(*scope);
  }
  co_return std::nullopt;
}

// The same decision and rate limit as the proxy for that method, path and client; the key's
// own refusal is an answer (200, valid: false), only a store error is a 503.
asio::awaitable<Answer> verify(const Request& request, const core::IpAddress& peer, const ApiServices& services) {
  auto decoded = decode_verify(request.body());
  if (!decoded.ok()) co_return invalid(*decoded.error);
  const VerifyRequest& v = decoded.value;
  authz::AuthRequest auth;
  auth.method = v.method;
  auth.path = v.path;
  auth.client_ip = v.client_ip.value_or(peer);
  auth.credential.add(v.key);
  const authz::AuthResult result = co_await services.verifier->authorize(auth);
  json::object o;
  o["valid"] = result.decision.allowed();
  o["code"] = result.decision.allowed() ? std::string_view("ok") : authz::error_code(result.decision.reason);
  if (result.key) {
    o["key_id"] = result.key->id;
    o["owner"] = owner_text(*result.key);
    json::array scopes;
    for (const auto& s : result.key->scopes) scopes.emplace_back(s);
    o["scopes"] = std::move(scopes);
  }
  if (result.rate.applies) {
    o["rate_limit"] = json::object{{"limit", result.rate.limit},
                                   {"remaining", result.rate.remaining},
                                   {"reset_seconds", result.rate.reset_seconds}};
  }
  const bool store_error = result.decision.outcome == authz::Outcome::error;
  co_return json_answer(store_error ? http::status::service_unavailable : http::status::ok, o);
}

// GET /v1/audit: the newest rows first, at most `limit` (1-500, default 100); operators only.
asio::awaitable<Answer> list_audit(std::string_view query, const ApiServices& services, const Caller& caller) {
  if (caller.authority.role != AdminRole::operator_) {
    co_return error_answer(http::status::forbidden, "forbidden", "the audit log is for operator tokens (admin:*)");
  }
  std::string unknown;
  if (!only_parameters(query, {"key_id", "limit"}, unknown)) co_return unknown_parameter(unknown);
  const std::optional<std::size_t> limit = page_limit(query);
  if (!limit) co_return error_answer(http::status::bad_request, "invalid_request", "expected 1 to 500", "limit");
  std::optional<std::string> key_id;
  if (auto text = parameter(query, "key_id")) {
    if (!core::is_uuid(*text)) co_return error_answer(http::status::bad_request, "invalid_request", "expected a key id", "key_id");
    key_id = std::string(*text);
  }
  co_return co_await in_scope(services, caller, [&](store::KeyRepository&, store::ApiSession& tx,
                                                    Answer& out) -> asio::awaitable<void> {
    store::PgParams params;
    params.emplace_back(key_id);
    params.emplace_back(std::to_string(*limit));
    store::PgResult rows = co_await tx.query(
        "SELECT id::text, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), actor_key_id::text, "
        "actor_owner, action, key_id::text, key_owner, before::text, after::text, request_id, source_url "
        "FROM api_key_audit WHERE ($1::uuid IS NULL OR key_id = $1::uuid) ORDER BY id DESC LIMIT $2::integer",
        std::move(params));
    if (!rows.ok()) co_return;  // the transaction answers 503
    json::array entries;
    const auto text_or_null = [&](int row, int column) {
      return rows.is_null(row, column) ? json::value(nullptr) : json::value(rows.get(row, column));
    };
    const auto json_or_null = [&](int row, int column) {
      if (rows.is_null(row, column)) return json::value(nullptr);
      boost::system::error_code ec;
      json::value v = json::parse(rows.get(row, column), ec);
      return ec ? json::value(nullptr) : v;
    };
    for (int row = 0; row < rows.rows(); ++row) {
      entries.emplace_back(json::object{
          {"id", rows.get(row, 0)}, {"at", rows.get(row, 1)}, {"actor_key_id", text_or_null(row, 2)},
          {"actor_owner", text_or_null(row, 3)}, {"action", rows.get(row, 4)}, {"key_id", rows.get(row, 5)},
          {"key_owner", rows.get(row, 6)}, {"before", json_or_null(row, 7)}, {"after", json_or_null(row, 8)},
          {"request_id", rows.get(row, 9)}, {"source_url", text_or_null(row, 10)}});
    }
    out = json_answer(http::status::ok, json::object{{"entries", std::move(entries)}});
  });
}

asio::awaitable<Answer> answer(const Request& request, const core::IpAddress& peer, const ApiServices& services,
                               const std::string& request_id) {
  const std::string_view target = request.target();
  const std::string_view path = target.substr(0, target.find('?'));
  const RouteMatch route = match_route(request.method_string(), path);
  if (route.endpoint == Endpoint::not_found) co_return error_answer(http::status::not_found, "not_found", "no such endpoint");
  if (!route.method_allowed) {
    Answer a = error_answer(http::status::method_not_allowed, "method_not_allowed", "this endpoint does not take the method");
    a.allow = route.allow;
    co_return a;
  }
  if (route.endpoint == Endpoint::openapi) {
    Answer a;
    a.body = std::string(openapi_document());
    co_return a;
  }
  if (route.endpoint == Endpoint::verify) co_return co_await verify(request, peer, services);
  if (route.endpoint == Endpoint::leaks) {
    LeakReportRequest report;
    if (auto h = request.find("Github-Public-Key-Identifier"); h != request.end()) report.key_identifier = h->value();
    if (auto h = request.find("Github-Public-Key-Signature"); h != request.end()) report.signature = h->value();
    report.body = request.body();
    report.request_id = request_id;
    co_return co_await report_leaks(report, services);
  }
  Caller caller;
  caller.request_id = request_id;
  if (auto refused = co_await authenticate(request, peer, services, caller)) co_return std::move(*refused);
  const std::string_view body = request.body();
  const std::string_view query = query_of(target);
  switch (route.endpoint) {
    case Endpoint::keys:
      if (request.method() == http::verb::post) co_return co_await create_key(body, services, caller);
      co_return co_await list_keys(query, services, caller);
    case Endpoint::key:
      if (request.method() == http::verb::patch) co_return co_await patch_key(body, route.id, services, caller);
      if (request.method() == http::verb::delete_) co_return co_await delete_key(route.id, services, caller);
      co_return co_await show_key(route.id, services, caller);
    case Endpoint::audit: co_return co_await list_audit(query, services, caller);
    case Endpoint::key_revoke: co_return co_await revoke_key(route.id, services, caller);
    case Endpoint::key_rotate: co_return co_await rotate_key(body, route.id, services, caller);
    case Endpoint::key_usage: co_return co_await key_usage(query, route.id, services, caller);
    default: break;
  }
  co_return error_answer(http::status::not_found, "not_found", "no such endpoint");
}

http::response<http::string_body> to_response(Answer a, unsigned version, bool keep_alive) {
  http::response<http::string_body> response{a.status, version};
  response.set(http::field::content_type, "application/json");
  response.set(http::field::cache_control, "no-store");
  if (!a.allow.empty()) response.set(http::field::allow, a.allow);
  if (a.challenge) response.set(http::field::www_authenticate, "Bearer");
  if (!a.request_id.empty()) response.set("X-Request-Id", a.request_id);
  response.body() = std::move(a.body);
  response.keep_alive(keep_alive);
  response.prepare_payload();
  return response;
}

// Requests on one connection, plain or TLS, until it closes, a write fails or a request asks
// to close.
template <typename Stream>
asio::awaitable<void> serve_requests(Stream& stream, const core::IpAddress& peer, const ApiServices& services) {
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(max_header_bytes);
    parser.body_limit(max_body_bytes);
    beast::get_lowest_layer(stream).expires_after(io_timeout);
    auto [read_error, n] = co_await http::async_read(stream, buffer, parser, tuple);
    if (read_error) {
      // What can still be told is told, then the connection is closed.
      std::optional<Answer> last;
      if (read_error == http::error::body_limit) {
        last = error_answer(http::status::payload_too_large, "body_too_large", "the body is larger than 64 KiB");
      } else if (read_error == http::error::header_limit) {
        last = error_answer(http::status::request_header_fields_too_large, "headers_too_large",
                            "the headers are larger than 16 KiB");
      } else if (read_error != http::error::end_of_stream && read_error != asio::error::eof &&
                 read_error != beast::error::timeout && read_error != asio::error::connection_reset &&
                 read_error != asio::ssl::error::stream_truncated) {
        last = error_answer(http::status::bad_request, "bad_request", "the request is not valid HTTP/1.1");
      }
      if (last) {
        auto response = to_response(std::move(*last), 11, false);
        beast::get_lowest_layer(stream).expires_after(io_timeout);
        co_await http::async_write(stream, response, tuple);
      }
      break;
    }
    Request& request = parser.get();
    const auto started = std::chrono::steady_clock::now();
    Answer a;
    try {
      const std::string request_id = new_request_id();
      a = co_await answer(request, peer, services, request_id);
      a.request_id = request_id;
    } catch (const std::exception& e) {
      core::log_error("api: request failed", {{"error", e.what()}});
      a = error_answer(http::status::internal_server_error, "internal_error", "the request failed; see keygate's log");
    }
    const std::string_view target = request.target();
    const auto endpoint = match_route(request.method_string(), target.substr(0, target.find('?'))).endpoint;
    const unsigned status_class = std::min(static_cast<unsigned>(a.status) / 100, 5u);
    auto response = to_response(std::move(a), request.version(), request.keep_alive());
    beast::get_lowest_layer(stream).expires_after(io_timeout);
    auto [write_error, m] = co_await http::async_write(stream, response, tuple);
    store::Metrics& metrics = store::metrics();
    metrics.api_responses[static_cast<std::size_t>(endpoint)][status_class].fetch_add(1, std::memory_order_relaxed);
    metrics.api_latency.observe_us(static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started).count()));
    if (write_error || !response.keep_alive()) break;
  }
}

asio::awaitable<void> serve_connection(tcp::socket socket, const ApiServices& services) {
  beast::error_code ec;
  const tcp::endpoint remote = socket.remote_endpoint(ec);
  if (ec) co_return;
  const core::IpAddress peer = proxy::to_ip_address(remote.address());
  std::shared_ptr<asio::ssl::context> tls = services.tls_context ? services.tls_context() : nullptr;
  beast::tcp_stream plain(std::move(socket));
  if (!tls) {
    co_await serve_requests(plain, peer, services);
    plain.socket().shutdown(tcp::socket::shutdown_send, ec);
    co_return;
  }
  beast::ssl_stream<beast::tcp_stream> stream(std::move(plain), *tls);
  stream.next_layer().expires_after(io_timeout);
  auto [handshake_error] = co_await stream.async_handshake(asio::ssl::stream_base::server, tuple);
  if (handshake_error) co_return;  // not TLS, or a client that gave up: nothing to answer
  co_await serve_requests(stream, peer, services);
  stream.next_layer().expires_after(std::chrono::seconds(1));  // close_notify, without waiting long
  co_await stream.async_shutdown(tuple);
}

}  // namespace

asio::awaitable<void> serve_api(tcp::acceptor& acceptor, const ApiServices& services) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(tuple);
    if (ec) {
      if (!acceptor.is_open() || ec == asio::error::operation_aborted) co_return;
      continue;
    }
    asio::co_spawn(acceptor.get_executor(), serve_connection(std::move(socket), services), asio::detached);
  }
}

}  // namespace keygate::api
