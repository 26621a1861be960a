// proxy::Server's admin listener (health, readiness, metrics) and its graceful stop.
#include "proxy_harness.hpp"

#include <cstring>
#include <future>
#include <set>
#include <sstream>

#include "proxy/metrics_text.hpp"

using namespace keygate::test;

TEST_CASE("admin: /healthz is ok and /readyz follows is_ready") {
  std::atomic<bool> ready{false};
  ProxyUnderTest proxy(test_options(1), [&] { return ready.load(); });
  const auto health = round_trip(proxy.admin_port, get("/healthz"));
  REQUIRE(health);
  CHECK(health->status == 200);
  CHECK(health->body == "ok\n");
  CHECK(round_trip(proxy.admin_port, get("/readyz"))->status == 503);
  ready = true;
  CHECK(round_trip(proxy.admin_port, get("/readyz"))->status == 200);
  CHECK(round_trip(proxy.admin_port, get("/nothing"))->status == 404);
}

TEST_CASE("admin: /metrics renders every family in Prometheus text with the request counts") {
  TestUpstream upstream;
  ProxyUnderTest proxy(test_options(upstream.port));
  CHECK(round_trip(proxy.port, get("/m", bearer(good_key)))->status == 200);
  CHECK(round_trip(proxy.port, get("/m"))->status == 401);
  const auto reply = round_trip(proxy.admin_port, get("/metrics"));
  REQUIRE(reply);
  CHECK(reply->status == 200);
  CHECK(reply->header("content-type")->starts_with("text/plain; version=0.0.4"));
  const std::string& text = reply->body;
  for (const char* family :
       {"keygate_requests_total", "keygate_responses_total", "keygate_key_lookups_total",
        "keygate_postgres_key_queries_total", "keygate_redis_latency_seconds",
        "keygate_postgres_latency_seconds", "keygate_upstream_latency_seconds",
        "keygate_upstream_errors_total", "keygate_open_connections",
        "keygate_open_upstream_connections", "keygate_usage_events_total",
        "keygate_usage_queue_depth"}) {
    CAPTURE(family);
    CHECK(text.find(std::string("# HELP ") + family + " ") != std::string::npos);
    CHECK(text.find(std::string("# TYPE ") + family + " ") != std::string::npos);
  }
  const auto& m = keygate::store::metrics();
  CHECK(text.find("keygate_requests_total{decision=\"allowed\"} " +
                  std::to_string(count(m.requests_by_decision[0])) + "\n") != std::string::npos);
  CHECK(count(m.requests_by_decision[0]) >= 1);
  const auto missing_key = keygate::authz::decision_index(
      keygate::authz::Decision::deny(keygate::authz::DenyReason::missing_key));
  CHECK(count(m.requests_by_decision[missing_key]) >= 1);
  CHECK(text.find("keygate_requests_total{decision=\"missing_key\"}") != std::string::npos);
  CHECK(text.find("keygate_responses_total{class=\"4xx\"}") != std::string::npos);
  CHECK(text.find("keygate_upstream_latency_seconds_bucket{le=\"+Inf\"}") != std::string::npos);
  CHECK(text.find("keygate_key_lookups_total{tier=\"redis\",outcome=\"hit\"}") !=
        std::string::npos);
}

TEST_CASE("metrics text: every sample line belongs to a declared family") {
  const std::string text = keygate::proxy::render_metrics(keygate::store::metrics());
  std::set<std::string> declared;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.starts_with("# TYPE ")) {
      declared.insert(line.substr(7, line.find(' ', 7) - 7));
      continue;
    }
    if (line.starts_with("#")) continue;
    std::string name = line.substr(0, line.find_first_of("{ "));
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      if (name.ends_with(suffix) && !declared.count(name)) {
        name.resize(name.size() - std::strlen(suffix));
      }
    }
    CAPTURE(line);
    CHECK(declared.count(name) == 1);
  }
  CHECK(declared.size() >= 15);
}

TEST_CASE("stop: an in-flight request finishes, idle connections close, new ones are refused") {
  TestUpstream upstream;
  upstream.slow_ms = 500;
  auto options = test_options(upstream.port);
  ProxyUnderTest proxy(options);
  RawClient idle(proxy.port);
  REQUIRE(idle.send(get("/warm", bearer(good_key))));
  CHECK(idle.read_reply()->status == 200);

  RawClient busy(proxy.port);
  REQUIRE(busy.send(get("/slow", bearer(good_key))));
  REQUIRE(upstream.wait_for_requests(2));  // the slow one is in flight
  auto stopped = std::async(std::launch::async, [&] { proxy.stop(); });

  const auto reply = busy.read_reply();
  REQUIRE(reply);
  CHECK(reply->status == 200);
  CHECK(reply->header("connection") == "close");
  CHECK(idle.closed_by_peer());
  CHECK(stopped.wait_for(5s) == std::future_status::ready);
  // The listener is gone.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(proxy.port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0);
  ::close(fd);
}

TEST_CASE("stop: a request still running at shutdown_timeout does not hold up the stop") {
  TestUpstream upstream;
  upstream.slow_ms = 5000;
  auto options = test_options(upstream.port);
  options.shutdown_timeout = 300ms;
  options.upstream_response_timeout = 10s;
  ProxyUnderTest proxy(options);
  RawClient busy(proxy.port);
  REQUIRE(busy.send(get("/slow", bearer(good_key))));
  REQUIRE(upstream.wait_for_requests(1));
  const auto started = std::chrono::steady_clock::now();
  proxy.stop();
  CHECK(std::chrono::steady_clock::now() - started < 2s);
}

TEST_CASE("several worker threads share the port and each serve requests") {
  TestUpstream upstream;
  auto options = test_options(upstream.port);
  options.threads = 3;
  ProxyUnderTest proxy(options);
  std::vector<std::unique_ptr<RawClient>> clients;
  for (int i = 0; i < 12; ++i) {
    clients.push_back(std::make_unique<RawClient>(proxy.port));
    REQUIRE(clients.back()->send(get("/w", bearer(good_key))));
  }
  for (auto& client : clients) {
    const auto reply = client->read_reply();
    REQUIRE(reply);
    CHECK(reply->status == 200);
  }
  std::atomic<int> visited{0};
  std::promise<void> all;
  proxy.server().post_to_workers([&](unsigned) {
    if (++visited == 3) all.set_value();
  });
  CHECK(all.get_future().wait_for(5s) == std::future_status::ready);
}
