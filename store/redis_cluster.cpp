// RedisClusterClient: routing by slot, MOVED and ASK, the slot map kept current (see the header).
#include "store/redis_cluster.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <atomic>
#include <optional>
#include <stdexcept>
#include <utility>

#include "core/log.hpp"
#include "store/metrics.hpp"
#include "store/redis_cluster_slots.hpp"
#include "store/redis_connector.hpp"
#include "store/redis_script_call.hpp"

namespace keygate::store {

namespace asio = boost::asio;
using SteadyClock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace detail {

class ClusterRouter : public std::enable_shared_from_this<ClusterRouter> {
 public:
  ClusterRouter(asio::any_io_executor executor, RedisClusterOptions options)
      : executor_(std::move(executor)), options_(std::move(options)), wake_(executor_), gap_(executor_) {
    if (options_.seeds.empty()) throw std::invalid_argument("a Redis Cluster needs at least one seed node");
  }

  void start() {
    if (started_ || stopped_) return;
    started_ = true;
    asio::co_spawn(executor_, refresh_loop(shared_from_this()), asio::detached);
  }

  void stop() {
    if (stopped_) return;
    stopped_ = true;
    for (const auto& connector : masters_) {
      if (connector) connector->stop();
    }
    for (const auto& connector : others_) connector->stop();
    if (probe_) probe_->stop();
    ready_masters_.store(0, std::memory_order_relaxed);
    wake_.cancel();
    gap_.cancel();
  }

  bool connected() const { return ready_masters_.load(std::memory_order_relaxed) > 0; }
  milliseconds command_timeout() const { return options_.node.command_timeout; }
  std::size_t master_count() const { return masters_.size(); }
  std::size_t connected_masters() const {
    return static_cast<std::size_t>(std::count_if(masters_.begin(), masters_.end(),
                                                  [](const auto& c) { return c && c->connected(); }));
  }

  // Every slot has a master and every master is connected.
  bool serving_every_slot() const {
    return map_.covered_slots() == cluster_slot_count && connected_masters() == masters_.size();
  }

  static asio::awaitable<bool> wait_connected(std::shared_ptr<ClusterRouter> self, milliseconds limit) {
    const auto deadline = SteadyClock::now() + limit;
    asio::steady_timer timer(self->executor_);
    while (!self->stopped_ && !self->serving_every_slot() && SteadyClock::now() < deadline) {
      timer.expires_after(milliseconds(10));
      co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    co_return !self->stopped_ && self->serving_every_slot();
  }

  // Sends argv to the master of `slot` (any master when none), following at most two
  // redirections, all before `deadline`. `self` keeps the router alive for the whole call.
  static asio::awaitable<RedisResult> execute(std::shared_ptr<ClusterRouter> self,
                                              std::span<const std::string_view> argv,
                                              std::optional<std::uint16_t> slot,
                                              SteadyClock::time_point deadline) {
    std::shared_ptr<RedisConnector> target = slot ? self->master_of(*slot) : self->any_master();
    bool asking = false;
    RedisResult result{RedisErrc::disconnected, {}};
    for (int attempt = 0; attempt < 3; ++attempt) {
      if (!target || self->stopped_) co_return RedisResult{RedisErrc::disconnected, {}};
      result = co_await target->command(argv, deadline, asking);
      if (!result.ok() || result.reply.kind != RedisReply::Kind::error) co_return result;
      const std::optional<RedisRedirect> redirect = parse_redirect(result.reply, target->endpoint().host);
      if (!redirect) co_return result;
      bool opened = false;
      if (redirect->kind == RedisRedirect::Kind::moved) {
        metrics().redis_cluster_moved.fetch_add(1, std::memory_order_relaxed);
        target = self->moved(*redirect, opened);
        asking = false;
      } else {
        metrics().redis_cluster_ask.fetch_add(1, std::memory_order_relaxed);
        target = self->connector_for(redirect->target, opened);
        asking = true;
      }
      // A node the cluster has just named (a replica promoted, a new master) gets its first
      // connection now: that wait, and only that one, is allowed, within the deadline. A
      // known node that is down still fails at once.
      if (target && opened && !target->connected()) {
        const auto left = std::chrono::duration_cast<milliseconds>(deadline - SteadyClock::now());
        if (left.count() <= 0) co_return RedisResult{RedisErrc::timeout, {}};
        co_await RedisConnector::wait_connected(target, left);
      }
    }
    co_return result;  // still redirected after two hops: the last redirection, as an error reply
  }

  static asio::awaitable<RedisResult> eval(std::shared_ptr<ClusterRouter> self, const RedisScript& script,
                                           std::span<const std::string_view> keys,
                                           std::span<const std::string_view> args) {
    const auto deadline = SteadyClock::now() + self->options_.node.command_timeout;
    std::optional<std::uint16_t> slot;
    if (!keys.empty()) {
      slot = key_slot(keys[0]);
      for (const std::string_view key : keys.subspan(1)) {
        if (key_slot(key) != *slot) {
          RedisResult refused{RedisErrc::ok, {}};
          refused.reply.kind = RedisReply::Kind::error;
          refused.reply.str = "CROSSSLOT the script's keys are in different slots (not sent by keygate)";
          co_return refused;
        }
      }
    }
    ScriptCall call(script, keys, args);
    RedisResult result = co_await execute(self, call.argv(), slot, deadline);
    if (result.ok() && result.reply.is_error_code("NOSCRIPT")) {
      // Each node has its own script cache: this one has not seen the script yet (or lost it).
      call.send_source();
      result = co_await execute(self, call.argv(), slot, deadline);
    }
    co_return result;
  }

 private:
  static constexpr milliseconds min_refresh_gap{100};
  static constexpr milliseconds max_refresh_backoff{1000};
  static constexpr std::size_t max_other_nodes = 16;

  std::shared_ptr<RedisConnector> master_of(std::uint16_t slot) {
    const std::uint16_t index = map_.owner(slot);
    if (index == RedisSlotMap::no_master || index >= masters_.size()) {
      request_refresh();
      return nullptr;
    }
    return masters_[index];
  }

  // Keyless commands: a connected master, in turn.
  std::shared_ptr<RedisConnector> any_master() {
    for (std::size_t n = 0; n < masters_.size(); ++n) {
      const auto& connector = masters_[(next_any_ + n) % masters_.size()];
      if (connector && connector->connected()) {
        next_any_ = (next_any_ + n + 1) % masters_.size();
        return connector;
      }
    }
    return masters_.empty() ? nullptr : masters_.front();
  }

  std::shared_ptr<RedisConnector> make_connector(const RedisEndpoint& endpoint) {
    RedisOptions node = options_.node;
    node.host = endpoint.host;
    node.port = endpoint.port;
    node.database = 0;
    auto connector = std::make_shared<RedisConnector>(
        executor_, std::move(node), std::vector<RedisEndpoint>{endpoint}, std::vector<std::string>{},
        RedisConnector::MessageHandler{}, RedisConnector::EventHandler{});
    connector->on_change([weak = weak_from_this()] {
      if (const auto self = weak.lock()) self->on_node_change();
    });
    if (!stopped_) connector->start();
    return connector;
  }

  // The connection to `endpoint`: a master's, one kept for ASK targets, or a new one, still
  // connecting (`opened` set).
  std::shared_ptr<RedisConnector> connector_for(const RedisEndpoint& endpoint, bool& opened) {
    const auto& masters = map_.masters();
    for (std::size_t i = 0; i < masters.size() && i < masters_.size(); ++i) {
      if (masters[i] == endpoint) return masters_[i];
    }
    for (const auto& connector : others_) {
      if (connector->endpoint() == endpoint) return connector;
    }
    if (stopped_ || others_.size() >= max_other_nodes) return nullptr;
    others_.push_back(make_connector(endpoint));
    opened = true;
    return others_.back();
  }

  std::shared_ptr<RedisConnector> moved(const RedisRedirect& redirect, bool& opened) {
    std::shared_ptr<RedisConnector> connector = connector_for(redirect.target, opened);
    const std::uint16_t index = map_.assign(redirect.slot, redirect.target);
    if (index == RedisSlotMap::no_master) return nullptr;
    if (index >= masters_.size()) {
      masters_.resize(index + 1);
      std::erase(others_, connector);
    }
    masters_[index] = connector;
    request_refresh();
    return connector;
  }

  void on_node_change() {
    const std::size_t ready = connected_masters();
    ready_masters_.store(stopped_ ? 0 : static_cast<int>(ready), std::memory_order_relaxed);
    if (ready < masters_.size()) request_refresh();
  }

  void request_refresh() {
    if (refresh_requested_) return;
    refresh_requested_ = true;
    wake_.cancel();
  }

  // The new map: connections kept for masters it still names, opened for new ones, closed
  // for the rest.
  void apply(RedisSlotMap map) {
    std::vector<std::shared_ptr<RedisConnector>> next(map.masters().size());
    for (std::size_t i = 0; i < next.size(); ++i) {
      const RedisEndpoint& endpoint = map.masters()[i];
      for (auto& old : masters_) {
        if (old && old->endpoint() == endpoint) next[i] = std::exchange(old, nullptr);
      }
      for (auto& old : others_) {
        if (old && old->endpoint() == endpoint) next[i] = std::exchange(old, nullptr);
      }
      if (!next[i]) next[i] = make_connector(endpoint);
    }
    for (const auto& old : masters_) {
      if (old) old->stop();
    }
    for (const auto& old : others_) {
      if (old) old->stop();
    }
    others_.clear();
    const bool changed = map.masters() != map_.masters() || map.covered_slots() != map_.covered_slots();
    masters_ = std::move(next);
    map_ = std::move(map);
    if (changed) {
      std::string masters;
      for (const auto& endpoint : map_.masters()) masters += (masters.empty() ? "" : ",") + endpoint.to_string();
      core::log("info", "redis cluster: slot map",
                {{"masters", masters}, {"slots_served", map_.covered_slots()}});
    }
    on_node_change();
  }

  // CLUSTER SLOTS through `connector`, applied when it is a valid map.
  asio::awaitable<bool> read_map_from(std::shared_ptr<RedisConnector> connector) {
    const std::string_view argv[] = {"CLUSTER", "SLOTS"};
    const std::string host = connector->endpoint().host;
    const RedisResult result =
        co_await connector->command(argv, SteadyClock::now() + options_.node.command_timeout);
    if (stopped_ || !result.ok()) co_return false;
    std::string error;
    std::optional<RedisSlotMap> map = parse_cluster_slots(result.reply, host, &error);
    if (!map) {
      if (error != last_error_) core::log("info", "redis cluster: " + error, {{"redis", connector->endpoint().to_string()}});
      last_error_ = error;
      co_return false;
    }
    last_error_.clear();
    metrics().redis_cluster_slot_refreshes.fetch_add(1, std::memory_order_relaxed);
    apply(std::move(*map));
    co_return true;
  }

  // From a connected master; else from each seed and node of the last map, over a probe
  // connection of its own (each try bounded by connect_timeout + command_timeout).
  asio::awaitable<bool> refresh_once() {
    const std::vector<std::shared_ptr<RedisConnector>> masters = masters_;
    for (const auto& connector : masters) {
      if (stopped_) co_return false;
      if (!connector || !connector->connected()) continue;
      const bool read = co_await read_map_from(connector);
      if (read) co_return true;
    }
    std::vector<RedisEndpoint> candidates = options_.seeds;
    const auto add_candidates = [&candidates](const std::vector<RedisEndpoint>& endpoints) {
      for (const auto& endpoint : endpoints) {
        if (std::find(candidates.begin(), candidates.end(), endpoint) == candidates.end()) {
          candidates.push_back(endpoint);
        }
      }
    };
    add_candidates(map_.masters());
    add_candidates(map_.replicas());
    for (std::size_t n = 0; n < candidates.size() && !stopped_; ++n) {
      const RedisEndpoint& endpoint = candidates[(next_probe_ + n) % candidates.size()];
      RedisOptions node = options_.node;
      node.database = 0;
      probe_ = std::make_shared<RedisConnector>(
          executor_, std::move(node), std::vector<RedisEndpoint>{endpoint}, std::vector<std::string>{},
          RedisConnector::MessageHandler{}, RedisConnector::EventHandler{});
      const auto probe = probe_;
      probe->start();
      const bool up = co_await RedisConnector::wait_connected(probe, options_.node.connect_timeout);
      bool read = false;
      if (up && !stopped_) read = co_await read_map_from(probe);
      probe->stop();
      if (read) {
        next_probe_ = (next_probe_ + n) % candidates.size();
        co_return true;
      }
    }
    if (!stopped_ && !logged_unreachable_) {
      core::log("info", "redis cluster: no node answered CLUSTER SLOTS; retrying",
                {{"nodes", candidates.size()}});
      logged_unreachable_ = true;
    }
    co_return false;
  }

  // On `timer` (gap_ is not woken by refresh requests, wake_ is); stop() cancels both.
  asio::awaitable<void> pause(asio::steady_timer& timer, milliseconds duration) {
    if (&timer == &wake_ && refresh_requested_) co_return;
    timer.expires_after(duration);
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
  }

  asio::awaitable<void> refresh_loop(std::shared_ptr<ClusterRouter> self) {
    (void)self;  // keeps the router alive while this loop runs
    milliseconds backoff = min_refresh_gap;
    while (!stopped_) {
      refresh_requested_ = false;
      const bool read = co_await refresh_once();
      if (stopped_) break;
      if (read) logged_unreachable_ = false;
      const bool healthy = read && serving_every_slot();
      // Never sooner than min_refresh_gap (a burst of MOVED is one refresh), then until the
      // interval (or the backoff, while degraded) passes or a refresh is asked for.
      co_await pause(gap_, min_refresh_gap);
      if (stopped_) break;
      const milliseconds wait = healthy ? options_.refresh_interval : backoff;
      co_await pause(wake_, wait - min_refresh_gap);
      backoff = healthy ? min_refresh_gap : std::min(backoff * 2, max_refresh_backoff);
    }
  }

  asio::any_io_executor executor_;
  RedisClusterOptions options_;
  RedisSlotMap map_;
  std::vector<std::shared_ptr<RedisConnector>> masters_;  // map_.masters()' connections
  std::vector<std::shared_ptr<RedisConnector>> others_;   // ASK targets that are no masters (yet)
  std::shared_ptr<RedisConnector> probe_;                 // reads the map when no master does
  asio::steady_timer wake_;  // the refresh loop's wait; cancelled by refresh requests
  asio::steady_timer gap_;   // the least time between two refreshes
  std::atomic<int> ready_masters_{0};  // connected masters; mirrored for other threads
  std::size_t next_any_ = 0;
  std::size_t next_probe_ = 0;
  std::string last_error_;
  bool refresh_requested_ = false;
  bool logged_unreachable_ = false;
  bool started_ = false;
  bool stopped_ = false;
};

}  // namespace detail

RedisClusterClient::RedisClusterClient(asio::any_io_executor executor, RedisClusterOptions options)
    : router_(std::make_shared<detail::ClusterRouter>(std::move(executor), std::move(options))) {}
RedisClusterClient::~RedisClusterClient() { router_->stop(); }

void RedisClusterClient::start() { router_->start(); }
void RedisClusterClient::stop() { router_->stop(); }
bool RedisClusterClient::connected() const { return router_->connected(); }
std::size_t RedisClusterClient::master_count() const { return router_->master_count(); }
std::size_t RedisClusterClient::connected_masters() const { return router_->connected_masters(); }

asio::awaitable<bool> RedisClusterClient::wait_connected(std::chrono::milliseconds limit) {
  return detail::ClusterRouter::wait_connected(router_, limit);
}

asio::awaitable<RedisResult> RedisClusterClient::command(std::span<const std::string_view> argv) {
  if (argv.empty()) throw std::invalid_argument("redis command without a name");
  std::optional<std::uint16_t> slot;
  if (const auto key = routing_key(argv)) slot = key_slot(*key);
  return detail::ClusterRouter::execute(router_, argv, slot,
                                        SteadyClock::now() + router_->command_timeout());
}

asio::awaitable<RedisResult> RedisClusterClient::eval_script(const RedisScript& script,
                                                             std::span<const std::string_view> keys,
                                                             std::span<const std::string_view> args) {
  return detail::ClusterRouter::eval(router_, script, keys, args);
}

}  // namespace keygate::store
