// hiredis 0.14 on Asio (the technique of ray-project/ray src/ray/gcs/asio.cc).
//
// hiredis does no I/O of its own: it calls addRead/delRead/addWrite/delWrite/cleanup hooks. We
// register its fd with Asio as a posix::stream_descriptor, arm async_wait while hiredis wants
// to read or write, and call redisAsyncHandleRead/Write on readiness. hiredis owns the fd: the
// cleanup hook cancels and releases the descriptor, never closes it.
//
// Facts of hiredis 0.14 this file relies on (async.c):
// - a reply is freed when its callback returns, so callbacks copy it;
// - when a context is freed (error, EOF, or redisAsyncFree) every pending callback is called
//   with a NULL reply, then the cleanup hook runs, then the context is gone;
// - a failed connect calls the connect callback with REDIS_ERR and then frees the context;
// - there is no command timeout: a steady_timer per command bounds the wait.
// Coroutines are never resumed from inside hiredis: a callback only stores the result and
// cancels the waiter's timer, whose completion Asio posts to the executor.
#include "store/redis_client.hpp"


#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/evp.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/container/small_vector.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <deque>
#include <random>
#include <stdexcept>

#include "core/hex.hpp"
#include "core/log.hpp"
#include "store/metrics.hpp"

namespace keygate::store {

namespace asio = boost::asio;
using SteadyClock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// ---------------------------------------------------------------------------------------------
// URL parsing

namespace {

bool is_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::optional<unsigned long> parse_number(std::string_view s, unsigned long max) {
  if (!is_digits(s) || s.size() > 10) return std::nullopt;
  unsigned long value = 0;
  std::from_chars(s.data(), s.data() + s.size(), value);
  if (value > max) return std::nullopt;
  return value;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<std::string> percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    const int high = hex_value(s[i + 1]);
    const int low = hex_value(s[i + 2]);
    if (high < 0 || low < 0) return std::nullopt;
    out.push_back(static_cast<char>(high * 16 + low));
    i += 2;
  }
  return out;
}

bool is_host_name(std::string_view host) {
  return !host.empty() && std::all_of(host.begin(), host.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
  });
}

bool is_ipv6_literal(std::string_view host) {
  return host.find(':') != std::string_view::npos &&
         std::all_of(host.begin(), host.end(), [](char c) {
           return std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.';
         });
}

bool starts_with_ignoring_case(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() &&
         std::equal(prefix.begin(), prefix.end(), s.begin(), [](char a, char b) {
           return std::tolower(static_cast<unsigned char>(a)) ==
                  std::tolower(static_cast<unsigned char>(b));
         });
}

}  // namespace

std::optional<RedisOptions> parse_redis_url(std::string_view url, std::string* error) {
  // Reasons never quote the credentials: this message ends up in logs.
  const auto bad = [error](std::string_view reason) -> std::optional<RedisOptions> {
    if (error != nullptr) *error = "bad redis URL: " + std::string(reason);
    return std::nullopt;
  };
  constexpr std::string_view scheme = "redis://";
  if (starts_with_ignoring_case(url, "rediss://")) return bad("TLS (rediss://) is not supported");
  if (!starts_with_ignoring_case(url, scheme)) {
    return bad("expected redis://[[user]:password@]host[:port][/db]");
  }
  std::string_view rest = url.substr(scheme.size());

  RedisOptions options;
  // Host, port and db cannot hold '@', so the credentials end at the last one; this also
  // accepts passwords whose '@' or '/' were not percent-encoded.
  if (const auto at = rest.rfind('@'); at != std::string_view::npos) {
    const std::string_view userinfo = rest.substr(0, at);
    rest = rest.substr(at + 1);
    const auto colon = userinfo.find(':');
    if (colon == std::string_view::npos) {
      return bad("credentials need a colon: redis://:PASSWORD@host or redis://USER:PASSWORD@host");
    }
    auto username = percent_decode(userinfo.substr(0, colon));
    auto password = percent_decode(userinfo.substr(colon + 1));
    if (!username || !password) return bad("bad percent-encoding in the credentials");
    if (password->empty()) return bad("empty password after ':'");
    options.username = std::move(*username);
    options.password = std::move(*password);
  }
  if (rest.find_first_of("?#") != std::string_view::npos) {
    return bad("query parameters are not supported");
  }

  const auto slash = rest.find('/');
  const std::string_view authority = rest.substr(0, slash);
  const std::string_view path = slash == std::string_view::npos ? "" : rest.substr(slash + 1);

  std::string_view host;
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return bad("missing ']' after the IPv6 address");
    host = authority.substr(1, close - 1);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad("expected ':port' after the IPv6 address");
      port = after.substr(1);
      if (port.empty()) return bad("empty port");
    }
    if (!is_ipv6_literal(host)) return bad("bad IPv6 address");
  } else {
    const auto colon = authority.find(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) {
      port = authority.substr(colon + 1);
      if (port.empty()) return bad("empty port");
      if (port.find(':') != std::string_view::npos) return bad("IPv6 addresses go in brackets");
    }
    if (host.empty()) return bad("missing host");
    if (!is_host_name(host)) return bad("bad host name");
  }
  options.host = std::string(host);
  if (!port.empty()) {
    const auto number = parse_number(port, 65535);
    if (!number || *number == 0) return bad("port must be a number from 1 to 65535");
    options.port = static_cast<std::uint16_t>(*number);
  }
  if (!path.empty()) {
    const auto number = parse_number(path, 1'000'000);
    if (!number) return bad("database must be a number, as in redis://host:6379/0");
    options.database = static_cast<int>(*number);
  }
  return options;
}

// ---------------------------------------------------------------------------------------------
// Scripts

RedisScript::RedisScript(std::string lua) : source_(std::move(lua)) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(source_.data(), source_.size(), digest, &length, EVP_sha1(), nullptr) != 1) {
    throw std::runtime_error("SHA-1 is not available from OpenSSL");
  }
  sha1_ = core::to_hex(std::span<const std::uint8_t>(digest, length));
}

// ---------------------------------------------------------------------------------------------
// One hiredis connection on Asio

namespace detail {

namespace {

RedisReply copy_reply(const redisReply& reply) {
  RedisReply out;
  switch (reply.type) {
    case REDIS_REPLY_STRING:
      out.kind = RedisReply::Kind::string;
      out.str.assign(reply.str, reply.len);
      break;
    case REDIS_REPLY_STATUS:
      out.kind = RedisReply::Kind::status;
      out.str.assign(reply.str, reply.len);
      break;
    case REDIS_REPLY_ERROR:
      out.kind = RedisReply::Kind::error;
      out.str.assign(reply.str, reply.len);
      break;
    case REDIS_REPLY_INTEGER:
      out.kind = RedisReply::Kind::integer;
      out.integer = reply.integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.kind = RedisReply::Kind::array;
      out.elements.reserve(reply.elements);
      for (std::size_t i = 0; i < reply.elements; ++i) {
        out.elements.push_back(copy_reply(*reply.element[i]));
      }
      break;
    default:  // REDIS_REPLY_NIL
      out.kind = RedisReply::Kind::nil;
      break;
  }
  return out;
}

std::string_view reply_text(const redisReply* reply) {
  if (reply == nullptr || reply->str == nullptr) return {};
  return {reply->str, reply->len};
}

void log_line(const RedisOptions& options, std::string_view what) {
  const std::string address = options.host + ":" + std::to_string(options.port);
  core::log("info", std::string("redis: ") + std::string(what), {{"redis", address}});
}

// More commands than this unanswered on one connection: the server is not keeping up, and new
// commands fail at once rather than queue without bound.
constexpr std::size_t max_in_flight = 65536;

}  // namespace

class RedisLink;

// The awaiting side of one command, in the awaiting coroutine's frame. The link points to it
// until the reply (or the disconnect) arrives; leaving earlier (timeout, frame destroyed)
// withdraws that pointer, so a late reply finds no one waiting.
struct RedisWaiter {
  explicit RedisWaiter(const asio::any_io_executor& executor) : wake(executor) {}
  ~RedisWaiter();
  RedisWaiter(const RedisWaiter&) = delete;
  RedisWaiter& operator=(const RedisWaiter&) = delete;

  asio::steady_timer wake;  // expires at the deadline; cancelled when the reply is in
  RedisResult result;
  bool done = false;
  std::shared_ptr<RedisLink> link;  // set while registered with a link
  std::uint64_t seq = 0;
};

// Told (from inside hiredis callbacks, so it must only record and post) what a link does.
class RedisLinkObserver {
 public:
  virtual void on_link_state() = 0;
  virtual void on_link_message(std::string_view channel, std::string_view payload) = 0;
  virtual ~RedisLinkObserver() = default;
};

class RedisLink : public std::enable_shared_from_this<RedisLink> {
 public:
  enum class State { connecting, handshaking, subscribing, ready, dead };

  // Starts a non-blocking connect; null (and *error) when it failed at once.
  static std::shared_ptr<RedisLink> open(const asio::any_io_executor& executor,
                                         const RedisOptions& options,
                                         const std::vector<std::string>& channels,
                                         RedisLinkObserver* observer, std::string* error) {
    redisAsyncContext* ac = redisAsyncConnect(options.host.c_str(), options.port);
    if (ac == nullptr) {
      *error = "out of memory";
      return nullptr;
    }
    if (ac->c.err != 0) {
      *error = ac->c.errstr;
      redisAsyncFree(ac);
      return nullptr;
    }
    std::shared_ptr<RedisLink> link(new RedisLink(executor, options, channels, observer));
    boost::system::error_code ec;
    link->socket_.assign(ac->c.fd, ec);
    if (ec) {
      *error = ec.message();
      redisAsyncFree(ac);
      return nullptr;
    }
    link->ac_ = ac;
    ac->data = link.get();
    ac->ev.data = link.get();
    ac->ev.addRead = &RedisLink::hook_add_read;
    ac->ev.delRead = &RedisLink::hook_del_read;
    ac->ev.addWrite = &RedisLink::hook_add_write;
    ac->ev.delWrite = &RedisLink::hook_del_write;
    ac->ev.cleanup = &RedisLink::hook_cleanup;
    // Arms the first write wait: a connecting socket becomes writable when connect(2) is done.
    redisAsyncSetConnectCallback(ac, &RedisLink::on_connect);
    return link;
  }

  ~RedisLink() {
    observer_ = nullptr;
    close();
  }
  RedisLink(const RedisLink&) = delete;
  RedisLink& operator=(const RedisLink&) = delete;

  State state() const { return state_; }
  const std::string& error() const { return error_; }
  void detach() { observer_ = nullptr; }

  // Frees the hiredis context: pending waiters complete with `disconnected`. Never call it from
  // inside a hiredis callback.
  void close() {
    if (ac_ != nullptr) {
      error_ = "closed";
      redisAsyncFree(ac_);  // runs the NULL-reply callbacks and the cleanup hook
    }
  }

  enum class SendOutcome { sent, not_ready, overloaded };

  SendOutcome send(std::span<const std::string_view> argv, RedisWaiter& waiter) {
    if (ac_ == nullptr || state_ != State::ready) return SendOutcome::not_ready;
    if (in_flight_.size() >= max_in_flight) return SendOutcome::overloaded;
    boost::container::small_vector<const char*, 16> data;
    boost::container::small_vector<std::size_t, 16> lengths;
    for (const std::string_view arg : argv) {
      data.push_back(arg.empty() ? "" : arg.data());
      lengths.push_back(arg.size());
    }
    if (redisAsyncCommandArgv(ac_, &RedisLink::on_command_reply, nullptr,
                              static_cast<int>(argv.size()), data.data(),
                              lengths.data()) != REDIS_OK) {
      return SendOutcome::not_ready;
    }
    waiter.link = shared_from_this();
    waiter.seq = front_seq_ + in_flight_.size();
    in_flight_.push_back(InFlight{&waiter, SteadyClock::now()});
    return SendOutcome::sent;
  }

  void withdraw(std::uint64_t seq) {
    if (seq >= front_seq_ && seq - front_seq_ < in_flight_.size()) {
      in_flight_[seq - front_seq_].waiter = nullptr;
    }
  }

  // True when the oldest unanswered command was sent more than `limit` ago: the server or the
  // path to it has stalled (a half-open TCP connection looks exactly like this).
  bool stalled(SteadyClock::time_point now, SteadyClock::duration limit) const {
    return !in_flight_.empty() && now - in_flight_.front().sent > limit;
  }

 private:
  struct InFlight {
    RedisWaiter* waiter;  // null: withdrawn
    SteadyClock::time_point sent;
  };

  RedisLink(const asio::any_io_executor& executor, const RedisOptions& options,
            const std::vector<std::string>& channels, RedisLinkObserver* observer)
      : socket_(executor), options_(options), channels_(channels), observer_(observer) {}

  static RedisLink* from(const redisAsyncContext* ac) { return static_cast<RedisLink*>(ac->data); }

  void set_state(State state) {
    if (state_ == state) return;
    state_ = state;
    if (observer_ != nullptr) observer_->on_link_state();
  }

  // --- Asio side ---

  static void hook_add_read(void* data) {
    auto* link = static_cast<RedisLink*>(data);
    link->want_read_ = true;
    link->arm_read();
  }
  static void hook_del_read(void* data) { static_cast<RedisLink*>(data)->want_read_ = false; }
  static void hook_add_write(void* data) {
    auto* link = static_cast<RedisLink*>(data);
    link->want_write_ = true;
    link->arm_write();
  }
  static void hook_del_write(void* data) { static_cast<RedisLink*>(data)->want_write_ = false; }
  static void hook_cleanup(void* data) { static_cast<RedisLink*>(data)->release_socket(); }

  void arm_read() {
    if (read_armed_ || !want_read_ || ac_ == nullptr) return;
    auto self = weak_from_this().lock();
    if (!self) return;  // being destroyed
    read_armed_ = true;
    socket_.async_wait(asio::posix::descriptor_base::wait_read,
                       [self = std::move(self)](const boost::system::error_code& ec) {
                         self->read_armed_ = false;
                         if (ec == asio::error::operation_aborted || self->ac_ == nullptr ||
                             !self->want_read_) {
                           return;
                         }
                         // On any other error hiredis' own read finds it and disconnects.
                         redisAsyncHandleRead(self->ac_);
                         self->arm_read();
                       });
  }

  void arm_write() {
    if (write_armed_ || !want_write_ || ac_ == nullptr) return;
    auto self = weak_from_this().lock();
    if (!self) return;
    write_armed_ = true;
    socket_.async_wait(asio::posix::descriptor_base::wait_write,
                       [self = std::move(self)](const boost::system::error_code& ec) {
                         self->write_armed_ = false;
                         if (ec == asio::error::operation_aborted || self->ac_ == nullptr ||
                             !self->want_write_) {
                           return;
                         }
                         redisAsyncHandleWrite(self->ac_);
                         self->arm_write();
                       });
  }

  // hiredis is about to free the context and close the fd.
  void release_socket() {
    if (ac_ == nullptr) return;
    if (ac_->c.err != 0) error_ = ac_->c.errstr;
    ac_ = nullptr;
    want_read_ = want_write_ = false;
    boost::system::error_code ec;
    socket_.cancel(ec);
    socket_.release();  // hiredis closes the fd
    set_state(State::dead);
  }

  // --- hiredis side ---

  static void on_connect(const redisAsyncContext* ac, int status) {
    RedisLink* link = from(ac);
    if (status != REDIS_OK) {
      link->error_ = ac->c.errstr;  // ac->errstr is not filled in yet at this point
      return;  // hiredis frees the context next; the cleanup hook marks the link dead
    }
    redisEnableKeepAlive(&link->ac_->c);  // a vanished peer is noticed even when idle
    link->start_handshake();
  }

  void start_handshake() {
    state_ = State::handshaking;
    if (!options_.password.empty()) {
      boost::container::small_vector<std::string_view, 3> argv;
      argv.push_back("AUTH");
      if (!options_.username.empty()) argv.push_back(options_.username);
      argv.push_back(options_.password);
      send_internal(argv, &RedisLink::on_handshake_reply);
    }
    if (options_.database != 0) {
      const std::string database = std::to_string(options_.database);
      const std::string_view argv[] = {"SELECT", database};
      send_internal(argv, &RedisLink::on_handshake_reply);
    }
    if (handshake_pending_ == 0) after_handshake();
  }

  void send_internal(std::span<const std::string_view> argv, redisCallbackFn* callback) {
    boost::container::small_vector<const char*, 8> data;
    boost::container::small_vector<std::size_t, 8> lengths;
    for (const std::string_view arg : argv) {
      data.push_back(arg.data());
      lengths.push_back(arg.size());
    }
    if (redisAsyncCommandArgv(ac_, callback, nullptr, static_cast<int>(argv.size()), data.data(),
                              lengths.data()) == REDIS_OK &&
        callback == &RedisLink::on_handshake_reply) {
      ++handshake_pending_;
    }
  }

  static void on_handshake_reply(redisAsyncContext* ac, void* reply_ptr, void*) {
    RedisLink* link = from(ac);
    const auto* reply = static_cast<const redisReply*>(reply_ptr);
    --link->handshake_pending_;
    if (reply == nullptr || link->handshake_failed_) return;
    if (reply->type == REDIS_REPLY_ERROR) {
      // AUTH or SELECT refused: the server's words name no secret. Disconnect; the supervisor
      // retries with backoff, as the configuration may be fixed on the server side.
      link->handshake_failed_ = true;
      link->error_ = "AUTH/SELECT refused: " + std::string(reply_text(reply));
      redisAsyncDisconnect(ac);
      return;
    }
    if (link->handshake_pending_ == 0) link->after_handshake();
  }

  void after_handshake() {
    if (channels_.empty()) {
      set_state(State::ready);
      return;
    }
    state_ = State::subscribing;
    std::vector<std::string_view> argv;
    argv.reserve(channels_.size() + 1);
    argv.push_back("SUBSCRIBE");
    for (const std::string& channel : channels_) argv.push_back(channel);
    send_internal(argv, &RedisLink::on_subscription_reply);
  }

  // Subscription confirmations and messages: ["subscribe", channel, count] and
  // ["message", channel, payload].
  static void on_subscription_reply(redisAsyncContext* ac, void* reply_ptr, void*) {
    const auto* reply = static_cast<const redisReply*>(reply_ptr);
    if (reply == nullptr || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3) return;
    RedisLink* link = from(ac);
    const std::string_view kind = reply_text(reply->element[0]);
    if (kind == "message") {
      if (link->observer_ != nullptr) {
        link->observer_->on_link_message(reply_text(reply->element[1]),
                                         reply_text(reply->element[2]));
      }
    } else if (kind == "subscribe") {
      if (++link->subscribed_ == link->channels_.size() && link->state_ == State::subscribing) {
        link->set_state(State::ready);
      }
    }
  }

  static void on_command_reply(redisAsyncContext* ac, void* reply_ptr, void*) {
    RedisLink* link = from(ac);
    if (link->in_flight_.empty()) return;  // cannot happen: one entry per sent command
    RedisWaiter* waiter = link->in_flight_.front().waiter;
    link->in_flight_.pop_front();
    ++link->front_seq_;
    if (waiter == nullptr) return;  // timed out earlier; the late reply is dropped here
    if (reply_ptr != nullptr) {
      waiter->result.errc = RedisErrc::ok;
      waiter->result.reply = copy_reply(*static_cast<const redisReply*>(reply_ptr));
    } else {
      waiter->result.errc =
          ac->err == REDIS_ERR_PROTOCOL ? RedisErrc::protocol : RedisErrc::disconnected;
    }
    waiter->done = true;
    waiter->wake.cancel();  // Asio posts the waiting coroutine's resumption
  }

  redisAsyncContext* ac_ = nullptr;
  asio::posix::stream_descriptor socket_;
  bool want_read_ = false;
  bool want_write_ = false;
  bool read_armed_ = false;
  bool write_armed_ = false;
  State state_ = State::connecting;
  RedisOptions options_;
  std::vector<std::string> channels_;
  std::size_t subscribed_ = 0;
  int handshake_pending_ = 0;
  bool handshake_failed_ = false;
  std::deque<InFlight> in_flight_;  // in the order Redis answers
  std::uint64_t front_seq_ = 0;     // seq of in_flight_.front()
  std::string error_;
  RedisLinkObserver* observer_;
};

RedisWaiter::~RedisWaiter() {
  if (link && !done) link->withdraw(seq);
}

// ---------------------------------------------------------------------------------------------
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
    wake_.cancel();
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

  asio::awaitable<void> supervise(std::shared_ptr<RedisConnector> self) {
    (void)self;  // keeps the connector alive while this loop runs
    milliseconds backoff = first_backoff;
    bool ever_connected = false;
    bool failure_logged = false;
    while (!stopped_) {
      std::string error;
      auto link = RedisLink::open(executor_, options_, channels_, this, &error);
      if (link) {
        link_ = link;
        co_await wait_until(
            [&link] {
              return link->state() == RedisLink::State::ready ||
                     link->state() == RedisLink::State::dead;
            },
            SteadyClock::now() + options_.connect_timeout);
        if (stopped_) break;
        if (link->state() == RedisLink::State::ready) {
          if (ever_connected) metrics().redis_reconnects.fetch_add(1, std::memory_order_relaxed);
          ever_connected = true;
          failure_logged = false;
          backoff = first_backoff;
          log_line(options_, channels_.empty() ? "connected" : "connected and subscribed");
          for (const auto& waiter : connect_waiters_) waiter->cancel();
          if (on_reconnect_) on_reconnect_();
          co_await wait_until([&link] { return link->state() != RedisLink::State::ready; },
                              SteadyClock::time_point::max());
          if (stopped_) break;
          log_line(options_, "connection lost: " + link->error());
        } else {
          if (link->state() != RedisLink::State::dead) {
            link->close();
            error = "connect timed out";
          } else {
            error = link->error();
          }
        }
        link->detach();
        link->close();
        link_.reset();
        refresh_connected();
      }
      if (!failure_logged && !error.empty()) {
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

RedisClient::RedisClient(asio::any_io_executor executor, RedisOptions options)
    : connector_(std::make_shared<detail::RedisConnector>(
          std::move(executor), std::move(options), std::vector<std::string>{},
          RedisSubscriber::MessageHandler{}, RedisSubscriber::ReconnectHandler{})) {}

RedisClient::~RedisClient() { connector_->stop(); }

void RedisClient::start() { connector_->start(); }
void RedisClient::stop() { connector_->stop(); }
bool RedisClient::connected() const { return connector_->connected(); }

asio::awaitable<bool> RedisClient::wait_connected(std::chrono::milliseconds limit) {
  return detail::RedisConnector::wait_connected(connector_, limit);
}

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
    : connector_(std::make_shared<detail::RedisConnector>(
          std::move(executor), std::move(options), std::move(channels), std::move(on_message),
          std::move(on_reconnect))) {
  if (connector_->channel_count() == 0) {
    throw std::invalid_argument("RedisSubscriber needs at least one channel");
  }
}

RedisSubscriber::~RedisSubscriber() { connector_->stop(); }

void RedisSubscriber::start() { connector_->start(); }
void RedisSubscriber::stop() { connector_->stop(); }
bool RedisSubscriber::connected() const { return connector_->connected(); }

asio::awaitable<bool> RedisSubscriber::wait_connected(std::chrono::milliseconds limit) {
  return detail::RedisConnector::wait_connected(connector_, limit);
}

}  // namespace keygate::store
