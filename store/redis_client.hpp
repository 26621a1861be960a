#pragma once
// keygate's Redis client: hiredis 0.14's async API driven by an Asio executor, as awaitables.
//
// One RedisClient per worker thread (per io_context run by ONE thread), used only from that
// executor. Every wait is bounded, failures are values (RedisResult), nothing blocks (a host
// name is resolved off the loop, store/host_resolution.hpp), and a command never waits for a
// connection: while disconnected it fails at once and a background loop reconnects with backoff.
//
// Safe to destroy after its io_context has stopped, also once that context's pending handlers
// (suspended commands among them) have been destroyed.
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

#include "store/redis_options.hpp"  // RedisOptions, parse_redis_url
#include "store/redis_reply.hpp"

namespace keygate::store {

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

// What RedisClient and RedisSubscriber share: one supervised connection, its life and state.
class SupervisedRedis {
 public:
  // Connects in the background and reconnects for ever (backoff 50 ms doubling to 2 s, with
  // jitter). Each attempt resolves the host anew (at most connect_timeout), then tries its
  // addresses in turn (each at most connect_timeout). Call once.
  void start();
  // Closes the connection and stops reconnecting; in-flight commands complete with
  // `disconnected`, later ones fail at once, and no subscriber handler is called after it.
  void stop();
  // Connected (and, for a subscriber, subscribed to every channel). The one call that is
  // safe from any thread (readiness probes).
  bool connected() const;
  // Waits until connected (true) or `limit` passes (false). For startup and tests; the request
  // path never waits for a connection.
  boost::asio::awaitable<bool> wait_connected(std::chrono::milliseconds limit);

  SupervisedRedis(const SupervisedRedis&) = delete;
  SupervisedRedis& operator=(const SupervisedRedis&) = delete;

 protected:
  explicit SupervisedRedis(std::shared_ptr<RedisConnector> connector);
  ~SupervisedRedis();  // stop()

  std::shared_ptr<RedisConnector> connector_;
};
}  // namespace detail

class RedisClient : public detail::SupervisedRedis {
 public:
  RedisClient(boost::asio::any_io_executor executor, RedisOptions options);

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
};

// A separate connection in subscribe mode. For each message, on_message(channel, payload) is
// posted to the executor. After every (re)connect, once all channels are subscribed again,
// on_reconnect() is called so the owner can drop what it may have missed while disconnected.
class RedisSubscriber : public detail::SupervisedRedis {
 public:
  using MessageHandler = std::function<void(std::string_view channel, std::string_view payload)>;
  using ReconnectHandler = std::function<void()>;

  RedisSubscriber(boost::asio::any_io_executor executor, RedisOptions options,
                  std::vector<std::string> channels, MessageHandler on_message,
                  ReconnectHandler on_reconnect);
};

}  // namespace keygate::store
