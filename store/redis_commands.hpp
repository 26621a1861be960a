#pragma once
// What keygate's Redis users need (RedisKeyCache, RedisRateCounter, the composition root),
// whether Redis is one server (RedisClient, store/redis_client.hpp) or a cluster
// (RedisClusterClient, store/redis_cluster.hpp). One instance per worker thread, used only from
// that worker's executor (connected() excepted). Every call is bounded and never throws for a
// Redis failure: failures are RedisResult values.
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <span>
#include <string>
#include <string_view>

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

class RedisCommands {
 public:
  virtual ~RedisCommands() = default;

  // Connects in the background and reconnects for ever. Call once.
  virtual void start() = 0;
  // Closes the connections; in-flight commands complete with `disconnected`, later ones fail
  // at once.
  virtual void stop() = 0;
  // Commands can be sent (for a cluster: to at least one master). Safe from any thread.
  virtual bool connected() const = 0;
  // Waits until connected (true) or `limit` passes (false). For startup and tests; the
  // request path never waits for a connection.
  virtual boost::asio::awaitable<bool> wait_connected(std::chrono::milliseconds limit) = 0;

  // One command (argv form, binary-safe), its reply awaited at most command_timeout. Fails at
  // once with `disconnected` while there is no connection for it. `argv` must live until the
  // call completes (a cluster sends it again after a MOVED or ASK redirection).
  virtual boost::asio::awaitable<RedisResult> command(std::span<const std::string_view> argv) = 0;
  // EVALSHA; on NOSCRIPT falls back to EVAL, which runs the script and caches it again.
  // `script` must outlive the call.
  virtual boost::asio::awaitable<RedisResult> eval_script(const RedisScript& script,
                                                          std::span<const std::string_view> keys,
                                                          std::span<const std::string_view> args) = 0;
};

}  // namespace keygate::store
