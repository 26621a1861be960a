#pragma once
// A Redis Cluster client with RedisClient's interface (store/redis_commands.hpp).
//
// It reads the slot map (CLUSTER SLOTS) from one node, keeps one supervised connection
// (store/redis_connector.hpp) per master, and sends each command to the master of its key's
// slot (the first key; EVALSHA's KEYS[1]; keyless commands to any master). Redirections:
// - MOVED slot host:port: the map is out of date. The slot is given to that node at once, a
//   refresh of the whole map is scheduled, and the command is sent there once more.
// - ASK slot host:port: the slot is being migrated and this key has left already. ASKING and
//   the command go to that node, pipelined on its connection; the map is not changed.
// The map is read again every refresh_interval, soon after a master's connection drops or a
// slot has no master, and then with a bounded backoff (100 ms doubling to 1 s) until every
// slot has a connected master again (a failover: the replica promoted appears in the map).
// The map is read from a connected master, or else from each seed and each node the last
// map named in turn, over a connection of its own.
//
// Bounded and never blocking as RedisClient: a command, its redirections and EVAL after
// NOSCRIPT together take at most command_timeout; a command whose slot's master is not
// connected fails at once with `disconnected`. The one wait for a connection: a redirection
// to a node the client had no connection to (a promoted replica, a new master) opens one and
// waits for it within what is left of command_timeout.
//
// One per worker thread, used from its executor only (connected() excepted). Safe to destroy
// after its io_context has stopped, as RedisClient.
#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <vector>

#include "store/redis_commands.hpp"
#include "store/redis_options.hpp"

namespace keygate::store {

struct RedisClusterOptions {
  std::vector<RedisEndpoint> seeds;  // at least one
  // Credentials and timeouts for every node (host, port and database are not used: a cluster
  // has database 0 only).
  RedisOptions node;
  // The slot map is read again this often while every slot has a connected master.
  std::chrono::milliseconds refresh_interval{10000};
};

namespace detail {
class ClusterRouter;  // redis_cluster.cpp
}

class RedisClusterClient final : public RedisCommands {
 public:
  RedisClusterClient(boost::asio::any_io_executor executor, RedisClusterOptions options);
  ~RedisClusterClient() override;  // stop()
  RedisClusterClient(const RedisClusterClient&) = delete;
  RedisClusterClient& operator=(const RedisClusterClient&) = delete;

  void start() override;
  void stop() override;
  // At least one master is connected (commands to its slots can succeed).
  bool connected() const override;
  // Waits until every slot has a connected master, or `limit` passes (false).
  boost::asio::awaitable<bool> wait_connected(std::chrono::milliseconds limit) override;

  boost::asio::awaitable<RedisResult> command(std::span<const std::string_view> argv) override;
  // All keys must be in one slot (a {hash tag}); otherwise a CROSSSLOT error reply, unsent.
  boost::asio::awaitable<RedisResult> eval_script(const RedisScript& script,
                                                  std::span<const std::string_view> keys,
                                                  std::span<const std::string_view> args) override;

  // The masters of the current slot map, and how many of them are connected (executor only;
  // for tests and logs).
  std::size_t master_count() const;
  std::size_t connected_masters() const;

 private:
  std::shared_ptr<detail::ClusterRouter> router_;
};

}  // namespace keygate::store
