// RedisConnector: a supervised hiredis connection (store/redis_link.hpp) that resolves the
// host off the event loop, connects to each address in turn, reconnects with backoff, and
// bounds every command by a timer.
#include "store/redis_connector.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <optional>
#include <stdexcept>

#include "core/log.hpp"
#include "store/metrics.hpp"

namespace keygate::store::detail {

namespace asio = boost::asio;
using namespace boost::asio::experimental::awaitable_operators;
using SteadyClock = std::chrono::steady_clock;
using std::chrono::milliseconds;

RedisConnector::RedisConnector(asio::any_io_executor executor, RedisOptions options,
                               std::vector<RedisEndpoint> endpoints,
                               std::vector<std::string> channels, MessageHandler on_message,
                               EventHandler on_reconnect)
    : executor_(std::move(executor)),
      options_(std::move(options)),
      endpoints_(std::move(endpoints)),
      channels_(std::move(channels)),
      on_message_(std::move(on_message)),
      on_reconnect_(std::move(on_reconnect)),
      wake_(executor_),
      jitter_(std::random_device{}()) {
  if (endpoints_.empty()) endpoints_.push_back(RedisEndpoint{options_.host, options_.port});
  std::sort(channels_.begin(), channels_.end());
  channels_.erase(std::unique(channels_.begin(), channels_.end()), channels_.end());
}

RedisConnector::~RedisConnector() {
  if (link_) {
    link_->detach();
    link_->close();
  }
}

// `address`: the one connected to, when the host is a name.
void RedisConnector::log_line(std::string_view what, std::string_view address) const {
  const RedisEndpoint& at = endpoint();
  const std::string redis = at.to_string();
  const std::string msg = "redis: " + std::string(what);
  if (address.empty() || address == at.host) {
    core::log("info", msg, {{"redis", redis}});
  } else {
    core::log("info", msg, {{"redis", redis}, {"address", address}});
  }
}

void RedisConnector::start() {
  if (started_ || stopped_) return;
  started_ = true;
  asio::co_spawn(executor_, supervise(shared_from_this()), asio::detached);
}

void RedisConnector::stop() {
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

asio::awaitable<bool> RedisConnector::wait_connected(std::shared_ptr<RedisConnector> self,
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

asio::awaitable<RedisResult> RedisConnector::command(std::span<const std::string_view> argv) {
  return command(argv, SteadyClock::now() + options_.command_timeout, false);
}

asio::awaitable<RedisResult> RedisConnector::command(std::span<const std::string_view> argv,
                                                     SteadyClock::time_point deadline,
                                                     bool asking) {
  if (argv.empty()) throw std::invalid_argument("redis command without a name");
  if (!link_) co_return RedisResult{RedisErrc::disconnected, {}};
  std::optional<RedisWaiter> asking_waiter;  // its reply is not awaited: the command's comes after it
  if (asking) {
    const std::string_view asking_argv[] = {"ASKING"};
    asking_waiter.emplace(executor_);
    if (link_->send(asking_argv, *asking_waiter) != RedisLink::SendOutcome::sent) {
      co_return RedisResult{RedisErrc::disconnected, {}};
    }
  }
  RedisWaiter waiter(executor_);
  switch (link_->send(argv, waiter)) {
    case RedisLink::SendOutcome::sent: break;
    case RedisLink::SendOutcome::not_ready: co_return RedisResult{RedisErrc::disconnected, {}};
    case RedisLink::SendOutcome::overloaded: co_return RedisResult{RedisErrc::timeout, {}};
  }
  const auto started = SteadyClock::now();
  const auto weak_self = weak_from_this();
  waiter.wake.expires_at(deadline);
  co_await waiter.wake.async_wait(asio::as_tuple(asio::use_awaitable));
  if (!waiter.done) {
    // Timed out: ~RedisWaiter withdraws it. If the connection has stopped answering
    // altogether, drop it so the next commands fail fast instead of each waiting.
    const auto self = weak_self.lock();
    if (self && !self->stopped_ && self->link_ == waiter.link &&
        waiter.link->stalled(SteadyClock::now(), self->stall_limit())) {
      self->log_line("no reply for too long; reconnecting");
      waiter.link->close();
    }
    co_return RedisResult{RedisErrc::timeout, {}};
  }
  const auto elapsed = SteadyClock::now() - started;
  metrics().redis_latency.observe_us(static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count()));
  co_return std::move(waiter.result);
}

SteadyClock::duration RedisConnector::stall_limit() const {
  return std::max<SteadyClock::duration>(2 * options_.connect_timeout, 8 * options_.command_timeout);
}

milliseconds RedisConnector::jittered(milliseconds backoff) {
  // Half fixed, half random: replicas that lost Redis together do not return in lockstep.
  std::uniform_int_distribution<long> spread(0, backoff.count() / 2);
  return milliseconds(backoff.count() - backoff.count() / 2 + spread(jitter_));
}

void RedisConnector::on_link_state() {
  refresh_connected();
  wake_.cancel();
}

void RedisConnector::refresh_connected() {
  connected_.store(!stopped_ && link_ && link_->state() == RedisLink::State::ready,
                   std::memory_order_relaxed);
}

void RedisConnector::on_link_message(std::string_view channel, std::string_view payload) {
  if (!on_message_) return;
  asio::post(executor_, [weak = weak_from_this(), channel = std::string(channel),
                         payload = std::string(payload)] {
    const auto self = weak.lock();
    if (self && !self->stopped_) self->on_message_(channel, payload);
  });
}

// Waits on wake_ until `done()` holds, stop() is called or `deadline` passes.
template <typename Predicate>
asio::awaitable<void> RedisConnector::wait_until(Predicate done, SteadyClock::time_point deadline) {
  while (!stopped_ && !done() && SteadyClock::now() < deadline) {
    wake_.expires_at(deadline);
    co_await wake_.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

// The host's addresses within connect_timeout (a literal at once); stop() ends the wait.
asio::awaitable<ResolvedHost> RedisConnector::resolve(const std::string& host) {
  wake_.expires_at(SteadyClock::time_point::max());
  auto outcome = co_await (resolve_host(host, SteadyClock::now() + options_.connect_timeout) ||
                           wake_.async_wait(asio::as_tuple(asio::use_awaitable)));
  if (outcome.index() == 0) co_return std::move(std::get<0>(outcome));
  co_return ResolvedHost();  // stopped
}

// One connection to `address`, ready (AUTH, SELECT, SUBSCRIBE done) within connect_timeout;
// else null and *error.
asio::awaitable<std::shared_ptr<RedisLink>> RedisConnector::connect_to(const std::string& address,
                                                                      const RedisOptions& options,
                                                                      std::string& error) {
  auto link = RedisLink::open(executor_, address, options, channels_, this, &error);
  if (!link) co_return nullptr;
  link_ = link;
  co_await wait_until(
      [&link] {
        return link->state() == RedisLink::State::ready || link->state() == RedisLink::State::dead;
      },
      SteadyClock::now() + options_.connect_timeout);
  if (!stopped_ && link->state() == RedisLink::State::ready) co_return link;
  error = link->state() == RedisLink::State::dead ? link->error() : "connect timed out";
  forget(link);
  co_return nullptr;
}

// Each endpoint in turn from current_: resolves its host, then tries each address. The first
// ready link, or null and *error (every address's reason, when a host is a name or there are
// several endpoints).
asio::awaitable<std::shared_ptr<RedisLink>> RedisConnector::connect_any(std::string& error) {
  const std::size_t first = current_;
  for (std::size_t n = 0; n < endpoints_.size() && !stopped_; ++n) {
    current_ = (first + n) % endpoints_.size();
    RedisOptions options = options_;
    options.host = endpoints_[current_].host;
    options.port = endpoints_[current_].port;
    const ResolvedHost resolved = co_await resolve(options.host);
    if (stopped_) co_return nullptr;
    const bool several = endpoints_.size() > 1;
    if (!resolved.ok()) {
      if (!error.empty()) error += "; ";
      error += several ? endpoint().to_string() + ": " + resolved.error : resolved.error;
      continue;
    }
    const bool named = !is_ip_literal(options.host);
    for (const auto& address : resolved.addresses) {
      std::string reason;
      address_ = address.to_string();
      auto link = co_await connect_to(address_, options, reason);
      if (link || stopped_) co_return link;
      if (!error.empty()) error += "; ";
      if (several) error += endpoint().to_string() + ": ";
      error += named ? address_ + ": " + reason : reason;
    }
  }
  co_return nullptr;
}

void RedisConnector::forget(const std::shared_ptr<RedisLink>& link) {
  link->detach();
  link->close();
  if (link_ == link) link_.reset();
  refresh_connected();
}

asio::awaitable<void> RedisConnector::supervise(std::shared_ptr<RedisConnector> self) {
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
      log_line(channels_.empty() ? "connected" : "connected and subscribed", address_);
      for (const auto& waiter : connect_waiters_) waiter->cancel();
      if (on_reconnect_) on_reconnect_();
      if (on_change_) on_change_();
      co_await wait_until([&link] { return link->state() != RedisLink::State::ready; },
                          SteadyClock::time_point::max());
      if (stopped_) break;
      log_line("connection lost: " + link->error(), address_);
      forget(link);
      if (on_change_) on_change_();
      // With several endpoints, the next attempt starts at the next one: the lost node may be
      // gone for good.
      current_ = (current_ + 1) % endpoints_.size();
    } else if (!failure_logged && !error.empty()) {
      log_line("cannot connect (" + error + "); retrying");
      failure_logged = true;
    }
    co_await wait_until([] { return false; }, SteadyClock::now() + jittered(backoff));
    backoff = std::min(backoff * 2, max_backoff);
  }
}

}  // namespace keygate::store::detail
