// proxy::Server answering for the authorizer: rejections in proxy mode, and authz-only mode
// (nginx auth_request, Traefik forwardAuth, Envoy ext_authz).
#include "proxy_harness.hpp"

#include <boost/json/parse.hpp>

using namespace keygate::test;

namespace {

std::string json_field(const std::string& body, const char* name) {
  const auto value = boost::json::parse(body).as_object().at(name);
  return std::string(value.as_string());
}

std::uint64_t decision_count(keygate::authz::DenyReason reason) {
  const auto index = keygate::authz::decision_index(keygate::authz::Decision::deny(reason));
  return count(keygate::store::metrics().requests_by_decision[index]);
}

}  // namespace

TEST_CASE("no key: 401 missing_key with WWW-Authenticate: Bearer, and nothing forwarded") {
  TestUpstream upstream;
  ProxyUnderTest proxy(test_options(upstream.port));
  const auto before = decision_count(keygate::authz::DenyReason::missing_key);
  const auto reply = round_trip(proxy.port, get("/private"));
  REQUIRE(reply);
  CHECK(reply->status == 401);
  CHECK(reply->header("www-authenticate") == "Bearer");
  CHECK(reply->header("content-type") == "application/json");
  CHECK(reply->header("cache-control") == "no-store");
  CHECK(json_field(reply->body, "error") == "missing_key");
  CHECK(json_field(reply->body, "message") == "an API key is required");
  CHECK_FALSE(reply->has("ratelimit-limit"));
  CHECK(upstream.received().empty());
  CHECK(decision_count(keygate::authz::DenyReason::missing_key) == before + 1);

  proxy.stop();
  const auto completed = proxy.completed();
  REQUIRE(completed.size() == 1);
  CHECK(completed[0].status == 401);
  CHECK(completed[0].had_auth);
  CHECK(completed[0].path == "/private");
}

TEST_CASE("an invalid key: 401 invalid_key with error=\"invalid_token\", the key never echoed") {
  TestUpstream upstream;
  ProxyUnderTest proxy(test_options(upstream.port));
  RawClient client(proxy.port);
  REQUIRE(client.send(get("/private", "X-API-Key: kg_secret_guess_123\r\n")));
  const auto reply = client.read_reply();
  REQUIRE(reply);
  CHECK(reply->status == 401);
  CHECK(reply->header("www-authenticate") == "Bearer error=\"invalid_token\"");
  CHECK(json_field(reply->body, "error") == "invalid_key");
  CHECK(reply->body.find("kg_secret_guess_123") == std::string::npos);
  for (const auto& [name, value] : reply->headers) {
    CHECK(value.find("kg_secret_guess_123") == std::string::npos);
  }
  // A rejection without a body keeps the connection.
  REQUIRE(client.send(get("/private", bearer(good_key))));
  CHECK(client.read_reply()->status == 200);
  CHECK(upstream.received().size() == 1);
}

TEST_CASE("over the rate limit: 429 with Retry-After and RateLimit headers") {
  TestUpstream upstream;
  ProxyUnderTest proxy(test_options(upstream.port));
  const auto reply = round_trip(proxy.port, get("/private", bearer(limited_key)));
  REQUIRE(reply);
  CHECK(reply->status == 429);
  CHECK(reply->header("retry-after") == "30");
  CHECK(reply->header("ratelimit-limit") == "100");
  CHECK(reply->header("ratelimit-remaining") == "0");
  CHECK(reply->header("ratelimit-reset") == "30");
  CHECK(json_field(reply->body, "error") == "rate_limited");
  CHECK_FALSE(reply->has("www-authenticate"));
  CHECK(upstream.received().empty());
}

TEST_CASE("stores down: 503 store_unavailable with Retry-After") {
  TestUpstream upstream;
  ProxyUnderTest proxy(test_options(upstream.port));
  const auto reply = round_trip(proxy.port, get("/private", bearer(undecidable_key)));
  REQUIRE(reply);
  CHECK(reply->status == 503);
  CHECK(reply->has("retry-after"));
  CHECK(json_field(reply->body, "error") == "store_unavailable");
  CHECK(upstream.received().empty());
}

TEST_CASE("a rejected request's small body is dropped and the connection serves the next one") {
  TestUpstream upstream;
  ProxyUnderTest proxy(test_options(upstream.port));
  RawClient client(proxy.port);
  REQUIRE(client.send("POST /private HTTP/1.1\r\nHost: app\r\nContent-Length: 4\r\n\r\nbody" +
                      get("/next", bearer(good_key))));
  CHECK(client.read_reply()->status == 401);
  const auto next = client.read_reply();
  REQUIRE(next);
  CHECK(next->status == 200);
  REQUIRE(upstream.received().size() == 1);
  CHECK(upstream.received()[0].target == "/next");
}

TEST_CASE("a rejected request with a large body is answered and the connection closes") {
  TestUpstream upstream;
  ProxyUnderTest proxy(test_options(upstream.port));
  RawClient client(proxy.port);
  REQUIRE(client.send("POST /private HTTP/1.1\r\nHost: app\r\nContent-Length: 10000000\r\n\r\n" +
                      std::string(1000, 'x')));
  const auto reply = client.read_reply();
  REQUIRE(reply);
  CHECK(reply->status == 401);
  CHECK(reply->header("connection") == "close");
  CHECK(client.closed_by_peer());
}

// ---- authz mode -----------------------------------------------------------------------------

namespace {

// The test client is a trusted proxy, so its X-Original-* / X-Forwarded-* are believed.
keygate::proxy::ProxyOptions authz_options() {
  auto options = test_options(1);  // never contacted
  options.mode = keygate::proxy::ProxyOptions::Mode::authz;
  options.trusted_proxies.push_back(*keygate::core::IpNetwork::parse("127.0.0.0/8"));
  return options;
}

}  // namespace

TEST_CASE("authz mode: allowed answers 200 with identity and RateLimit headers, never forwards") {
  ProxyUnderTest proxy(authz_options());
  RawClient client(proxy.port);
  REQUIRE(client.send("GET /auth HTTP/1.1\r\nHost: keygate\r\nX-Original-Method: DELETE\r\n"
                      "X-Original-URI: /inventory/./items/7?force=1\r\n" +
                      bearer(good_key) + "\r\n"));
  const auto reply = client.read_reply();
  REQUIRE(reply);
  CHECK(reply->status == 200);
  CHECK(reply->header("x-api-key-id") == "key-1");
  CHECK(reply->header("x-api-key-owner") == "user:42");
  CHECK(reply->header("x-api-key-scopes") == "read,write");
  CHECK(reply->header("ratelimit-remaining") == "99");
  CHECK(reply->body.empty());
  const auto calls = proxy.auth->snapshot();
  REQUIRE(calls.size() == 1);
  CHECK(calls[0].method == "DELETE");
  CHECK(calls[0].path == "/inventory/items/7");

  // Denied: the rejection as in proxy mode, on the same connection.
  REQUIRE(client.send("GET /auth HTTP/1.1\r\nHost: keygate\r\nX-Original-URI: /x\r\n\r\n"));
  const auto denied = client.read_reply();
  REQUIRE(denied);
  CHECK(denied->status == 401);
  CHECK(denied->header("www-authenticate") == "Bearer");
  CHECK(json_field(denied->body, "error") == "missing_key");
}

TEST_CASE("authz mode: X-Forwarded-Method/-Uri, then the request itself") {
  ProxyUnderTest proxy(authz_options());
  RawClient client(proxy.port);
  REQUIRE(client.send("GET /verify HTTP/1.1\r\nHost: keygate\r\nX-Forwarded-Method: POST\r\n"
                      "X-Forwarded-Uri: /orders\r\n" + bearer(good_key) + "\r\n"));
  CHECK(client.read_reply()->status == 200);
  REQUIRE(client.send("PATCH /itself HTTP/1.1\r\nHost: keygate\r\nContent-Length: 3\r\n" +
                      bearer(good_key) + "\r\nabc"));
  CHECK(client.read_reply()->status == 200);  // the body was read and dropped
  REQUIRE(client.send(get("/again", bearer(good_key))));
  CHECK(client.read_reply()->status == 200);
  const auto calls = proxy.auth->snapshot();
  REQUIRE(calls.size() == 3);
  CHECK(calls[0].method == "POST");
  CHECK(calls[0].path == "/orders");
  CHECK(calls[1].method == "PATCH");
  CHECK(calls[1].path == "/itself");
}

TEST_CASE("authz mode: X-Original-* from a peer outside trusted_proxies are ignored") {
  auto options = authz_options();
  options.trusted_proxies = {*keygate::core::IpNetwork::parse("10.0.0.0/8")};
  ProxyUnderTest proxy(options);
  const auto reply = round_trip(proxy.port, get("/auth", "X-Original-Method: DELETE\r\n"
                                                         "X-Original-URI: /public/x\r\n"
                                                         "X-Forwarded-Uri: /public/y\r\n"));
  REQUIRE(reply);
  CHECK(reply->status == 401);  // judged as GET /auth, which needs a key
  const auto calls = proxy.auth->snapshot();
  REQUIRE(calls.size() == 1);
  CHECK(calls[0].method == "GET");
  CHECK(calls[0].path == "/auth");
}

TEST_CASE("authz mode: a bad original URI is a 400") {
  ProxyUnderTest proxy(authz_options());
  const auto reply = round_trip(
      proxy.port, get("/auth", "X-Original-URI: /a%2Fb\r\n" + bearer(good_key)));
  REQUIRE(reply);
  CHECK(reply->status == 400);
  CHECK(json_field(reply->body, "error") == "bad_request");
  CHECK(proxy.auth->snapshot().empty());
}
