// RedisClient and RedisSubscriber against real redis-servers: the shared one from
// KEYGATE_TEST_REDIS_URL for ordinary commands (unique keys per test), and private ones
// (tests/support/redis_server.hpp) for anything that pauses, flushes, kills or restarts a server.
#include <doctest/doctest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <unistd.h>

#include "store/metrics.hpp"
#include "store/redis_client.hpp"
#include "support/redis_server.hpp"
#include "support/run_coro.hpp"
#include "support/test_env.hpp"

namespace asio = boost::asio;
using namespace std::chrono_literals;
using keygate::store::RedisClient;
using keygate::store::RedisErrc;
using keygate::store::RedisOptions;
using keygate::store::RedisReply;
using keygate::store::RedisResult;
using keygate::store::RedisScript;
using keygate::store::RedisSubscriber;
using Clock = std::chrono::steady_clock;

namespace {

RedisOptions options_for(const std::string& url) {
  std::string error;
  auto options = keygate::store::parse_redis_url(url, &error);
  REQUIRE_MESSAGE(options.has_value(), error);
  return *options;
}

RedisOptions shared_server() { return options_for(keygate::test::redis_url()); }

// Keys no other test (or other run of this one) uses.
std::string unique_key(const std::string& name) {
  static std::mt19937_64 random{std::random_device{}()};
  return "keygate-test:redis:" + name + ":" + std::to_string(::getpid()) + ":" +
         std::to_string(random());
}

// Builds the argv array in a statement of its own (g++ 12 rejects braced lists inside co_await).
template <typename... Args>
asio::awaitable<RedisResult> call(RedisClient& client, Args... args) {
  const std::array<std::string_view, sizeof...(Args)> argv{std::string_view(args)...};
  co_return co_await client.command(argv);
}

asio::awaitable<void> pause_for(Clock::duration duration) {
  asio::steady_timer timer(co_await asio::this_coro::executor, duration);
  co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
}

// Polls `done` every few milliseconds until it holds or `limit` passes.
asio::awaitable<bool> eventually(std::function<bool()> done, Clock::duration limit) {
  const auto deadline = Clock::now() + limit;
  while (!done()) {
    if (Clock::now() >= deadline) co_return false;
    co_await pause_for(5ms);
  }
  co_return true;
}

// Runs one command in the background; `result` is set when it completes.
struct BackgroundCommand {
  std::optional<RedisResult> result;
};

std::shared_ptr<BackgroundCommand> start_command(const asio::any_io_executor& executor,
                                                 RedisClient& client,
                                                 std::vector<std::string> argv) {
  auto background = std::make_shared<BackgroundCommand>();
  asio::co_spawn(
      executor,
      [&client, background, argv = std::move(argv)]() -> asio::awaitable<void> {
        const std::vector<std::string_view> views(argv.begin(), argv.end());
        background->result = co_await client.command(views);
      },
      asio::detached);
  return background;
}

void check_status(const RedisResult& result, std::string_view status) {
  REQUIRE(result.ok());
  CHECK(result.reply.kind == RedisReply::Kind::status);
  CHECK(result.reply.str == status);
}

void check_string(const RedisResult& result, std::string_view value) {
  REQUIRE(result.ok());
  CHECK(result.reply.kind == RedisReply::Kind::string);
  CHECK(result.reply.str == value);
}

void check_integer(const RedisResult& result, long long value) {
  REQUIRE(result.ok());
  CHECK(result.reply.kind == RedisReply::Kind::integer);
  CHECK(result.reply.integer == value);
}

long long command_calls(const std::string& info, const std::string& command) {
  const std::string marker = "cmdstat_" + command + ":calls=";
  const auto at = info.find(marker);
  if (at == std::string::npos) return 0;
  return std::stoll(info.substr(at + marker.size()));
}

// An io_context whose pending handlers (suspended coroutines among them) can be destroyed
// while the objects they used live on, as the server does before it destroys the stores.
struct ShutdownContext : asio::io_context {
  using asio::io_context::shutdown;
};

}  // namespace

TEST_CASE("redis: SET, GET, DEL and every reply kind come back as owned values") {
  keygate::test::run_coro([]() -> asio::awaitable<void> {
    RedisClient client(co_await asio::this_coro::executor, shared_server());
    client.start();
    REQUIRE(co_await client.wait_connected(5s));
    CHECK(client.connected());
    const std::string key = unique_key("kinds");
    const std::string counter = unique_key("counter");
    const std::string list = unique_key("list");

    check_status(co_await call(client, "SET", key, "hello"), "OK");
    check_string(co_await call(client, "GET", key), "hello");

    const RedisResult missing = co_await call(client, "GET", unique_key("missing"));
    REQUIRE(missing.ok());
    CHECK(missing.reply.is_nil());

    check_integer(co_await call(client, "INCR", counter), 1);
    check_integer(co_await call(client, "INCRBY", counter, "41"), 42);

    check_integer(co_await call(client, "RPUSH", list, "a", "b", "c"), 3);
    const RedisResult range = co_await call(client, "LRANGE", list, "0", "-1");
    REQUIRE(range.ok());
    REQUIRE(range.reply.kind == RedisReply::Kind::array);
    REQUIRE(range.reply.elements.size() == 3);
    CHECK(range.reply.elements[0].str == "a");
    CHECK(range.reply.elements[2].str == "c");

    const RedisResult empty = co_await call(client, "LRANGE", unique_key("none"), "0", "-1");
    REQUIRE(empty.ok());
    CHECK(empty.reply.kind == RedisReply::Kind::array);
    CHECK(empty.reply.elements.empty());

    // A server error is a reply (transport fine), not a transport failure.
    const RedisResult wrong_type = co_await call(client, "INCR", list);
    REQUIRE(wrong_type.ok());
    CHECK(wrong_type.reply.is_error());
    CHECK(wrong_type.reply.is_error_code("WRONGTYPE"));
    const RedisResult unknown = co_await call(client, "NO-SUCH-COMMAND");
    REQUIRE(unknown.ok());
    CHECK(unknown.reply.is_error_code("ERR"));

    check_integer(co_await call(client, "DEL", key, counter, list), 3);
    const RedisResult gone = co_await call(client, "GET", key);
    REQUIRE(gone.ok());
    CHECK(gone.reply.is_nil());
  }());
}

TEST_CASE("redis: keys and values with NUL and CR LF bytes round-trip unchanged") {
  keygate::test::run_coro([]() -> asio::awaitable<void> {
    RedisClient client(co_await asio::this_coro::executor, shared_server());
    client.start();
    REQUIRE(co_await client.wait_connected(5s));
    const std::string key = unique_key("binary") + std::string("\0k\r\n", 4);
    const std::string value("a\0b\r\n\xff\0", 7);
    REQUIRE(value.size() == 7);

    check_status(co_await call(client, "SET", key, value), "OK");
    check_string(co_await call(client, "GET", key), value);
    check_integer(co_await call(client, "STRLEN", key), 7);
    const std::string empty_value;
    check_status(co_await call(client, "SET", key, empty_value), "OK");
    check_string(co_await call(client, "GET", key), "");
    check_integer(co_await call(client, "DEL", key), 1);
  }());
}

TEST_CASE("redis: 1000 concurrent commands from many coroutines each get their own reply") {
  keygate::test::run_coro([]() -> asio::awaitable<void> {
    const auto executor = co_await asio::this_coro::executor;
    RedisOptions options = shared_server();
    options.command_timeout = 3s;  // a loaded 2-core test machine; not what is tested here
    RedisClient client(executor, options);
    client.start();
    REQUIRE(co_await client.wait_connected(5s));
    const std::string prefix = unique_key("pipeline");
    const std::string counter = prefix + ":counter";

    constexpr int workers = 1000;
    int finished = 0;
    int matched = 0;
    for (int i = 0; i < workers; ++i) {
      asio::co_spawn(
          executor,
          [&client, &finished, &matched, &prefix, &counter, i]() -> asio::awaitable<void> {
            const std::string key = prefix + ":" + std::to_string(i);
            const std::string value = "value-" + std::to_string(i);
            const RedisResult set = co_await call(client, "SET", key, value, "EX", "60");
            const RedisResult incr = co_await call(client, "INCR", counter);
            const RedisResult get = co_await call(client, "GET", key);
            if (set.ok() && incr.ok() && incr.reply.kind == RedisReply::Kind::integer &&
                get.ok() && get.reply.str == value) {
              ++matched;
            }
            ++finished;
          },
          asio::detached);
    }
    REQUIRE(co_await eventually([&finished] { return finished == workers; }, 20s));
    CHECK(matched == workers);
    check_string(co_await call(client, "GET", counter), std::to_string(workers));
    check_integer(co_await call(client, "DEL", counter), 1);
  }());
}

TEST_CASE("redis: a command the server holds back times out, its late reply is dropped safely") {
  keygate::test::RedisServer server;  // CLIENT PAUSE would stall every test on a shared server
  keygate::test::run_coro([&server]() -> asio::awaitable<void> {
    const auto executor = co_await asio::this_coro::executor;
    RedisOptions options = options_for(server.url());
    options.command_timeout = 100ms;
    RedisClient client(executor, options);
    RedisClient admin(executor, options_for(server.url()));
    client.start();
    admin.start();
    REQUIRE(co_await client.wait_connected(5s));
    REQUIRE(co_await admin.wait_connected(5s));
    const std::uint64_t reconnects_before = keygate::store::metrics().redis_reconnects.load();

    check_status(co_await call(admin, "CLIENT", "PAUSE", "600"), "OK");
    const auto started = Clock::now();
    const RedisResult held = co_await call(client, "GET", "paused-key");
    const auto waited = Clock::now() - started;
    CHECK(held.errc == RedisErrc::timeout);
    CHECK(waited >= 95ms);
    CHECK(waited < 450ms);

    // The pause ends, the late replies arrive and find no one waiting; later commands work.
    std::optional<RedisResult> pong;
    const auto deadline = Clock::now() + 3s;
    while (Clock::now() < deadline) {
      RedisResult result = co_await call(client, "PING");
      if (result.ok()) {
        pong = std::move(result);
        break;
      }
      CHECK(result.errc == RedisErrc::timeout);
    }
    REQUIRE(pong.has_value());
    CHECK(pong->reply.str == "PONG");
    check_status(co_await call(client, "SET", "after-pause", "1"), "OK");
    check_string(co_await call(client, "GET", "after-pause"), "1");
    // Replies were late, not lost: the connection was kept.
    CHECK(keygate::store::metrics().redis_reconnects.load() == reconnects_before);
  }());
}

TEST_CASE("redis: a connection that stops answering altogether is dropped and re-made") {
  keygate::test::RedisServer server;
  keygate::test::run_coro([&server]() -> asio::awaitable<void> {
    const auto executor = co_await asio::this_coro::executor;
    RedisOptions options = options_for(server.url());
    options.command_timeout = 50ms;
    options.connect_timeout = 150ms;  // stall limit: max(2 * 150, 8 * 50) = 400 ms
    RedisClient client(executor, options);
    RedisClient admin(executor, options_for(server.url()));
    client.start();
    admin.start();
    REQUIRE(co_await client.wait_connected(5s));
    REQUIRE(co_await admin.wait_connected(5s));
    const std::uint64_t reconnects_before = keygate::store::metrics().redis_reconnects.load();

    check_status(co_await call(admin, "CLIENT", "PAUSE", "1500"), "OK");
    bool dropped = false;
    const auto deadline = Clock::now() + 1200ms;
    while (Clock::now() < deadline && !dropped) {
      const RedisResult result = co_await call(client, "PING");
      CHECK_FALSE(result.ok());
      dropped = !client.connected();
    }
    CHECK(dropped);
    // Once the pause is over the client is back on its own, on a new connection.
    REQUIRE(co_await client.wait_connected(5s));
    const auto recovered = co_await eventually(
        [&] { return keygate::store::metrics().redis_reconnects.load() > reconnects_before; }, 3s);
    CHECK(recovered);
    RedisResult pong;
    const auto pong_deadline = Clock::now() + 4s;
    while (!pong.ok() && Clock::now() < pong_deadline) {
      pong = co_await call(client, "PING");
      if (pong.errc == RedisErrc::disconnected) co_await pause_for(20ms);
    }
    REQUIRE(pong.ok());
    CHECK(pong.reply.str == "PONG");
  }());
}

TEST_CASE("redis: with nothing listening, commands fail at once with disconnected") {
  const std::uint16_t port = keygate::test::free_port();
  const auto started = Clock::now();
  keygate::test::run_coro([port]() -> asio::awaitable<void> {
    RedisOptions options;
    options.port = port;
    options.connect_timeout = 300ms;
    RedisClient client(co_await asio::this_coro::executor, options);
    client.start();
    for (int attempt = 0; attempt < 3; ++attempt) {
      const auto sent = Clock::now();
      const RedisResult result = co_await call(client, "GET", "anything");
      CHECK(result.errc == RedisErrc::disconnected);
      CHECK(Clock::now() - sent < 50ms);
      co_await pause_for(60ms);
    }
    CHECK_FALSE(co_await client.wait_connected(200ms));
    CHECK_FALSE(client.connected());
  }());
  // Destroying the client ended its reconnect loop: run_coro returned without waiting it out.
  CHECK(Clock::now() - started < 3s);
}

TEST_CASE("redis: the client reconnects by itself after the server restarts") {
  keygate::test::RedisServer server;
  keygate::test::run_coro([&server]() -> asio::awaitable<void> {
    const auto executor = co_await asio::this_coro::executor;
    RedisOptions options = options_for(server.url());
    options.command_timeout = 3s;  // so the blocked BLPOP ends by the disconnect, not a timeout
    RedisClient client(executor, options);
    client.start();
    REQUIRE(co_await client.wait_connected(5s));
    check_status(co_await call(client, "SET", "before", "1"), "OK");
    const std::uint64_t reconnects_before = keygate::store::metrics().redis_reconnects.load();

    // A command in flight when the server dies completes with `disconnected` at once.
    auto blocked = start_command(executor, client, {"BLPOP", "never-pushed", "10"});
    co_await pause_for(50ms);
    REQUIRE_FALSE(blocked->result.has_value());
    const auto killed_at = Clock::now();
    server.stop();
    REQUIRE(co_await eventually([&] { return blocked->result.has_value(); }, 2s));
    CHECK(blocked->result->errc == RedisErrc::disconnected);
    CHECK(Clock::now() - killed_at < 1s);
    CHECK_FALSE(client.connected());

    const auto sent = Clock::now();
    const RedisResult while_down = co_await call(client, "GET", "before");
    CHECK(while_down.errc == RedisErrc::disconnected);
    CHECK(Clock::now() - sent < 50ms);

    co_await pause_for(300ms);  // let the backoff grow a little
    server.start();
    const auto restarted_at = Clock::now();
    REQUIRE(co_await client.wait_connected(5s));
    CHECK(Clock::now() - restarted_at < 2500ms);
    CHECK(keygate::store::metrics().redis_reconnects.load() == reconnects_before + 1);
    check_status(co_await call(client, "SET", "after", "2"), "OK");
    check_string(co_await call(client, "GET", "after"), "2");
  }());
}

TEST_CASE("redis: destroying a client with commands in flight completes them as disconnected") {
  keygate::test::run_coro([]() -> asio::awaitable<void> {
    const auto executor = co_await asio::this_coro::executor;
    RedisOptions options = shared_server();
    options.command_timeout = 3s;
    auto client = std::make_unique<RedisClient>(executor, options);
    client->start();
    REQUIRE(co_await client->wait_connected(5s));
    auto blocked = start_command(executor, *client, {"BLPOP", unique_key("never-pushed"), "2"});
    auto queued = start_command(executor, *client, {"GET", unique_key("plain")});
    co_await pause_for(50ms);
    // Replies come in order: the GET waits behind the blocked BLPOP on the one connection.
    REQUIRE_FALSE(blocked->result.has_value());
    REQUIRE_FALSE(queued->result.has_value());
    client.reset();
    REQUIRE(co_await eventually(
        [&] { return blocked->result.has_value() && queued->result.has_value(); }, 1s));
    CHECK(blocked->result->errc == RedisErrc::disconnected);
    CHECK(queued->result->errc == RedisErrc::disconnected);
  }());
}

TEST_CASE("redis: eval_script uses EVALSHA and reloads the script after SCRIPT FLUSH") {
  keygate::test::RedisServer server;  // SCRIPT FLUSH and CONFIG RESETSTAT stay private
  keygate::test::run_coro([&server]() -> asio::awaitable<void> {
    RedisClient client(co_await asio::this_coro::executor, options_for(server.url()));
    client.start();
    REQUIRE(co_await client.wait_connected(5s));
    const RedisScript script("return {KEYS[1], ARGV[1], 42, {1, 'nested'}}");
    const std::string_view keys[] = {"the-key"};
    const std::string_view args[] = {std::string_view("arg\0ument", 9)};

    // The locally computed SHA-1 is the server's.
    check_string(co_await call(client, "SCRIPT", "LOAD", script.source()),
                 std::string(script.sha1()));
    check_status(co_await call(client, "CONFIG", "RESETSTAT"), "OK");

    const auto check_result = [](const RedisResult& result) {
      REQUIRE(result.ok());
      REQUIRE(result.reply.kind == RedisReply::Kind::array);
      REQUIRE(result.reply.elements.size() == 4);
      CHECK(result.reply.elements[0].str == "the-key");
      CHECK(result.reply.elements[1].str == std::string("arg\0ument", 9));
      CHECK(result.reply.elements[2].integer == 42);
      REQUIRE(result.reply.elements[3].elements.size() == 2);
      CHECK(result.reply.elements[3].elements[1].str == "nested");
    };
    check_result(co_await client.eval_script(script, keys, args));
    RedisResult info = co_await call(client, "INFO", "commandstats");
    REQUIRE(info.ok());
    CHECK(command_calls(info.reply.str, "evalsha") == 1);
    CHECK(command_calls(info.reply.str, "eval") == 0);

    check_status(co_await call(client, "SCRIPT", "FLUSH"), "OK");
    check_result(co_await client.eval_script(script, keys, args));
    // Reloaded: the next call is a plain EVALSHA again.
    const RedisResult exists = co_await call(client, "SCRIPT", "EXISTS", script.sha1());
    REQUIRE(exists.ok());
    REQUIRE(exists.reply.elements.size() == 1);
    CHECK(exists.reply.elements[0].integer == 1);
    check_status(co_await call(client, "CONFIG", "RESETSTAT"), "OK");
    check_result(co_await client.eval_script(script, keys, args));
    info = co_await call(client, "INFO", "commandstats");
    CHECK(command_calls(info.reply.str, "evalsha") == 1);
    CHECK(command_calls(info.reply.str, "eval") == 0);

    // A script error is an error reply, not retried.
    const RedisScript failing("return redis.error_reply('BROKEN on purpose')");
    const std::span<const std::string_view> none;
    const RedisResult broken = co_await client.eval_script(failing, none, none);
    REQUIRE(broken.ok());
    CHECK(broken.reply.is_error_code("BROKEN"));
  }());
}

TEST_CASE("redis: AUTH and SELECT from the URL are sent after every connect") {
  keygate::test::RedisServer server;
  keygate::test::run_coro([&server]() -> asio::awaitable<void> {
    const auto executor = co_await asio::this_coro::executor;
    RedisClient admin(executor, options_for(server.url()));
    admin.start();
    REQUIRE(co_await admin.wait_connected(5s));
    check_status(co_await call(admin, "SELECT", "3"), "OK");  // no effect: admin's own db
    check_status(co_await call(admin, "CONFIG", "SET", "requirepass", "t0p-secret"), "OK");

    RedisClient wrong(executor, options_for("redis://:wrong@127.0.0.1:" +
                                            std::to_string(server.port()) + "/3"));
    wrong.start();
    CHECK_FALSE(co_await wrong.wait_connected(400ms));

    RedisClient client(executor, options_for("redis://:t0p-secret@127.0.0.1:" +
                                             std::to_string(server.port()) + "/3"));
    client.start();
    REQUIRE(co_await client.wait_connected(5s));
    check_status(co_await call(client, "SET", "in-db-3", "yes"), "OK");
    const RedisResult db = co_await call(client, "CLIENT", "INFO");
    REQUIRE(db.ok());
    CHECK(db.reply.str.find(" db=3 ") != std::string::npos);
  }());
}

TEST_CASE("redis: the subscriber gets published messages and re-subscribes after a restart") {
  keygate::test::RedisServer server;
  keygate::test::run_coro([&server]() -> asio::awaitable<void> {
    const auto executor = co_await asio::this_coro::executor;
    std::vector<std::pair<std::string, std::string>> messages;
    int reconnects = 0;
    RedisSubscriber subscriber(
        executor, options_for(server.url()), {"keygate:a", "keygate:b"},
        [&messages](std::string_view channel, std::string_view payload) {
          messages.emplace_back(channel, payload);
        },
        [&reconnects] { ++reconnects; });
    RedisClient publisher(executor, options_for(server.url()));
    subscriber.start();
    publisher.start();
    REQUIRE(co_await subscriber.wait_connected(5s));
    REQUIRE(co_await publisher.wait_connected(5s));
    CHECK(reconnects == 1);

    const std::string binary("x\0y", 3);
    check_integer(co_await call(publisher, "PUBLISH", "keygate:a", "hello"), 1);
    check_integer(co_await call(publisher, "PUBLISH", "keygate:b", binary), 1);
    check_integer(co_await call(publisher, "PUBLISH", "keygate:other", "unseen"), 0);
    REQUIRE(co_await eventually([&] { return messages.size() >= 2; }, 2s));
    CHECK(messages[0] == std::make_pair(std::string("keygate:a"), std::string("hello")));
    CHECK(messages[1] == std::make_pair(std::string("keygate:b"), binary));

    server.stop();
    server.start();
    REQUIRE(co_await eventually([&] { return reconnects == 2; }, 5s));
    CHECK(subscriber.connected());
    REQUIRE(co_await publisher.wait_connected(5s));
    check_integer(co_await call(publisher, "PUBLISH", "keygate:b", "after restart"), 1);
    REQUIRE(co_await eventually([&] { return messages.size() >= 3; }, 2s));
    CHECK(messages[2].second == "after restart");

    // After stop(), nothing more is delivered.
    subscriber.stop();
    CHECK_FALSE(subscriber.connected());
    const RedisResult late = co_await call(publisher, "PUBLISH", "keygate:a", "too late");
    REQUIRE(late.ok());
    co_await pause_for(50ms);
    CHECK(messages.size() == 3);
  }());
}

TEST_CASE("redis: a host name (localhost) is resolved off the loop and connected to by address") {
  RedisOptions options = shared_server();
  options.host = "localhost";
  keygate::test::run_coro([options]() -> asio::awaitable<void> {
    RedisClient client(co_await asio::this_coro::executor, options);
    client.start();
    REQUIRE(co_await client.wait_connected(3s));
    check_status(co_await call(client, "PING"), "PONG");
  }());
}

TEST_CASE("redis: a name that does not resolve fails each attempt, and the client stops at once") {
  const auto started = Clock::now();
  keygate::test::run_coro([]() -> asio::awaitable<void> {
    RedisOptions options;
    options.host = "kg-no-such-host.invalid";
    options.connect_timeout = 300ms;
    RedisClient client(co_await asio::this_coro::executor, options);
    client.start();
    CHECK_FALSE(co_await client.wait_connected(500ms));
    const auto sent = Clock::now();
    const RedisResult result = co_await call(client, "GET", "anything");
    CHECK(result.errc == RedisErrc::disconnected);
    CHECK(Clock::now() - sent < 50ms);
  }());
  // Destroying the client ended its loop (and any wait for the name) without waiting it out.
  CHECK(Clock::now() - started < 2s);
}

TEST_CASE("redis: a client and a subscriber are safe to destroy after their io_context shut down") {
  RedisOptions options = shared_server();
  options.command_timeout = 20s;
  auto io = std::make_unique<ShutdownContext>();
  auto client = std::make_unique<RedisClient>(io->get_executor(), options);
  auto subscriber = std::make_unique<RedisSubscriber>(
      io->get_executor(), options, std::vector<std::string>{unique_key("channel")},
      [](std::string_view, std::string_view) {}, [] {});
  client->start();
  subscriber->start();
  const auto deadline = Clock::now() + 5s;
  while (!(client->connected() && subscriber->connected()) && Clock::now() < deadline) {
    io->run_for(10ms);
  }
  REQUIRE(client->connected());
  REQUIRE(subscriber->connected());
  // A command the server holds for 10 s: its coroutine is suspended when the context shuts down.
  const auto blocked = start_command(io->get_executor(), *client, {"BLPOP", unique_key("list"), "10"});
  io->run_for(50ms);
  io->stop();
  io->shutdown();  // destroys the suspended command and the reconnect loops
  CHECK_FALSE(blocked->result.has_value());
  client.reset();
  subscriber.reset();
}
