// proxy::Server forwarding allowed requests: what the upstream receives and what the client
// gets back (headers, bodies, keep-alive, the upstream pool).
#include "proxy_harness.hpp"

using namespace keygate::test;

TEST_CASE("an allowed request reaches the upstream with the identity headers and without the key") {
  TestUpstream upstream;
  ProxyUnderTest proxy(test_options(upstream.port));

  const auto reply = round_trip(proxy.port, get("/orders?x=1", bearer(good_key) +
                                                                "User-Agent: tester/1\r\n"));
  REQUIRE(reply);
  CHECK(reply->status == 200);
  CHECK(reply->body == "upstream ok");
  CHECK(reply->header("ratelimit-limit") == "100");
  CHECK(reply->header("ratelimit-remaining") == "99");
  CHECK(reply->header("ratelimit-reset") == "60");
  CHECK(reply->header("x-upstream") == "yes");

  const auto received = upstream.received();
  REQUIRE(received.size() == 1);
  const Received& request = received[0];
  CHECK(request.target == "/orders?x=1");
  CHECK(request.header("x-api-key-id") == "key-1");
  CHECK(request.header("x-api-key-owner") == "user:42");
  CHECK(request.header("x-api-key-scopes") == "read,write");
  CHECK_FALSE(request.has("authorization"));
  CHECK(request.header("x-forwarded-for") == "127.0.0.1");
  CHECK(request.header("x-forwarded-proto") == "http");
  CHECK(request.header("host") == "app");

  const auto calls = proxy.auth->snapshot();
  REQUIRE(calls.size() == 1);
  CHECK(calls[0].method == "GET");
  CHECK(calls[0].path == "/orders");
  CHECK(calls[0].credential == good_key);

  proxy.stop();
  const auto completed = proxy.completed();
  REQUIRE(completed.size() == 1);
  CHECK(completed[0].had_auth);
  CHECK(completed[0].status == 200);
  CHECK(completed[0].path == "/orders");
  CHECK(completed[0].user_agent == "tester/1");
}

TEST_CASE("the credential stays when hide_credentials is off") {
  TestUpstream upstream;
  auto options = test_options(upstream.port);
  options.hide_credentials = false;
  ProxyUnderTest proxy(options);
  const auto reply = round_trip(proxy.port, get("/a", "X-API-Key: kg_test_good\r\n"));
  REQUIRE(reply);
  CHECK(reply->status == 200);
  REQUIRE(upstream.received().size() == 1);
  CHECK(upstream.received()[0].header("x-api-key") == good_key);
}

TEST_CASE("client-sent identity headers are removed on every request, also on public routes") {
  TestUpstream upstream;
  ProxyUnderTest proxy(test_options(upstream.port));
  const std::string forged =
      "X-Api-Key-Id: admin\r\nX-API-KEY-OWNER: user:1\r\nx-api-key-scopes: *\r\n";

  const auto public_reply = round_trip(proxy.port, get("/public/page", forged));
  REQUIRE(public_reply);
  CHECK(public_reply->status == 200);
  const auto keyed_reply = round_trip(proxy.port, get("/private", forged + bearer(good_key)));
  REQUIRE(keyed_reply);
  CHECK(keyed_reply->status == 200);

  const auto received = upstream.received();
  REQUIRE(received.size() == 2);
  CHECK_FALSE(received[0].has("x-api-key-id"));
  CHECK_FALSE(received[0].has("x-api-key-owner"));
  CHECK_FALSE(received[0].has("x-api-key-scopes"));
  CHECK_FALSE(public_reply->has("ratelimit-limit"));
  int ids = 0;
  for (const auto& [name, value] : received[1].headers) {
    if (name == "x-api-key-id") ++ids;
  }
  CHECK(ids == 1);
  CHECK(received[1].header("x-api-key-id") == "key-1");
  CHECK(received[1].header("x-api-key-scopes") == "read,write");
}

TEST_CASE("hop-by-hop headers are removed in both directions") {
  TestUpstream upstream;
  ProxyUnderTest proxy(test_options(upstream.port));
  const auto reply = round_trip(
      proxy.port,
      get("/hop", bearer(good_key) +
                      "Connection: keep-alive, X-Private\r\nX-Private: 1\r\nKeep-Alive: 300\r\n"
                      "Proxy-Connection: keep-alive\r\nTE: trailers\r\nUpgrade: websocket\r\n"
                      "Trailer: X-Sum\r\nX-Kept: yes\r\n"));
  REQUIRE(reply);
  CHECK(reply->status == 200);
  const auto received = upstream.received();
  REQUIRE(received.size() == 1);
  for (const char* name : {"connection", "x-private", "keep-alive", "proxy-connection", "te",
                           "upgrade", "trailer", "transfer-encoding"}) {
    CAPTURE(name);
    CHECK_FALSE(received[0].has(name));
  }
  CHECK(received[0].header("x-kept") == "yes");
  // The upstream's own hop-by-hop headers do not reach the client.
  CHECK_FALSE(reply->has("keep-alive"));
  CHECK_FALSE(reply->has("x-hop"));
  CHECK_FALSE(reply->has("connection"));
}

TEST_CASE("X-Forwarded-For is replaced for an untrusted peer and appended for a trusted one") {
  TestUpstream upstream;
  {
    ProxyUnderTest proxy(test_options(upstream.port));
    const auto reply =
        round_trip(proxy.port, get("/xff", bearer(good_key) + "X-Forwarded-For: 6.6.6.6\r\n"));
    REQUIRE(reply);
    CHECK(upstream.received().back().header("x-forwarded-for") == "127.0.0.1");
    CHECK(proxy.auth->snapshot().back().client_ip == "127.0.0.1");
  }
  auto options = test_options(upstream.port);
  options.trusted_proxies.push_back(*keygate::core::IpNetwork::parse("127.0.0.0/8"));
  ProxyUnderTest proxy(options);
  const auto reply =
      round_trip(proxy.port, get("/xff", bearer(good_key) + "X-Forwarded-For: 203.0.113.7\r\n"));
  REQUIRE(reply);
  CHECK(upstream.received().back().header("x-forwarded-for") == "203.0.113.7, 127.0.0.1");
  CHECK(proxy.auth->snapshot().back().client_ip == "203.0.113.7");
}

TEST_CASE("a key in the query string is used and removed when the parameter is enabled") {
  TestUpstream upstream;
  auto options = test_options(upstream.port);
  options.credential_query_parameter = "api_key";
  ProxyUnderTest proxy(options);
  const auto reply = round_trip(proxy.port, get("/q?a=1&api_key=kg_test_good&b=2"));
  REQUIRE(reply);
  CHECK(reply->status == 200);
  REQUIRE(upstream.received().size() == 1);
  CHECK(upstream.received()[0].target == "/q?a=1&b=2");
}

TEST_CASE("the upstream receives the normalized path that was authorized") {
  TestUpstream upstream;
  ProxyUnderTest proxy(test_options(upstream.port));
  const auto reply = round_trip(proxy.port, get("/public/..//admin/./x", bearer(good_key)));
  REQUIRE(reply);
  CHECK(reply->status == 200);
  CHECK(proxy.auth->snapshot().back().path == "/admin/x");
  CHECK(upstream.received().back().target == "/admin/x");
}

TEST_CASE("keep-alive: requests on one client connection share one upstream connection") {
  TestUpstream upstream;
  ProxyUnderTest proxy(test_options(upstream.port));
  RawClient client(proxy.port);
  for (int i = 0; i < 3; ++i) {
    REQUIRE(client.send(get("/k", bearer(good_key))));
    const auto reply = client.read_reply();
    REQUIRE(reply);
    CHECK(reply->status == 200);
  }
  // Pipelined: both requests in one write.
  REQUIRE(client.send(get("/p1", bearer(good_key)) + get("/p2", bearer(good_key))));
  CHECK(client.read_reply()->status == 200);
  CHECK(client.read_reply()->status == 200);
  CHECK(upstream.received().size() == 5);
  CHECK(upstream.connections() == 1);
}

TEST_CASE("an upstream Connection: close is not reused") {
  TestUpstream upstream;
  ProxyUnderTest proxy(test_options(upstream.port));
  RawClient client(proxy.port);
  REQUIRE(client.send(get("/close", bearer(good_key))));
  const auto first = client.read_reply();
  REQUIRE(first);
  CHECK(first->status == 200);
  CHECK_FALSE(first->has("connection"));  // the client's connection stays open
  REQUIRE(client.send(get("/after", bearer(good_key))));
  CHECK(client.read_reply()->status == 200);
  CHECK(upstream.connections() == 2);
}

TEST_CASE("a stale pooled upstream connection is retried once on a fresh one") {
  TestUpstream upstream;
  ProxyUnderTest proxy(test_options(upstream.port));
  CHECK(round_trip(proxy.port, get("/one", bearer(good_key)))->status == 200);
  upstream.close_idle();  // the upstream's keep-alive timeout passes
  const auto reply = round_trip(proxy.port, get("/two", bearer(good_key)));
  REQUIRE(reply);
  CHECK(reply->status == 200);
  CHECK(upstream.connections() == 2);
  CHECK(upstream.received().size() == 2);
}

TEST_CASE("chunked request and response bodies stream through, re-framed") {
  TestUpstream upstream;
  ProxyUnderTest proxy(test_options(upstream.port));
  RawClient client(proxy.port);
  REQUIRE(client.send("POST /upload HTTP/1.1\r\nHost: app\r\n" + bearer(good_key) +
                      "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n"
                      "0\r\n\r\n"));
  const auto reply = client.read_reply();
  REQUIRE(reply);
  CHECK(reply->status == 200);
  const auto received = upstream.received();
  REQUIRE(received.size() == 1);
  CHECK(received[0].body_bytes == 11);
  CHECK(received[0].header("transfer-encoding") == "chunked");
  CHECK_FALSE(received[0].has("content-length"));

  REQUIRE(client.send(get("/chunked", bearer(good_key))));
  const auto chunked = client.read_reply();
  REQUIRE(chunked);
  CHECK(chunked->status == 200);
  CHECK(chunked->body == "hello, chunked");
  CHECK(chunked->header("transfer-encoding") == "chunked");
  CHECK_FALSE(chunked->has("trailer"));
}

TEST_CASE("an HTTP/1.0 client gets a chunked upstream body without chunking, then a close") {
  TestUpstream upstream;
  ProxyUnderTest proxy(test_options(upstream.port));
  RawClient client(proxy.port);
  REQUIRE(client.send("GET /chunked HTTP/1.0\r\n" + bearer(good_key) + "\r\n"));
  const auto reply = client.read_reply();
  REQUIRE(reply);
  CHECK(reply->status == 200);
  CHECK(reply->body == "hello, chunked");
  CHECK_FALSE(reply->has("transfer-encoding"));
  CHECK(client.closed_by_peer());
  REQUIRE(upstream.received().size() == 1);
  CHECK(upstream.received()[0].header("host") == "127.0.0.1:" + std::to_string(upstream.port));
}

TEST_CASE("HTTP/1.0 keep-alive is honoured when asked for") {
  TestUpstream upstream;
  ProxyUnderTest proxy(test_options(upstream.port));
  RawClient client(proxy.port);
  const std::string request =
      "GET /ka HTTP/1.0\r\nConnection: keep-alive\r\n" + bearer(good_key) + "\r\n";
  REQUIRE(client.send(request));
  const auto first = client.read_reply();
  REQUIRE(first);
  CHECK(first->header("connection") == "keep-alive");
  REQUIRE(client.send(request));
  CHECK(client.read_reply()->status == 200);
}

TEST_CASE("Expect: 100-continue is answered by keygate after authorizing, and not forwarded") {
  TestUpstream upstream;
  ProxyUnderTest proxy(test_options(upstream.port));

  RawClient allowed(proxy.port);
  REQUIRE(allowed.send("PUT /doc HTTP/1.1\r\nHost: app\r\n" + bearer(good_key) +
                       "Content-Length: 5\r\nExpect: 100-continue\r\n\r\n"));
  CHECK(allowed.read_some().starts_with("HTTP/1.1 100 Continue\r\n\r\n"));
  REQUIRE(allowed.send("abcde"));
  const auto reply = allowed.read_reply();
  REQUIRE(reply);
  CHECK(reply->status == 200);
  REQUIRE(upstream.received().size() == 1);
  CHECK(upstream.received()[0].body_bytes == 5);
  CHECK_FALSE(upstream.received()[0].has("expect"));

  RawClient rejected(proxy.port);
  REQUIRE(rejected.send("PUT /doc HTTP/1.1\r\nHost: app\r\nAuthorization: Bearer wrong\r\n"
                        "Content-Length: 5\r\nExpect: 100-continue\r\n\r\n"));
  const auto denial = rejected.read_reply();
  REQUIRE(denial);
  CHECK(denial->status == 401);
  CHECK(denial->header("connection") == "close");
  CHECK(rejected.closed_by_peer());
  CHECK(upstream.received().size() == 1);
}

TEST_CASE("a HEAD response keeps its Content-Length and has no body") {
  TestUpstream upstream;
  ProxyUnderTest proxy(test_options(upstream.port));
  RawClient client(proxy.port);
  REQUIRE(client.send("HEAD /h HTTP/1.1\r\nHost: app\r\n" + bearer(good_key) + "\r\n"));
  const auto reply = client.read_reply(5s, true);
  REQUIRE(reply);
  CHECK(reply->status == 200);
  CHECK(reply->header("content-length") == "11");
  REQUIRE(client.send(get("/after-head", bearer(good_key))));
  const auto next = client.read_reply();
  REQUIRE(next);
  CHECK(next->body == "upstream ok");
}

TEST_CASE("a 100 MB upload, plain and chunked, streams with RSS growing under 20 MB") {
  TestUpstream upstream;
  auto options = test_options(upstream.port);
  ProxyUnderTest proxy(options);
  constexpr std::uint64_t total = 100ull * 1024 * 1024;
  const std::string block(64 * 1024, 'x');

  CHECK(round_trip(proxy.port, get("/warm", bearer(good_key)))->status == 200);
  const std::size_t before = resident_bytes();

  RawClient client(proxy.port);
  REQUIRE(client.send("POST /upload HTTP/1.1\r\nHost: app\r\n" + bearer(good_key) +
                      "Content-Length: " + std::to_string(total) + "\r\n\r\n"));
  for (std::uint64_t sent = 0; sent < total; sent += block.size()) {
    REQUIRE(client.send(block));
  }
  const auto reply = client.read_reply(30s);
  REQUIRE(reply);
  CHECK(reply->status == 200);
  CHECK(upstream.received().back().body_bytes == total);

  // Chunked upload of the same size.
  REQUIRE(client.send("POST /upload HTTP/1.1\r\nHost: app\r\n" + bearer(good_key) +
                      "Transfer-Encoding: chunked\r\n\r\n"));
  const std::string chunk = "10000\r\n" + block + "\r\n";
  for (std::uint64_t sent = 0; sent < total; sent += block.size()) {
    REQUIRE(client.send(chunk));
  }
  REQUIRE(client.send("0\r\n\r\n"));
  CHECK(client.read_reply(30s)->status == 200);
  CHECK(upstream.received().back().body_bytes == total);
  const std::size_t after_uploads = resident_bytes();
  CHECK(after_uploads < before + 20 * 1024 * 1024);

  // Download: the client reads it whole (the test client holds the body; count only it).
  const std::uint64_t download = 20ull * 1024 * 1024;
  REQUIRE(client.send(get("/big?bytes=" + std::to_string(download), bearer(good_key))));
  const auto big = client.read_reply(30s);
  REQUIRE(big);
  CHECK(big->body.size() == download);
}
