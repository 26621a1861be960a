#pragma once
// Internal to proxy/ (includes Beast; only proxy/*.cpp include it): the state one client
// connection keeps across requests, the state of one request as it moves through the phases,
// and the small I/O steps they share.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <memory_resource>
#include <string>
#include <string_view>
#include <tuple>

#include "authz/authorizer.hpp"
#include "proxy/answers.hpp"
#include "proxy/deadline.hpp"
#include "proxy/headers.hpp"
#include "proxy/request_checks.hpp"
#include "proxy/stream.hpp"
#include "core/ip_network.hpp"

namespace keygate::proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

using Request = http::request<http::buffer_body, Fields>;
using Response = http::response<http::buffer_body, Fields>;
using RequestParser = http::request_parser<http::buffer_body, FieldAllocator>;
using ResponseParser = http::response_parser<http::buffer_body, FieldAllocator>;

inline constexpr auto awaitable_tuple = asio::as_tuple(asio::use_awaitable);

struct Worker;

// Reported by read_header when a header contains obs-fold (RFC 9112 5.2: reject), which
// Beast's parser would otherwise unfold silently.
inline const error_code obs_fold_error = http::error::bad_obs_fold;

// What one client connection keeps across its requests (buffers are sized once).
struct ClientConnection {
  ClientConnection(Worker& w, tcp::socket s);

  Worker& worker;
  Stream stream;                       // the client; TLS when the listener has it
  beast::flat_buffer buffer;           // read from the client, not yet parsed
  beast::flat_buffer upstream_buffer;  // read from the upstream, not yet parsed
  Deadline deadline;
  core::IpAddress peer;
  std::string peer_text;      // for X-Forwarded-For
  bool peer_trusted = false;  // a trusted proxy: its X-Forwarded-For is believed
  std::string scratch;        // answers and header values are formatted here
};

// Where the header fields of one exchange (the request, its edits, the upstream's response)
// are allocated: a block borrowed from the worker, then the heap should a header not fit.
// Nothing is freed field by field; all of it goes when the exchange ends, so declare the
// arena before the parsers that use it.
class HeaderArena {
 public:
  explicit HeaderArena(Worker& worker);
  ~HeaderArena();
  HeaderArena(const HeaderArena&) = delete;
  HeaderArena& operator=(const HeaderArena&) = delete;

  FieldAllocator allocator() { return FieldAllocator(&resource_); }

 private:
  Worker& worker_;
  std::unique_ptr<char[]> block_;
  std::pmr::monotonic_buffer_resource resource_;  // on block_
};

// A parser whose fields live in `arena`.
template <class Parser>
Parser make_parser(HeaderArena& arena) {
  return Parser(std::piecewise_construct, std::tuple<>(), std::make_tuple(arena.allocator()));
}

// What becomes of the client connection once an exchange is over. It only ever moves towards
// closing: a step that needs the connection closed says so, and nothing later reopens it.
enum class Fate {
  keep_alive,       // the next request may follow
  close,            // close once answered
  close_lingering,  // close once answered, but read (and drop) what the client still sends for
                    // a moment first, so that the kernel does not reset the connection before
                    // the client has read the answer (it was still sending a body)
};

// One request as it moves through the phases.
struct Exchange {
  ClientConnection& conn;
  HeaderArena& arena;  // the request's fields and the response's
  RequestParser& parser;
  std::chrono::steady_clock::time_point started;
  http::verb method = http::verb::unknown;  // as the client sent it
  bool http10 = false;          // the client spoke HTTP/1.0
  bool body_unread = false;     // body bytes the client may still send (see discard_body)
  bool expect_continue = false;
  Fate fate = Fate::keep_alive;
  int status = 0;               // what the client was answered (0: nothing)
  int upstream_status = 0;      // forwarded: the upstream's status (0: none)
  std::chrono::microseconds upstream_latency{-1};  // forwarded: until its response header
  // Set once a key was identified: keygate's own errors after that (502, 504, 413...) are
  // keyed answers too and carry the RateLimit-* headers.
  const authz::RateLimitStatus* rate = nullptr;

  bool keeps_alive() const { return fate == Fate::keep_alive; }
  void close_after_answer() {
    if (fate == Fate::keep_alive) fate = Fate::close;
  }
};

// The bytes read and not parsed yet.
inline std::string_view buffered(const beast::flat_buffer& buffer) {
  return {static_cast<const char*>(buffer.data().data()), buffer.size()};
}

// True when a header block contains a line starting with SP/HT (obs-fold).
inline bool has_obs_fold(const char* data, std::size_t size) {
  const char* end = data + size;
  for (const char* p = data; (p = static_cast<const char*>(std::memchr(p, '\n', end - p)));) {
    if (++p == end) break;
    if (*p == ' ' || *p == '\t') return true;
  }
  return false;
}

// Parses what `buffer` holds of a message header into `parser` and consumes it: need_more
// when the header is not complete yet, else the parser's verdict (or obs_fold_error). The
// step of read_header without the I/O (tests/fuzz/request_head.cpp drives it too).
template <bool isRequest>
error_code parse_header_bytes(beast::flat_buffer& buffer, http::basic_parser<isRequest>& parser) {
  if constexpr (isRequest) {
    if (!parser.got_some()) {  // RFC 9112 2.2: empty lines before a request are ignored
      buffer.consume(empty_lines_before_request(buffered(buffer)));
    }
  }
  if (buffer.size() == 0) return http::error::need_more;
  error_code ec;
  const auto data = buffer.data();
  const std::size_t used = parser.put(data, ec);
  if (has_obs_fold(static_cast<const char*>(data.data()), used)) return obs_fold_error;
  buffer.consume(used);
  return ec;
}

// Reads one message header into `parser`. Parses from `buffer` first and reads only when it
// needs more; `got_bytes` tells whether any byte of this message arrived (a stale keep-alive
// connection fails with none). Bounded by the parser's header limit; the caller's Deadline
// bounds the time.
template <bool isRequest>
asio::awaitable<error_code> read_header(Stream& socket, beast::flat_buffer& buffer,
                                        http::basic_parser<isRequest>& parser, bool& got_bytes) {
  got_bytes = buffer.size() > 0;
  for (;;) {
    if (const error_code ec = parse_header_bytes(buffer, parser); ec != http::error::need_more) {
      co_return ec;
    }
    constexpr std::size_t read_size = 16 * 1024;
    auto [ec, n] = co_await socket.async_read_some(buffer.prepare(read_size), awaitable_tuple);
    if (ec) co_return (ec == asio::error::eof && got_bytes) ? error_code(http::error::partial_message) : ec;
    buffer.commit(n);
    got_bytes = true;
  }
}

// Parses the body bytes already in `buffer` into `parser` (into its buffer_body window),
// without a trip through the event loop. False when there were none to parse: read first.
// need_more and need_buffer are not errors here.
template <bool isRequest>
bool parse_buffered_body(beast::flat_buffer& buffer, http::basic_parser<isRequest>& parser,
                         error_code& ec) {
  if (buffer.size() == 0) return false;
  const std::size_t used = parser.put(buffer.data(), ec);
  buffer.consume(used);
  if (ec == http::error::need_buffer) ec = {};
  if (ec == http::error::need_more) {
    ec = {};
    return used > 0;
  }
  return true;
}

// Writes x.conn.scratch (a complete answer) as the response to x. A failed write ends the
// connection.
asio::awaitable<void> send_answer(Exchange& x, int status);
// keygate's own error; the connection closes when a body may still be coming.
asio::awaitable<void> send_proxy_error(Exchange& x, const ProxyError& error);

// Also settles x.fate: a draining worker closes connections after their answer.
AnswerFraming framing_of(Exchange& x);

inline asio::awaitable<error_code> write_text(Stream& socket, std::string_view text) {
  auto [ec, n] = co_await asio::async_write(socket, asio::buffer(text.data(), text.size()),
                                            awaitable_tuple);
  co_return ec;
}

}  // namespace keygate::proxy
