#pragma once
// keygate's Redis client: hiredis 0.14's async API driven by an Asio executor, as awaitables.
//
// One RedisClient per worker thread (per io_context run by ONE thread), used only from that
// executor. Every wait is bounded, failures are values (RedisResult), nothing blocks, and a
// command never waits for a connection: while disconnected it fails at once and a background
// loop reconnects with backoff.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "store/redis_reply.hpp"

namespace keygate::store {

struct RedisOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 6379;
  std::string username;  // Redis 6 ACL user; empty: `AUTH password` only
  std::string password;  // empty: no AUTH
  int database = 0;      // non-zero: SELECT after connect
  std::chrono::milliseconds connect_timeout{1000};  // TCP connect + AUTH/SELECT
  std::chrono::milliseconds command_timeout{250};
};

// redis://[[user]:password@]host[:port][/db] (host may be [IPv6]) -> options (timeouts keep
// their defaults). A bad URL gives nullopt and, in *error, a one-line reason that never
// repeats the password.
std::optional<RedisOptions> parse_redis_url(std::string_view url, std::string* error);

// A Lua script run with EVALSHA; its SHA-1 is computed locally when it is constructed.
class RedisScript {
 public:
  explicit RedisScript(std::string lua);
  const std::string& source() const { return source_; }
  std::string_view sha1() const { return sha1_; }  // 40 lower-case hex digits

 private:
  std::string source_;
  std::string sha1_;
};

namespace detail {
class RedisConnector;  // one supervised hiredis connection (redis_client.cpp)
}

class RedisClient {
 public:
  RedisClient(boost::asio::any_io_executor executor, RedisOptions options);
  ~RedisClient();  // stop(): in-flight commands complete with `disconnected`
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  // Connects in the background and reconnects for ever (backoff 50 ms doubling to 2 s, with
  // jitter). Call once.
  void start();
  // Closes the connection and stops reconnecting; in-flight commands complete with
  // `disconnected`. Later commands fail at once.
  void stop();
  bool connected() const;  // the one call that is safe from any thread (readiness probes)
  // Waits until connected (true) or `limit` passes (false). For startup and tests; the request
  // path never waits for a connection.
  boost::asio::awaitable<bool> wait_connected(std::chrono::milliseconds limit);

  // Sends one command (argv form, binary-safe) and waits at most command_timeout for its reply.
  // Fails at once with `disconnected` while there is no connection. Concurrent calls pipeline
  // on the one connection. `argv` need only live until this returns its awaitable's first
  // suspension; the bytes are copied into hiredis' output buffer before any wait.
  boost::asio::awaitable<RedisResult> command(std::span<const std::string_view> argv);

  // EVALSHA; on NOSCRIPT (after a reconnect to a fresh server or SCRIPT FLUSH) falls back to
  // EVAL, which runs the script and caches it again. `script` must outlive the call.
  boost::asio::awaitable<RedisResult> eval_script(const RedisScript& script,
                                                  std::span<const std::string_view> keys,
                                                  std::span<const std::string_view> args);

 private:
  std::shared_ptr<detail::RedisConnector> connector_;
};

// A separate connection in subscribe mode. For each message, on_message(channel, payload) is
// posted to the executor. After every (re)connect, once all channels are subscribed again,
// on_reconnect() is called so the owner can drop what it may have missed while disconnected.
class RedisSubscriber {
 public:
  using MessageHandler = std::function<void(std::string_view channel, std::string_view payload)>;
  using ReconnectHandler = std::function<void()>;

  RedisSubscriber(boost::asio::any_io_executor executor, RedisOptions options,
                  std::vector<std::string> channels, MessageHandler on_message,
                  ReconnectHandler on_reconnect);
  ~RedisSubscriber();  // stop()
  RedisSubscriber(const RedisSubscriber&) = delete;
  RedisSubscriber& operator=(const RedisSubscriber&) = delete;

  void start();  // call once
  void stop();   // no handler is called after stop() returns
  bool connected() const;  // connected and subscribed to every channel
  boost::asio::awaitable<bool> wait_connected(std::chrono::milliseconds limit);

 private:
  std::shared_ptr<detail::RedisConnector> connector_;
};

}  // namespace keygate::store
