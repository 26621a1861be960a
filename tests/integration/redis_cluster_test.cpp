// RedisClusterClient and a seeds-following RedisSubscriber against real Redis Clusters
// (3 masters + 3 replicas of redis-server): the shared one of KEYGATE_TEST_REDIS_CLUSTER for
// plain commands (unique keys per test), private ones (tests/support/redis_cluster.hpp) for
// resharding, failovers and killed nodes.
#include <doctest/doctest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <array>
#include <chrono>
#include <functional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include "store/metrics.hpp"
#include "store/redis_client.hpp"
#include "store/redis_cluster.hpp"
#include "store/redis_cluster_slots.hpp"
#include "store/redis_rate_counter.hpp"
#include "support/redis_cluster.hpp"
#include "support/run_coro.hpp"
#include "support/test_env.hpp"

namespace asio = boost::asio;
using namespace std::chrono_literals;
using keygate::store::key_slot;
using keygate::store::RedisClusterClient;
using keygate::store::RedisClusterOptions;
using keygate::store::RedisCommands;
using keygate::store::RedisErrc;
using keygate::store::RedisReply;
using keygate::store::RedisResult;
using Clock = std::chrono::steady_clock;

namespace {

RedisClusterOptions cluster_options(std::vector<keygate::store::RedisEndpoint> seeds) {
  RedisClusterOptions options;
  options.seeds = std::move(seeds);
  return options;
}

std::string unique_tag(const std::string& name) {
  static std::mt19937_64 random{std::random_device{}()};
  return "kgt:" + name + ":" + std::to_string(::getpid()) + ":" + std::to_string(random());
}

template <typename... Args>
asio::awaitable<RedisResult> call(RedisCommands& client, Args... args) {
  const std::array<std::string_view, sizeof...(Args)> argv{std::string_view(args)...};
  co_return co_await client.command(argv);
}

asio::awaitable<void> pause_for(Clock::duration duration) {
  asio::steady_timer timer(co_await asio::this_coro::executor, duration);
  co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
}

asio::awaitable<bool> eventually(std::function<bool()> done, Clock::duration limit) {
  const auto deadline = Clock::now() + limit;
  while (!done()) {
    if (Clock::now() >= deadline) co_return false;
    co_await pause_for(5ms);
  }
  co_return true;
}

bool is_string(const RedisResult& result, std::string_view value) {
  return result.ok() && result.reply.kind == RedisReply::Kind::string && result.reply.str == value;
}

void check_string(const RedisResult& result, std::string_view value) {
  REQUIRE(result.ok());
  CHECK(result.reply.kind == RedisReply::Kind::string);
  CHECK(result.reply.str == value);
}

void check_ok(const RedisResult& result) {
  REQUIRE(result.ok());
  CHECK(result.reply.kind == RedisReply::Kind::status);
  CHECK(result.reply.str == "OK");
}

std::uint64_t moved_count() { return keygate::store::metrics().redis_cluster_moved.load(); }
std::uint64_t ask_count() { return keygate::store::metrics().redis_cluster_ask.load(); }

long long ms_since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

}  // namespace

TEST_CASE("redis cluster: commands reach keys in every master's slots, each on its owner") {
  const auto seeds = keygate::test::shared_cluster_seeds();
  keygate::test::run_coro([&]() -> asio::awaitable<void> {
    RedisClusterClient client(co_await asio::this_coro::executor, cluster_options(seeds));
    client.start();
    REQUIRE(co_await client.wait_connected(5s));
    CHECK(client.connected());
    CHECK(client.master_count() == 3);
    CHECK(client.connected_masters() == 3);

    const std::uint64_t moved_before = moved_count();
    const std::string prefix = unique_tag("spread");
    std::set<std::uint16_t> owners;
    for (int i = 0; i < 48; ++i) {
      const std::string key = prefix + ":" + std::to_string(i);
      const std::string value = "v" + std::to_string(i);
      const std::array<std::string_view, 5> set{"SET", key, value, "EX", "60"};
      check_ok(co_await client.command(set));
      check_string(co_await call(client, "GET", key), value);
      // Stored on the master that serves its slot: that node answers GET itself.
      const std::uint16_t owner = keygate::test::cluster_master_of(seeds[0].port, key_slot(key));
      REQUIRE(owner != 0);
      owners.insert(owner);
      const std::string direct = keygate::test::run_output("redis-cli -p " + std::to_string(owner) + " GET " + key);
      CHECK(direct == value + "\n");
    }
    CHECK(owners.size() == 3);
    CHECK(moved_count() == moved_before);  // each sent to the right node the first time

    // Keyless commands go to any master; a script with keys in two slots is refused unsent.
    const RedisResult pong = co_await call(client, "PING");
    REQUIRE(pong.ok());
    CHECK(pong.reply.str == "PONG");
    const keygate::store::RedisScript script("return redis.call('GET', KEYS[1])");
    const std::string a = prefix + ":0";
    const std::string b = prefix + ":1";
    const std::array<std::string_view, 2> two_slots{a, b};
    REQUIRE(key_slot(a) != key_slot(b));
    const RedisResult crossed = co_await client.eval_script(script, two_slots, {});
    REQUIRE(crossed.ok());
    CHECK(crossed.reply.is_error_code("CROSSSLOT"));
    const std::array<std::string_view, 1> one{a};
    check_string(co_await client.eval_script(script, one, {}), "v0");
    client.stop();
    CHECK_FALSE(client.connected());
  }());
}

TEST_CASE("redis cluster: the rate-limit script answers as on one server") {
  const auto seeds = keygate::test::shared_cluster_seeds();
  std::string error;
  const auto single = keygate::store::parse_redis_url(keygate::test::redis_url(), &error);
  REQUIRE(single);
  keygate::test::run_coro([&]() -> asio::awaitable<void> {
    const auto executor = co_await asio::this_coro::executor;
    RedisClusterClient cluster(executor, cluster_options(seeds));
    keygate::store::RedisClient server(executor, *single);
    cluster.start();
    server.start();
    REQUIRE(co_await cluster.wait_connected(5s));
    REQUIRE(co_await server.wait_connected(5s));
    keygate::store::RedisRateCounter on_cluster(cluster);
    keygate::store::RedisRateCounter on_server(server);

    const std::string id = unique_tag("same-answers");
    const std::string counter = "kg:rl:{" + id + "}:10s";
    keygate::store::QuotaHit quota;
    quota.key_id = id;
    quota.quota = 40;
    quota.period_start_s = 1'700'000'000;
    quota.expire_ms = 120'000;
    int allowed = 0;
    int refused = 0;
    std::int64_t now = 1'000'000;
    for (int i = 0; i < 120; ++i) {
      keygate::store::WindowHit hit;
      hit.counter = counter;
      hit.limit = 25;
      hit.bucket_ticks = 1000;
      hit.buckets = 10;
      hit.now_ticks = now;
      hit.tick_ms = 1;
      hit.want = i % 3 == 0 ? 8 : 1;
      if (i >= 60) hit.quota = &quota;  // the script's two-key form as well
      const auto a = co_await on_cluster.hit(hit);
      const auto b = co_await on_server.hit(hit);
      CAPTURE(i);
      REQUIRE(a.status == keygate::store::WindowHitResult::Status::ok);
      REQUIRE(b.status == keygate::store::WindowHitResult::Status::ok);
      CHECK(a.verdict == b.verdict);
      CHECK(a.previous == b.previous);
      CHECK(a.current == b.current);
      CHECK(a.counts == b.counts);
      CHECK(a.granted == b.granted);
      CHECK(a.quota_used == b.quota_used);
      if (a.allowed()) ++allowed;
      else ++refused;
      now += 97;  // 120 calls over 11.6 s: the window slides, buckets leave it
    }
    MESSAGE("120 calls: " << allowed << " allowed, " << refused << " refused, alike on both");
    CHECK(allowed > 0);
    CHECK(refused > 0);
  }());
}

TEST_CASE("redis cluster: ASK during a slot's migration and MOVED after it are followed") {
  keygate::test::RedisCluster cluster;
  keygate::test::run_coro([&]() -> asio::awaitable<void> {
    RedisClusterClient client(co_await asio::this_coro::executor, cluster_options(cluster.seeds()));
    client.start();
    REQUIRE(co_await client.wait_connected(5s));
    const std::string tag = "{" + unique_tag("migrating") + "}";
    const std::string moved_key = tag + ":a";
    const std::string staying_key = tag + ":b";
    const std::uint16_t slot = key_slot(tag);
    check_ok(co_await call(client, "SET", moved_key, "first"));
    check_ok(co_await call(client, "SET", staying_key, "second"));

    const std::uint16_t source = cluster.master_of(slot);
    std::uint16_t target = 0;  // another master
    for (const auto& node : cluster.nodes(source)) {
      if (node.port != source && node.is_master() && !node.failed() && !node.slots.empty()) target = node.port;
    }
    REQUIRE(source != 0);
    REQUIRE(target != 0);
    const std::string slot_text = std::to_string(slot);
    const std::string source_id = cluster.node_id(source);
    const std::string target_id = cluster.node_id(target);
    CHECK(cluster.cli(target, "CLUSTER SETSLOT " + slot_text + " IMPORTING " + source_id) == "OK\n");
    CHECK(cluster.cli(source, "CLUSTER SETSLOT " + slot_text + " MIGRATING " + target_id) == "OK\n");
    CHECK(cluster.cli(source, "MIGRATE 127.0.0.1 " + std::to_string(target) + " \"\" 0 5000 KEYS " + moved_key) ==
          "OK\n");

    // The key that has left: the source answers ASK, the target has it (after ASKING).
    const std::uint64_t ask_before = ask_count();
    const std::uint64_t moved_before = moved_count();
    check_string(co_await call(client, "GET", moved_key), "first");
    CHECK(ask_count() == ask_before + 1);
    // The key still on the source is served there; the map is unchanged by an ASK.
    check_string(co_await call(client, "GET", staying_key), "second");
    CHECK(ask_count() == ask_before + 1);
    CHECK(moved_count() == moved_before);
    // A script on the migrated key: ASK, then EVAL on the target (its script cache is its own).
    const keygate::store::RedisScript script("return redis.call('GET', KEYS[1])");
    const std::array<std::string_view, 1> keys{moved_key};
    check_string(co_await client.eval_script(script, keys, {}), "first");

    // The migration ends: the slot is the target's everywhere.
    CHECK(cluster.cli(source, "MIGRATE 127.0.0.1 " + std::to_string(target) + " \"\" 0 5000 KEYS " + staying_key) ==
          "OK\n");
    for (const std::uint16_t port : cluster.ports()) {
      if (cluster.replica_of(port) != 0) cluster.cli(port, "CLUSTER SETSLOT " + slot_text + " NODE " + target_id);
    }
    check_string(co_await call(client, "GET", staying_key), "second");  // MOVED, followed
    CHECK(moved_count() == moved_before + 1);
    for (int i = 0; i < 20; ++i) check_string(co_await call(client, "GET", staying_key), "second");
    CHECK(moved_count() == moved_before + 1);  // the map was updated at once
    // And the refresh that MOVED asked for reads the same map from the cluster.
    co_await pause_for(300ms);
    check_string(co_await call(client, "GET", moved_key), "first");
    CHECK(moved_count() == moved_before + 1);
  }());
}

TEST_CASE("redis cluster: after CLUSTER FAILOVER on a replica the old master's MOVED is followed") {
  keygate::test::RedisCluster cluster;
  keygate::test::run_coro([&]() -> asio::awaitable<void> {
    RedisClusterClient client(co_await asio::this_coro::executor, cluster_options(cluster.seeds()));
    client.start();
    REQUIRE(co_await client.wait_connected(5s));
    const std::string key = "{" + unique_tag("failover") + "}";
    check_ok(co_await call(client, "SET", key, "kept"));
    const std::uint16_t master = cluster.master_of(key_slot(key));
    const std::uint16_t replica = cluster.replica_of(master);
    REQUIRE(replica != 0);
    cluster.cli(master, "WAIT 1 1000");
    const auto started = Clock::now();
    // A manual failover gives up after 5 s when the master and replica do not agree in time
    // (a loaded machine): then once more, FORCE (no agreement with the old master needed).
    bool promoted = false;
    for (const char* command : {"CLUSTER FAILOVER", "CLUSTER FAILOVER FORCE"}) {
      CHECK(cluster.cli(replica, command) == "OK\n");
      promoted = co_await eventually([&] { return cluster.master_of(key_slot(key)) == replica; }, 6s);
      if (promoted) break;
    }
    REQUIRE(promoted);
    const long long promoted_ms = ms_since(started);
    const std::uint64_t moved_before = moved_count();
    // The demoted master answers MOVED: followed to the promoted replica, a node the client had
    // no connection to, within the one command.
    check_string(co_await call(client, "GET", key), "kept");
    CHECK(moved_count() == moved_before + 1);
    REQUIRE(co_await client.wait_connected(5s));
    for (int i = 0; i < 10; ++i) check_string(co_await call(client, "GET", key), "kept");
    MESSAGE("manual failover: replica promoted after " << promoted_ms << " ms");
  }());
}

TEST_CASE("redis cluster: a killed master's slots fail fast until its replica is promoted, then work") {
  keygate::test::RedisCluster cluster(3, 2000);
  keygate::test::run_coro([&]() -> asio::awaitable<void> {
    RedisClusterClient client(co_await asio::this_coro::executor, cluster_options(cluster.seeds()));
    client.start();
    REQUIRE(co_await client.wait_connected(5s));
    const std::string key = "{" + unique_tag("killed") + "}";
    check_ok(co_await call(client, "SET", key, "survives"));
    const std::uint16_t master = cluster.master_of(key_slot(key));
    const std::uint16_t replica = cluster.replica_of(master);
    REQUIRE(replica != 0);
    CHECK(cluster.cli(master, "WAIT 1 1000") == "1\n");  // the replica has the key

    cluster.kill(master);
    const auto killed = Clock::now();
    int fast_failures = 0;
    long long slowest_failure_ms = 0;
    long long recovered_ms = -1;
    while (ms_since(killed) < 15'000) {
      const auto sent = Clock::now();
      const RedisResult result = co_await call(client, "GET", key);
      const long long took = ms_since(sent);
      if (is_string(result, "survives")) {
        recovered_ms = ms_since(killed);
        break;
      }
      // Down: no connection to the slot's master (or the cluster says CLUSTERDOWN) at once,
      // never a wait for command_timeout (250 ms).
      ++fast_failures;
      slowest_failure_ms = std::max(slowest_failure_ms, took);
      CHECK(client.connected());  // the other masters are still there
      co_await pause_for(20ms);
    }
    MESSAGE("master killed: " << fast_failures << " failures (slowest " << slowest_failure_ms
            << " ms) until the replica served the slot after " << recovered_ms << " ms");
    REQUIRE(recovered_ms > 0);
    CHECK(fast_failures > 0);
    CHECK(slowest_failure_ms < 100);
    CHECK(cluster.master_of(key_slot(key)) == replica);
    for (int i = 0; i < 10; ++i) check_string(co_await call(client, "GET", key), "survives");
  }());
}

TEST_CASE("redis cluster: a subscriber on one node moves to another seed when it is lost") {
  keygate::test::RedisCluster cluster;
  keygate::test::run_coro([&]() -> asio::awaitable<void> {
    const auto executor = co_await asio::this_coro::executor;
    // A replica first: losing it leaves the cluster serving every slot.
    const std::uint16_t first_master = cluster.master_of(0);
    std::vector<keygate::store::RedisEndpoint> seeds{{"127.0.0.1", cluster.replica_of(first_master)}};
    for (const auto& seed : cluster.seeds()) {
      if (seed.port != seeds[0].port) seeds.push_back(seed);
    }
    std::vector<std::string> messages;
    int reconnects = 0;
    keygate::store::RedisSubscriber subscriber(
        executor, keygate::store::RedisOptions{}, seeds, {"keygate:revoked"},
        [&](std::string_view, std::string_view payload) { messages.emplace_back(payload); },
        [&] { ++reconnects; });
    RedisClusterClient publisher(executor, cluster_options(cluster.seeds()));
    subscriber.start();
    publisher.start();
    REQUIRE(co_await subscriber.wait_connected(5s));
    REQUIRE(co_await publisher.wait_connected(5s));
    const std::uint16_t first = subscriber.node().port;
    CHECK(first == seeds[0].port);
    // PUBLISH goes to any master; the cluster hands it to every node.
    REQUIRE((co_await call(publisher, "PUBLISH", "keygate:revoked", "one")).ok());
    REQUIRE(co_await eventually([&] { return messages.size() == 1; }, 2s));

    cluster.kill(first);
    REQUIRE(co_await eventually([&] { return subscriber.connected() && subscriber.node().port != first; }, 5s));
    CHECK(reconnects == 2);
    REQUIRE((co_await call(publisher, "PUBLISH", "keygate:revoked", "two")).ok());
    REQUIRE(co_await eventually([&] { return messages.size() == 2; }, 2s));
    CHECK(messages[1] == "two");
    subscriber.stop();
  }());
}
