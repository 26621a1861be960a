// proxy::Server limits, timeouts, upstream failures and request-smuggling shapes. Each case
// asserts what the client got and that the upstream saw nothing it should not have.
#include "proxy_harness.hpp"

#include "proxy/ops_metrics.hpp"
#include "proxy/turn_away.hpp"

using namespace keygate::test;

namespace {

bool is_error(const std::optional<Reply>& reply, int status, const std::string& code) {
  return reply && reply->status == status &&
         reply->body.find("\"error\":\"" + code + "\"") != std::string::npos &&
         reply->header("content-type") == "application/json";
}

// A loopback port with nothing listening on it.
std::uint16_t closed_port() {
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return acceptor.local_endpoint().port();
}

}  // namespace

// ---- smuggling shapes ---------------------------------------------------------------------

TEST_CASE("request-smuggling shapes are refused with 400 (501 for a coding) and the connection closes") {
  TestUpstream upstream;
  ProxyUnderTest proxy(test_options(upstream.port));
  const std::string start = "POST /s HTTP/1.1\r\nHost: app\r\n" + bearer(good_key);
  struct Shape {
    const char* name;
    std::string rest;
    int status = 400;
    const char* code = "bad_request";
  };
  const std::vector<Shape> shapes = {
      {"Content-Length with Transfer-Encoding",
       "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
      {"Transfer-Encoding with Content-Length",
       "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"},
      {"differing Content-Length", "Content-Length: 5\r\nContent-Length: 6\r\n\r\nabcdef"},
      {"Content-Length list that differs", "Content-Length: 5, 6\r\n\r\nabcdef"},
      {"Transfer-Encoding not chunked", "Transfer-Encoding: gzip\r\n\r\nabc"},
      {"Transfer-Encoding chunked not final", "Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"},
      {"Transfer-Encoding with another coding", "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
       501, "not_implemented"},
      {"Transfer-Encoding twice", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
                                  "0\r\n\r\n"},
      {"Transfer-Encoding gzip then Content-Length",
       "Transfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabc"},
      {"obs-fold", "X-Folded: a\r\n b\r\nContent-Length: 0\r\n\r\n"},
      {"obs-fold in Transfer-Encoding", "Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n"},
      {"bad chunk size", "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"},
      {"chunk longer than its size", "Transfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n"},
      {"bad Content-Length", "Content-Length: -1\r\n\r\n"},
      {"space before the colon", "Content-Length : 0\r\n\r\n"},
      {"repeated identical Content-Length", "Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc"},
      {"Content-Length list of one value", "Content-Length: 3, 3\r\n\r\nabc"},
      {"Transfer_Encoding read as Transfer-Encoding by CGI servers",
       "Transfer_Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc"},
  };
  for (const auto& [name, rest, status, code] : shapes) {
    CAPTURE(name);
    RawClient client(proxy.port);
    REQUIRE(client.send(start + rest));
    const auto reply = client.read_reply();
    CHECK(is_error(reply, status, code));
    if (reply) CHECK(reply->header("connection") == "close");
    CHECK(client.closed_by_peer());
  }
  // A chunk body error can only show once forwarding began: the upstream never sees a
  // complete request, and nothing else reached it.
  for (const auto& request : upstream.received()) {
    CHECK(request.body_bytes == 0);
  }
  CHECK(upstream.received().size() <= 2);
}

TEST_CASE("a chunked body that turns bad once forwarded: 400, the upstream connection is dropped") {
  TestUpstream upstream;
  ProxyUnderTest proxy(test_options(upstream.port));
  {
    RawClient client(proxy.port);
    // The first chunk goes to the upstream with the header before "zz" is parsed.
    REQUIRE(client.send("POST /bad HTTP/1.1\r\nHost: app\r\n" + bearer(good_key) +
                        "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nmore\r\n0\r\n\r\n"));
    CHECK(is_error(client.read_reply(), 400, "bad_request"));
    CHECK(client.closed_by_peer());
  }
  // The header and the first chunk went out on upstream connection 1 (counted when the
  // upstream's accept loop gets to it).
  const auto deadline = std::chrono::steady_clock::now() + 2s;
  while (upstream.connections() < 1 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);
  }
  CHECK(upstream.connections() == 1);
  // Had that connection gone back to the pool, this request would continue the broken body.
  const auto reply = round_trip(proxy.port, get("/next", bearer(good_key)));
  REQUIRE(reply);
  CHECK(reply->status == 200);
  REQUIRE(upstream.received().size() == 1);  // the broken request never completed
  CHECK(upstream.received()[0].target == "/next");
  CHECK(upstream.received()[0].connection == 2);
}

TEST_CASE("an absolute-form target is forwarded in origin-form with its authority as Host") {
  TestUpstream upstream;
  ProxyUnderTest proxy(test_options(upstream.port));
  const auto reply =
      round_trip(proxy.port, get("http://Other.Test:81/a/../b?q=1", bearer(good_key)));
  REQUIRE(reply);
  CHECK(reply->status == 200);
  const auto received = upstream.received();  // a copy: the loop below must not outlive it
  REQUIRE(received.size() == 1);
  CHECK(received[0].target == "/b?q=1");
  std::vector<std::string> hosts;
  for (const auto& [name, value] : received[0].headers) {
    if (name == "host") hosts.push_back(value);
  }
  CHECK(hosts == std::vector<std::string>{"Other.Test:81"});
  REQUIRE(proxy.auth->snapshot().size() == 1);
  CHECK(proxy.auth->snapshot()[0].path == "/b");
}

TEST_CASE("a target that does not normalize is a 400 and is not authorized") {
  TestUpstream upstream;
  ProxyUnderTest proxy(test_options(upstream.port));
  for (const char* target : {"/a%2fb", "/bad%zz", "*", "ftp://evil/x", "evil:80", "http://u@evil/"}) {
    CAPTURE(target);
    CHECK(is_error(round_trip(proxy.port, get(target, bearer(good_key))), 400, "bad_request"));
  }
  CHECK(proxy.auth->snapshot().empty());
  CHECK(upstream.received().empty());
}

// ---- limits -------------------------------------------------------------------------------

TEST_CASE("a header over max_header_bytes is a 431") {
  TestUpstream upstream;
  auto options = test_options(upstream.port);
  options.max_header_bytes = 2048;
  ProxyUnderTest proxy(options);
  RawClient client(proxy.port);
  REQUIRE(client.send(get("/h", bearer(good_key) + "X-Big: " + std::string(4096, 'a') + "\r\n")));
  CHECK(is_error(client.read_reply(), 431, "header_too_large"));
  CHECK(client.closed_by_peer());
  CHECK(upstream.received().empty());
}

TEST_CASE("a Content-Length over max_body_bytes is a 413 before any body is read") {
  TestUpstream upstream;
  auto options = test_options(upstream.port);
  options.max_body_bytes = 1000;
  ProxyUnderTest proxy(options);
  RawClient client(proxy.port);
  REQUIRE(client.send("POST /b HTTP/1.1\r\nHost: app\r\n" + bearer(good_key) +
                      "Content-Length: 1001\r\n\r\n"));
  CHECK(is_error(client.read_reply(), 413, "body_too_large"));
  CHECK(client.closed_by_peer());
  CHECK(proxy.auth->snapshot().empty());
  CHECK(upstream.received().empty());
}

TEST_CASE("a chunked body growing over max_body_bytes is a 413 while streaming") {
  TestUpstream upstream;
  auto options = test_options(upstream.port);
  options.max_body_bytes = 1000;
  ProxyUnderTest proxy(options);
  RawClient client(proxy.port);
  REQUIRE(client.send("POST /b HTTP/1.1\r\nHost: app\r\n" + bearer(good_key) +
                      "Transfer-Encoding: chunked\r\n\r\n"));
  const std::string chunk = "200\r\n" + std::string(512, 'z') + "\r\n";
  client.send(chunk + chunk + chunk);
  CHECK(is_error(client.read_reply(), 413, "body_too_large"));
  CHECK(client.closed_by_peer());
  for (const auto& request : upstream.received()) CHECK(request.body_bytes < 1001);
}

TEST_CASE("a header not complete within header_timeout is a 408 and the connection closes") {
  TestUpstream upstream;
  auto options = test_options(upstream.port);
  options.header_timeout = 300ms;
  ProxyUnderTest proxy(options);
  RawClient client(proxy.port);
  REQUIRE(client.send("GET /slowloris HTTP/1.1\r\nHost: app\r\n"));
  const auto started = std::chrono::steady_clock::now();
  CHECK(is_error(client.read_reply(3s), 408, "request_timeout"));
  CHECK(std::chrono::steady_clock::now() - started < 2s);
  CHECK(client.closed_by_peer());
}

TEST_CASE("an idle keep-alive connection is closed after idle_timeout, silently") {
  TestUpstream upstream;
  auto options = test_options(upstream.port);
  options.idle_timeout = 300ms;
  ProxyUnderTest proxy(options);
  RawClient client(proxy.port);
  REQUIRE(client.send(get("/i", bearer(good_key))));
  CHECK(client.read_reply()->status == 200);
  const auto started = std::chrono::steady_clock::now();
  CHECK(client.read_some(3s).empty());  // closed with nothing sent
  CHECK(std::chrono::steady_clock::now() - started < 2s);
}

TEST_CASE("a connection over max_connections is answered 503 over_capacity and closed, uncounted") {
  using keygate::proxy::ops_metrics;
  TestUpstream upstream;
  auto options = test_options(upstream.port);
  options.max_connections = 2;
  ProxyUnderTest proxy(options);
  const auto answered = count(ops_metrics().connections_rejected_answered);
  RawClient first(proxy.port);
  RawClient second(proxy.port);
  REQUIRE(first.send(get("/1", bearer(good_key))));
  REQUIRE(second.send(get("/2", bearer(good_key))));
  CHECK(first.read_reply()->status == 200);
  CHECK(second.read_reply()->status == 200);
  RawClient third(proxy.port);
  // A whole request with a body, sent before reading: the answer is not reset away by it.
  REQUIRE(third.send("POST /3 HTTP/1.1\r\nHost: app\r\n" + bearer(good_key) +
                     "Content-Length: 20000\r\n\r\n" + std::string(20000, 'x')));
  const auto reply = third.read_reply();
  CHECK(is_error(reply, 503, "over_capacity"));
  REQUIRE(reply);
  CHECK(reply->header("retry-after") == "1");
  CHECK(reply->header("connection") == "close");
  CHECK(third.closed_by_peer());
  CHECK(count(ops_metrics().connections_rejected_answered) == answered + 1);
  CHECK(keygate::store::metrics().open_connections.load() == 2);
  CHECK(upstream.received().size() == 2);
  REQUIRE(first.send(get("/3", bearer(good_key))));
  CHECK(first.read_reply()->status == 200);
}

TEST_CASE("over max_connections, a worker answers a bounded number at a time and closes the rest at once") {
  using keygate::proxy::ops_metrics;
  using keygate::proxy::max_turning_away;
  TestUpstream upstream;
  auto options = test_options(upstream.port);
  options.max_connections = 1;
  ProxyUnderTest proxy(options);
  const auto answered_before = count(ops_metrics().connections_rejected_answered);
  const auto closed_before = count(ops_metrics().connections_rejected_closed);
  auto held = std::make_unique<RawClient>(proxy.port);
  REQUIRE(held->send(get("/held", bearer(good_key))));
  CHECK(held->read_reply()->status == 200);
  // None of these closes its end: each one answered holds its place for turn_away_time.
  constexpr std::size_t extra = 6;
  std::vector<std::unique_ptr<RawClient>> over;
  for (std::size_t i = 0; i < max_turning_away + extra; ++i) {
    over.push_back(std::make_unique<RawClient>(proxy.port));
  }
  std::size_t answered = 0;
  std::size_t closed = 0;
  for (auto& client : over) {
    const auto reply = client->read_reply(3s);
    if (reply && reply->status == 503) {
      ++answered;
    } else if (!reply) {  // closed with nothing sent
      ++closed;
    }
  }
  CHECK(answered == max_turning_away);
  CHECK(closed == extra);
  CHECK(count(ops_metrics().connections_rejected_answered) - answered_before == max_turning_away);
  CHECK(count(ops_metrics().connections_rejected_closed) - closed_before == extra);
  // Turning away blocks nothing: once the held connection has gone, the next one is served.
  held.reset();
  bool served = false;
  const auto deadline = std::chrono::steady_clock::now() + 3s;
  while (!served && std::chrono::steady_clock::now() < deadline) {
    RawClient next(proxy.port);
    REQUIRE(next.send(get("/next", bearer(good_key))));
    const auto reply = next.read_reply();
    served = reply && reply->status == 200;
    if (!served) std::this_thread::sleep_for(20ms);
  }
  CHECK(served);
}

// ---- upstream failures --------------------------------------------------------------------

TEST_CASE("an upstream that refuses connections is a 502 upstream_unavailable") {
  auto options = test_options(closed_port());
  ProxyUnderTest proxy(options);
  const auto before = count(keygate::store::metrics().upstream_errors_connect);
  RawClient client(proxy.port);
  REQUIRE(client.send(get("/x", bearer(good_key))));
  CHECK(is_error(client.read_reply(), 502, "upstream_unavailable"));
  CHECK(count(keygate::store::metrics().upstream_errors_connect) == before + 1);
  // The client's connection survives an upstream failure.
  REQUIRE(client.send(get("/x", bearer(good_key))));
  CHECK(is_error(client.read_reply(), 502, "upstream_unavailable"));
}

TEST_CASE("an upstream that answers too slowly is a 504 upstream_timeout") {
  TestUpstream upstream;
  upstream.slow_ms = 3000;
  auto options = test_options(upstream.port);
  options.upstream_response_timeout = 300ms;
  ProxyUnderTest proxy(options);
  const auto before = count(keygate::store::metrics().upstream_errors_timeout);
  const auto started = std::chrono::steady_clock::now();
  CHECK(is_error(round_trip(proxy.port, get("/slow", bearer(good_key))), 504, "upstream_timeout"));
  CHECK(std::chrono::steady_clock::now() - started < 2s);
  CHECK(count(keygate::store::metrics().upstream_errors_timeout) == before + 1);
}

TEST_CASE("an upstream that closes without answering is a 502 (after one retry if pooled)") {
  TestUpstream upstream;
  ProxyUnderTest proxy(test_options(upstream.port));
  CHECK(is_error(round_trip(proxy.port, get("/drop", bearer(good_key))), 502,
                 "upstream_unavailable"));
  CHECK(upstream.received().size() == 1);  // a fresh connection is not retried
}
