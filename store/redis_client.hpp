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

#include "store/redis_commands.hpp"  // RedisCommands, RedisScript
#include "store/redis_options.hpp"   // RedisOptions, parse_redis_url
#include "store/redis_reply.hpp"

namespace keygate::store {

namespace detail {
class RedisConnector;  // one supervised hiredis connection (store/redis_connector.hpp)

// RedisSubscriber's base: one supervised connection, its life and state.
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

// One Redis server.
class RedisClient final : public RedisCommands {
 public:
  RedisClient(boost::asio::any_io_executor executor, RedisOptions options);
  ~RedisClient() override;  // stop()
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  // Connects in the background and reconnects for ever (backoff 50 ms doubling to 2 s, with
  // jitter). Each attempt resolves the host anew (at most connect_timeout), then tries its
  // addresses in turn (each at most connect_timeout).
  void start() override;
  void stop() override;
  bool connected() const override;
  boost::asio::awaitable<bool> wait_connected(std::chrono::milliseconds limit) override;

  // Concurrent calls pipeline on the one connection; the bytes are copied into hiredis'
  // output buffer before any wait.
  boost::asio::awaitable<RedisResult> command(std::span<const std::string_view> argv) override;
  boost::asio::awaitable<RedisResult> eval_script(const RedisScript& script,
                                                  std::span<const std::string_view> keys,
                                                  std::span<const std::string_view> args) override;

 private:
  std::shared_ptr<detail::RedisConnector> connector_;
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
  // Subscribed on one of `nodes` at a time (options.host and port unused): a Redis Cluster's
  // seeds, as a cluster sends every PUBLISH to every node. When that node's connection is
  // lost it moves on to the next that answers.
  RedisSubscriber(boost::asio::any_io_executor executor, RedisOptions options,
                  std::vector<RedisEndpoint> nodes, std::vector<std::string> channels,
                  MessageHandler on_message, ReconnectHandler on_reconnect);
  // The node subscribed on (or last tried). From the executor only.
  const RedisEndpoint& node() const;
};

}  // namespace keygate::store
