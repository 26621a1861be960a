// RedisClient and RedisSubscriber: a supervised hiredis connection (store/redis_link.hpp) that
// resolves the host off the event loop, connects to each address in turn, reconnects with
// backoff, and bounds every command by a timer.
#include "store/redis_client.hpp"

#include <openssl/evp.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/container/small_vector.hpp>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <random>
#include <stdexcept>

#include "core/hex.hpp"
#include "core/log.hpp"
#include "store/host_resolution.hpp"
#include "store/metrics.hpp"
#include "store/redis_link.hpp"

namespace keygate::store {

namespace asio = boost::asio;
using namespace boost::asio::experimental::awaitable_operators;
using SteadyClock = std::chrono::steady_clock;
using std::chrono::milliseconds;

RedisScript::RedisScript(std::string lua) : source_(std::move(lua)) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(source_.data(), source_.size(), digest, &length, EVP_sha1(), nullptr) != 1) {
    throw std::runtime_error("SHA-1 is not available from OpenSSL");
  }
  sha1_ = core::to_hex(std::span<const std::uint8_t>(digest, length));
}

namespace detail {

namespace {

// `address`: the one connected to, when the host is a name.
void log_line(const RedisOptions& options, std::string_view what, std::string_view address = {}) {
  const std::string redis = options.host + ":" + std::to_string(options.port);
  const std::string msg = "redis: " + std::string(what);
  if (address.empty() || address == options.host) {
    core::log("info", msg, {{"redis", redis}});
  } else {
    core::log("info", msg, {{"redis", redis}, {"address", address}});
  }
}

}  // namespace

// A supervised connection: connects, reconnects with backoff, serves commands or messages.
class RedisConnector : public std::enable_shared_from_this<RedisConnector>,
                       private RedisLinkObserver {
 public:
  RedisConnector(asio::any_io_executor executor, RedisOptions options,
                 std::vector<std::string> channels, RedisSubscriber::MessageHandler on_message,
                 RedisSubscriber::ReconnectHandler on_reconnect)
      : executor_(std::move(executor)),
        options_(std::move(options)),
        channels_(std::move(channels)),
        on_message_(std::move(on_message)),
        on_reconnect_(std::move(on_reconnect)),
        wake_(executor_),
        jitter_(std::random_device{}()) {
    std::sort(channels_.begin(), channels_.end());
    channels_.erase(std::unique(channels_.begin(), channels_.end()), channels_.end());
  }

  ~RedisConnector() {
    if (link_) {
      link_->detach();
      link_->close();
    }
  }
  RedisConnector(const RedisConnector&) = delete;
  RedisConnector& operator=(const RedisConnector&) = delete;

  void start() {
    if (started_ || stopped_) return;
    started_ = true;
    asio::co_spawn(executor_, supervise(shared_from_this()), asio::detached);
  }

  void stop() {
    if (stopped_) return;
    stopped_ = true;
    connected_.store(false, std::memory_order_relaxed);
    if (link_) {
      const auto link = std::move(link_);
      link->detach();
      link->close();
    }
    wake_.cancel();  // also ends a wait for the host's resolution
    for (const auto& waiter : connect_waiters_) waiter->cancel();
  }

  // Safe from any thread (readiness probes run on the admin thread).
  bool connected() const { return connected_.load(std::memory_order_relaxed); }
  std::size_t channel_count() const { return channels_.size(); }

  static asio::awaitable<bool> wait_connected(std::shared_ptr<RedisConnector> self,
                                              milliseconds limit) {
    const auto deadline = SteadyClock::now() + limit;
    while (!self->connected() && !self->stopped_ && SteadyClock::now() < deadline) {
      auto timer = std::make_shared<asio::steady_timer>(self->executor_, deadline);
      self->connect_waiters_.push_back(timer);
      co_await timer->async_wait(asio::as_tuple(asio::use_awaitable));
      std::erase(self->connect_waiters_, timer);
    }
    co_return self->connected();
  }

  // After the co_await this touches only its own frame: the connector may be gone by then.
  asio::awaitable<RedisResult> command(std::span<const std::string_view> argv) {
    if (argv.empty()) throw std::invalid_argument("redis command without a name");
    if (!link_) co_return RedisResult{RedisErrc::disconnected, {}};
    RedisWaiter waiter(executor_);
    switch (link_->send(argv, waiter)) {
      case RedisLink::SendOutcome::sent: break;
      case RedisLink::SendOutcome::not_ready: co_return RedisResult{RedisErrc::disconnected, {}};
      case RedisLink::SendOutcome::overloaded: co_return RedisResult{RedisErrc::timeout, {}};
    }
    const auto started = SteadyClock::now();
    const auto weak_self = weak_from_this();
    waiter.wake.expires_at(started + options_.command_timeout);
    co_await waiter.wake.async_wait(asio::as_tuple(asio::use_awaitable));
    if (!waiter.done) {
      // Timed out: ~RedisWaiter withdraws it. If the connection has stopped answering
      // altogether, drop it so the next commands fail fast instead of each waiting.
      const auto self = weak_self.lock();
      if (self && !self->stopped_ && self->link_ == waiter.link &&
          waiter.link->stalled(SteadyClock::now(), self->stall_limit())) {
        log_line(self->options_, "no reply for too long; reconnecting");
        waiter.link->close();
      }
      co_return RedisResult{RedisErrc::timeout, {}};
    }
    const auto elapsed = SteadyClock::now() - started;
    metrics().redis_latency.observe_us(static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count()));
    co_return std::move(waiter.result);
  }

 private:
  static constexpr milliseconds first_backoff{50};
  static constexpr milliseconds max_backoff{2000};

  SteadyClock::duration stall_limit() const {
    return std::max<SteadyClock::duration>(2 * options_.connect_timeout,
                                           8 * options_.command_timeout);
  }

  milliseconds jittered(milliseconds backoff) {
    // Half fixed, half random: replicas that lost Redis together do not return in lockstep.
    std::uniform_int_distribution<long> spread(0, backoff.count() / 2);
    return milliseconds(backoff.count() - backoff.count() / 2 + spread(jitter_));
  }

  void on_link_state() override {
    refresh_connected();
    wake_.cancel();
  }

  void refresh_connected() {
    connected_.store(!stopped_ && link_ && link_->state() == RedisLink::State::ready,
                     std::memory_order_relaxed);
  }

  void on_link_message(std::string_view channel, std::string_view payload) override {
    if (!on_message_) return;
    asio::post(executor_, [weak = weak_from_this(), channel = std::string(channel),
                           payload = std::string(payload)] {
      const auto self = weak.lock();
      if (self && !self->stopped_) self->on_message_(channel, payload);
    });
  }

  // Waits on wake_ until `done()` holds, stop() is called or `deadline` passes.
  template <typename Predicate>
  asio::awaitable<void> wait_until(Predicate done, SteadyClock::time_point deadline) {
    while (!stopped_ && !done() && SteadyClock::now() < deadline) {
      wake_.expires_at(deadline);
      co_await wake_.async_wait(asio::as_tuple(asio::use_awaitable));
    }
  }

  // The host's addresses within connect_timeout (a literal at once); stop() ends the wait.
  asio::awaitable<ResolvedHost> resolve() {
    wake_.expires_at(SteadyClock::time_point::max());
    auto outcome = co_await (
        resolve_host(options_.host, SteadyClock::now() + options_.connect_timeout) ||
        wake_.async_wait(asio::as_tuple(asio::use_awaitable)));
    if (outcome.index() == 0) co_return std::move(std::get<0>(outcome));
    co_return ResolvedHost();  // stopped
  }

  // One connection to `address`, ready (AUTH, SELECT, SUBSCRIBE done) within connect_timeout;
  // else null and *error.
  asio::awaitable<std::shared_ptr<RedisLink>> connect_to(const std::string& address,
                                                        std::string& error) {
    auto link = RedisLink::open(executor_, address, options_, channels_, this, &error);
    if (!link) co_return nullptr;
    link_ = link;
    co_await wait_until(
        [&link] {
          return link->state() == RedisLink::State::ready ||
                 link->state() == RedisLink::State::dead;
        },
        SteadyClock::now() + options_.connect_timeout);
    if (!stopped_ && link->state() == RedisLink::State::ready) co_return link;
    error = link->state() == RedisLink::State::dead ? link->error() : "connect timed out";
    forget(link);
    co_return nullptr;
  }

  // Resolves the host, then tries each of its addresses in turn: the first ready link, or null
  // and *error (every address's reason, when the host is a name).
  asio::awaitable<std::shared_ptr<RedisLink>> connect_any(std::string& error) {
    const ResolvedHost resolved = co_await resolve();
    if (stopped_) co_return nullptr;
    if (!resolved.ok()) {
      error = resolved.error;
      co_return nullptr;
    }
    const bool named = !is_ip_literal(options_.host);
    for (const auto& address : resolved.addresses) {
      std::string reason;
      address_ = address.to_string();
      auto link = co_await connect_to(address_, reason);
      if (link || stopped_) co_return link;
      if (!error.empty()) error += "; ";
      error += named ? address_ + ": " + reason : reason;
    }
    co_return nullptr;
  }

  void forget(const std::shared_ptr<RedisLink>& link) {
    link->detach();
    link->close();
    if (link_ == link) link_.reset();
    refresh_connected();
  }

  asio::awaitable<void> supervise(std::shared_ptr<RedisConnector> self) {
    (void)self;  // keeps the connector alive while this loop runs
    milliseconds backoff = first_backoff;
    bool ever_connected = false;
    bool failure_logged = false;
    while (!stopped_) {
      std::string error;
      const auto link = co_await connect_any(error);
      if (stopped_) break;
      if (link) {
        if (ever_connected) metrics().redis_reconnects.fetch_add(1, std::memory_order_relaxed);
        ever_connected = true;
        failure_logged = false;
        backoff = first_backoff;
        log_line(options_, channels_.empty() ? "connected" : "connected and subscribed", address_);
        for (const auto& waiter : connect_waiters_) waiter->cancel();
        if (on_reconnect_) on_reconnect_();
        co_await wait_until([&link] { return link->state() != RedisLink::State::ready; },
                            SteadyClock::time_point::max());
        if (stopped_) break;
        log_line(options_, "connection lost: " + link->error(), address_);
        forget(link);
      } else if (!failure_logged && !error.empty()) {
        log_line(options_, "cannot connect (" + error + "); retrying");
        failure_logged = true;
      }
      co_await wait_until([] { return false; }, SteadyClock::now() + jittered(backoff));
      backoff = std::min(backoff * 2, max_backoff);
    }
  }

  asio::any_io_executor executor_;
  RedisOptions options_;
  std::vector<std::string> channels_;
  RedisSubscriber::MessageHandler on_message_;
  RedisSubscriber::ReconnectHandler on_reconnect_;
  std::shared_ptr<RedisLink> link_;  // the current connection, if any
  std::string address_;              // link_'s address (one of the host's)
  asio::steady_timer wake_;          // the supervisor's wait; cancelled on link events
  std::vector<std::shared_ptr<asio::steady_timer>> connect_waiters_;
  std::atomic<bool> connected_{false};  // link_ is ready; mirrored for other threads
  bool started_ = false;
  bool stopped_ = false;
  std::minstd_rand jitter_;
};

namespace {

asio::awaitable<RedisResult> eval_with(std::shared_ptr<RedisConnector> connector,
                                       const RedisScript& script,
                                       std::span<const std::string_view> keys,
                                       std::span<const std::string_view> args) {
  char key_count[24];
  const auto converted = std::to_chars(key_count, key_count + sizeof key_count, keys.size());
  boost::container::small_vector<std::string_view, 16> argv;
  argv.push_back("EVALSHA");
  argv.push_back(script.sha1());
  argv.push_back(std::string_view(key_count, converted.ptr));
  argv.insert(argv.end(), keys.begin(), keys.end());
  argv.insert(argv.end(), args.begin(), args.end());
  const std::span<const std::string_view> command(argv.data(), argv.size());
  RedisResult result = co_await connector->command(command);
  if (result.ok() && result.reply.is_error_code("NOSCRIPT")) {
    // The server lost its script cache (restart, SCRIPT FLUSH): EVAL runs it and caches it.
    argv[0] = "EVAL";
    argv[1] = script.source();
    result = co_await connector->command(command);
  }
  co_return result;
}

}  // namespace

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Public faces

namespace detail {

SupervisedRedis::SupervisedRedis(std::shared_ptr<RedisConnector> connector)
    : connector_(std::move(connector)) {}
SupervisedRedis::~SupervisedRedis() { connector_->stop(); }

void SupervisedRedis::start() { connector_->start(); }
void SupervisedRedis::stop() { connector_->stop(); }
bool SupervisedRedis::connected() const { return connector_->connected(); }

asio::awaitable<bool> SupervisedRedis::wait_connected(std::chrono::milliseconds limit) {
  return RedisConnector::wait_connected(connector_, limit);
}

}  // namespace detail

RedisClient::RedisClient(asio::any_io_executor executor, RedisOptions options)
    : SupervisedRedis(std::make_shared<detail::RedisConnector>(
          std::move(executor), std::move(options), std::vector<std::string>{},
          RedisSubscriber::MessageHandler{}, RedisSubscriber::ReconnectHandler{})) {}

asio::awaitable<RedisResult> RedisClient::command(std::span<const std::string_view> argv) {
  return connector_->command(argv);
}

asio::awaitable<RedisResult> RedisClient::eval_script(const RedisScript& script,
                                                      std::span<const std::string_view> keys,
                                                      std::span<const std::string_view> args) {
  return detail::eval_with(connector_, script, keys, args);
}

RedisSubscriber::RedisSubscriber(asio::any_io_executor executor, RedisOptions options,
                                 std::vector<std::string> channels, MessageHandler on_message,
                                 ReconnectHandler on_reconnect)
    : SupervisedRedis(std::make_shared<detail::RedisConnector>(
          std::move(executor), std::move(options), std::move(channels), std::move(on_message),
          std::move(on_reconnect))) {
  if (connector_->channel_count() == 0) {
    throw std::invalid_argument("RedisSubscriber needs at least one channel");
  }
}

}  // namespace keygate::store
