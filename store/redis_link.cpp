#include "store/redis_link.hpp"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <boost/container/small_vector.hpp>

namespace keygate::store::detail {

namespace asio = boost::asio;
using SteadyClock = std::chrono::steady_clock;

namespace {

// More commands than this unanswered on one connection: the server is not keeping up, and new
// commands fail at once rather than queue without bound.
constexpr std::size_t max_in_flight = 65536;

RedisLink* link_of(const redisAsyncContext* ac) { return static_cast<RedisLink*>(ac->data); }

}  // namespace

RedisWaiter::~RedisWaiter() {
  if (link && !done) link->withdraw(seq);
}

std::shared_ptr<RedisLink> RedisLink::open(const asio::any_io_executor& executor,
                                           const std::string& address, const RedisOptions& options,
                                           const std::vector<std::string>& channels,
                                           RedisLinkObserver* observer, std::string* error) {
  redisAsyncContext* ac = redisAsyncConnect(address.c_str(), options.port);
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
  bound_reply_reader(*ac->c.reader);
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

RedisLink::RedisLink(const asio::any_io_executor& executor, const RedisOptions& options,
                     const std::vector<std::string>& channels, RedisLinkObserver* observer)
    : socket_(executor), options_(options), channels_(channels), observer_(observer) {}

RedisLink::~RedisLink() {
  observer_ = nullptr;
  close();
}

void RedisLink::close() {
  if (ac_ != nullptr) {
    error_ = "closed";
    redisAsyncFree(ac_);  // runs the NULL-reply callbacks and the cleanup hook
  }
}

RedisLink::SendOutcome RedisLink::send(std::span<const std::string_view> argv,
                                       RedisWaiter& waiter) {
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

void RedisLink::withdraw(std::uint64_t seq) {
  if (seq >= front_seq_ && seq - front_seq_ < in_flight_.size()) {
    in_flight_[seq - front_seq_].waiter = nullptr;
  }
}

void RedisLink::set_state(State state) {
  if (state_ == state) return;
  state_ = state;
  if (observer_ != nullptr) observer_->on_link_state();
}

// --- Asio side -------------------------------------------------------------------------------

void RedisLink::hook_add_read(void* data) {
  auto* link = static_cast<RedisLink*>(data);
  link->want_read_ = true;
  link->arm(asio::posix::descriptor_base::wait_read);
}

void RedisLink::hook_del_read(void* data) { static_cast<RedisLink*>(data)->want_read_ = false; }

void RedisLink::hook_add_write(void* data) {
  auto* link = static_cast<RedisLink*>(data);
  link->want_write_ = true;
  link->arm(asio::posix::descriptor_base::wait_write);
}

void RedisLink::hook_del_write(void* data) { static_cast<RedisLink*>(data)->want_write_ = false; }

void RedisLink::hook_cleanup(void* data) { static_cast<RedisLink*>(data)->release_socket(); }

// One readiness wait in each direction at a time, re-armed while hiredis still wants it.
void RedisLink::arm(asio::posix::descriptor_base::wait_type what) {
  const bool reading = what == asio::posix::descriptor_base::wait_read;
  bool& armed = reading ? read_armed_ : write_armed_;
  const bool wanted = reading ? want_read_ : want_write_;
  if (armed || !wanted || ac_ == nullptr) return;
  auto self = weak_from_this().lock();
  if (!self) return;  // being destroyed
  armed = true;
  socket_.async_wait(what, [self = std::move(self), what,
                            reading](const boost::system::error_code& ec) {
    (reading ? self->read_armed_ : self->write_armed_) = false;
    if (ec == asio::error::operation_aborted || self->ac_ == nullptr ||
        !(reading ? self->want_read_ : self->want_write_)) {
      return;
    }
    // On any other error hiredis' own read or write finds it and disconnects.
    if (reading) {
      redisAsyncHandleRead(self->ac_);
    } else {
      redisAsyncHandleWrite(self->ac_);
    }
    self->arm(what);
  });
}

// hiredis is about to free the context and close the fd.
void RedisLink::release_socket() {
  if (ac_ == nullptr) return;
  if (ac_->c.err != 0) error_ = ac_->c.errstr;
  ac_ = nullptr;
  want_read_ = want_write_ = false;
  boost::system::error_code ec;
  socket_.cancel(ec);
  (void)socket_.release();  // hiredis closes the fd
  set_state(State::dead);
}

// --- hiredis side ----------------------------------------------------------------------------

void RedisLink::on_connect(const redisAsyncContext* ac, int status) {
  RedisLink* link = link_of(ac);
  if (status != REDIS_OK) {
    link->error_ = ac->c.errstr;  // ac->errstr is not filled in yet at this point
    return;  // hiredis frees the context next; the cleanup hook marks the link dead
  }
  redisEnableKeepAlive(&link->ac_->c);  // a vanished peer is noticed even when idle
  link->start_handshake();
}

void RedisLink::start_handshake() {
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

void RedisLink::send_internal(std::span<const std::string_view> argv, ReplyCallback* callback) {
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

void RedisLink::on_handshake_reply(redisAsyncContext* ac, void* reply_ptr, void*) {
  RedisLink* link = link_of(ac);
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

void RedisLink::after_handshake() {
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
void RedisLink::on_subscription_reply(redisAsyncContext* ac, void* reply_ptr, void*) {
  const auto* reply = static_cast<const redisReply*>(reply_ptr);
  if (reply == nullptr || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3) return;
  RedisLink* link = link_of(ac);
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

void RedisLink::on_command_reply(redisAsyncContext* ac, void* reply_ptr, void*) {
  RedisLink* link = link_of(ac);
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

}  // namespace keygate::store::detail
