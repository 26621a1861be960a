// The admin listener: health, readiness and metrics for probes and Prometheus. Not on the
// request path, so the plain Beast idioms (tcp_stream with expires_after) are fine here.
#include "proxy/admin.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "proxy/metrics_text.hpp"

namespace keygate::proxy {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr auto admin_timeout = std::chrono::seconds(10);
constexpr auto tuple = asio::as_tuple(asio::use_awaitable);

http::response<http::string_body> answer(const http::request<http::empty_body>& request,
                                         const std::function<bool()>& is_ready) {
  http::response<http::string_body> response{http::status::ok, request.version()};
  response.set(http::field::content_type, "text/plain; charset=utf-8");
  response.set(http::field::cache_control, "no-store");
  const auto path = request.target().substr(0, request.target().find('?'));
  if (request.method() != http::verb::get && request.method() != http::verb::head) {
    response.result(http::status::method_not_allowed);
    response.set(http::field::allow, "GET, HEAD");
    response.body() = "method not allowed\n";
  } else if (path == "/healthz") {
    response.body() = "ok\n";
  } else if (path == "/readyz") {
    const bool ready = !is_ready || is_ready();
    response.result(ready ? http::status::ok : http::status::service_unavailable);
    response.body() = ready ? "ready\n" : "not ready\n";
  } else if (path == "/metrics") {
    response.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
    response.body() = render_metrics(store::metrics());
  } else {
    response.result(http::status::not_found);
    response.body() = "not found\n";
  }
  response.keep_alive(request.keep_alive());
  response.prepare_payload();
  if (request.method() == http::verb::head) response.body().clear();
  return response;
}

asio::awaitable<void> serve_admin_connection(tcp::socket socket,
                                             const std::function<bool()>& is_ready) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::empty_body> parser;
    parser.header_limit(8 * 1024);
    stream.expires_after(admin_timeout);
    auto [read_error, n] = co_await http::async_read(stream, buffer, parser, tuple);
    if (read_error) break;
    auto response = answer(parser.get(), is_ready);
    const bool keep_alive = response.keep_alive();
    if (parser.get().method() == http::verb::head) {
      http::response_serializer<http::string_body> serializer{response};
      auto [write_error, m] = co_await http::async_write_header(stream, serializer, tuple);
      if (write_error) break;
    } else {
      auto [write_error, m] = co_await http::async_write(stream, response, tuple);
      if (write_error) break;
    }
    if (!keep_alive) break;
  }
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

}  // namespace

asio::awaitable<void> serve_admin(tcp::acceptor& acceptor, const std::function<bool()>& is_ready) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(tuple);
    if (ec) {
      if (!acceptor.is_open() || ec == asio::error::operation_aborted) co_return;
      continue;
    }
    asio::co_spawn(acceptor.get_executor(), serve_admin_connection(std::move(socket), is_ready),
                   asio::detached);
  }
}

}  // namespace keygate::proxy
