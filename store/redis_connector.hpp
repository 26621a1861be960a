#pragma once
// One supervised Redis connection: connects in the background, reconnects with backoff,
// bounds every command by a timer and fails it at once while there is no connection. The
// machinery under RedisClient, RedisSubscriber (store/redis_client.hpp) and each node of
// RedisClusterClient (store/redis_cluster.hpp); used only from its executor's one thread.
//
// It connects to one of its endpoints: the first that answers, trying them in turn from the
// one after the last it lost (a subscriber given a cluster's seeds thus moves to another node).
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "store/host_resolution.hpp"
#include "store/redis_link.hpp"
#include "store/redis_options.hpp"
#include "store/redis_reply.hpp"

namespace keygate::store::detail {

class RedisConnector : public std::enable_shared_from_this<RedisConnector>,
                       private RedisLinkObserver {
 public:
  using MessageHandler = std::function<void(std::string_view channel, std::string_view payload)>;
  using EventHandler = std::function<void()>;

  // `endpoints` empty: options.host and options.port. `channels` non-empty: a subscriber.
  RedisConnector(boost::asio::any_io_executor executor, RedisOptions options,
                 std::vector<RedisEndpoint> endpoints, std::vector<std::string> channels,
                 MessageHandler on_message, EventHandler on_reconnect);
  ~RedisConnector() override;
  RedisConnector(const RedisConnector&) = delete;
  RedisConnector& operator=(const RedisConnector&) = delete;

  void start();
  void stop();
  // Safe from any thread (readiness probes run on the admin thread).
  bool connected() const { return connected_.load(std::memory_order_relaxed); }
  std::size_t channel_count() const { return channels_.size(); }
  // The endpoint of the current (or last) connection.
  const RedisEndpoint& endpoint() const { return endpoints_[current_]; }
  // Called (on the executor, never from inside hiredis) after each connect and each loss.
  void on_change(EventHandler handler) { on_change_ = std::move(handler); }

  static boost::asio::awaitable<bool> wait_connected(std::shared_ptr<RedisConnector> self,
                                                     std::chrono::milliseconds limit);

  // One command, its reply awaited until `deadline` (default: command_timeout from now).
  // `asking`: ASKING is sent first on the same connection, pipelined (a cluster's ASK
  // redirection). After the co_await this touches only its own frame: the connector may be
  // gone by then.
  boost::asio::awaitable<RedisResult> command(std::span<const std::string_view> argv);
  boost::asio::awaitable<RedisResult> command(std::span<const std::string_view> argv,
                                              std::chrono::steady_clock::time_point deadline,
                                              bool asking = false);

 private:
  static constexpr std::chrono::milliseconds first_backoff{50};
  static constexpr std::chrono::milliseconds max_backoff{2000};

  std::chrono::steady_clock::duration stall_limit() const;
  std::chrono::milliseconds jittered(std::chrono::milliseconds backoff);
  void on_link_state() override;
  void on_link_message(std::string_view channel, std::string_view payload) override;
  void refresh_connected();
  template <typename Predicate>
  boost::asio::awaitable<void> wait_until(Predicate done, std::chrono::steady_clock::time_point deadline);
  boost::asio::awaitable<ResolvedHost> resolve(const std::string& host);
  boost::asio::awaitable<std::shared_ptr<RedisLink>> connect_to(const std::string& address,
                                                               const RedisOptions& options,
                                                               std::string& error);
  boost::asio::awaitable<std::shared_ptr<RedisLink>> connect_any(std::string& error);
  void forget(const std::shared_ptr<RedisLink>& link);
  boost::asio::awaitable<void> supervise(std::shared_ptr<RedisConnector> self);
  void log_line(std::string_view what, std::string_view address = {}) const;

  boost::asio::any_io_executor executor_;
  RedisOptions options_;
  std::vector<RedisEndpoint> endpoints_;  // at least one
  std::size_t current_ = 0;               // endpoints_ index of link_ (or of the last one)
  std::vector<std::string> channels_;
  MessageHandler on_message_;
  EventHandler on_reconnect_;
  EventHandler on_change_;
  std::shared_ptr<RedisLink> link_;  // the current connection, if any
  std::string address_;              // link_'s address (one of the host's)
  boost::asio::steady_timer wake_;   // the supervisor's wait; cancelled on link events
  std::vector<std::shared_ptr<boost::asio::steady_timer>> connect_waiters_;
  std::atomic<bool> connected_{false};  // link_ is ready; mirrored for other threads
  bool started_ = false;
  bool stopped_ = false;
  std::minstd_rand jitter_;
};

}  // namespace keygate::store::detail
