#pragma once
// One hiredis 0.14 connection driven by Asio: the adapter under RedisClient and RedisSubscriber
// (redis_client.cpp supervises it: reconnects, timeouts, name resolution).
//
// hiredis does no I/O of its own: it calls addRead/delRead/addWrite/delWrite/cleanup hooks. We
// register its fd with Asio as a posix::stream_descriptor, arm async_wait while hiredis wants
// to read or write, and call redisAsyncHandleRead/Write on readiness (the technique of
// ray-project/ray src/ray/gcs/asio.cc). hiredis owns the fd: the cleanup hook cancels and
// releases the descriptor, never closes it.
//
// Facts of hiredis 0.14 this relies on (async.c):
// - a reply is freed when its callback returns, so callbacks copy it;
// - when a context is freed (error, EOF, or redisAsyncFree) every pending callback is called
//   with a NULL reply, then the cleanup hook runs, then the context is gone;
// - a failed connect calls the connect callback with REDIS_ERR and then frees the context;
// - there is no command timeout: the awaiting side's steady_timer bounds the wait.
// Coroutines are never resumed from inside hiredis: a callback only stores the result and
// cancels the waiter's timer, whose completion Asio posts to the executor.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "store/redis_options.hpp"
#include "store/redis_reply.hpp"

struct redisAsyncContext;  // hiredis/async.h

namespace keygate::store::detail {

class RedisLink;

// The awaiting side of one command, in the awaiting coroutine's frame. The link points to it
// until the reply (or the disconnect) arrives; leaving earlier (timeout, frame destroyed)
// withdraws that pointer, so a late reply finds no one waiting.
struct RedisWaiter {
  explicit RedisWaiter(const boost::asio::any_io_executor& executor) : wake(executor) {}
  ~RedisWaiter();
  RedisWaiter(const RedisWaiter&) = delete;
  RedisWaiter& operator=(const RedisWaiter&) = delete;

  boost::asio::steady_timer wake;  // expires at the deadline; cancelled when the reply is in
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
  enum class SendOutcome { sent, not_ready, overloaded };

  // Starts a non-blocking connect to `address`, an IP literal (given a name, hiredis would
  // resolve it with a blocking getaddrinfo). Null, and *error, when it failed at once.
  static std::shared_ptr<RedisLink> open(const boost::asio::any_io_executor& executor,
                                         const std::string& address, const RedisOptions& options,
                                         const std::vector<std::string>& channels,
                                         RedisLinkObserver* observer, std::string* error);
  ~RedisLink();
  RedisLink(const RedisLink&) = delete;
  RedisLink& operator=(const RedisLink&) = delete;

  State state() const { return state_; }
  const std::string& error() const { return error_; }
  void detach() { observer_ = nullptr; }

  // Frees the hiredis context: pending waiters complete with `disconnected`. Never call it from
  // inside a hiredis callback.
  void close();

  SendOutcome send(std::span<const std::string_view> argv, RedisWaiter& waiter);
  void withdraw(std::uint64_t seq);

  // True when the oldest unanswered command was sent more than `limit` ago: the server or the
  // path to it has stalled (a half-open TCP connection looks exactly like this).
  bool stalled(std::chrono::steady_clock::time_point now,
               std::chrono::steady_clock::duration limit) const {
    return !in_flight_.empty() && now - in_flight_.front().sent > limit;
  }

 private:
  struct InFlight {
    RedisWaiter* waiter;  // null: withdrawn
    std::chrono::steady_clock::time_point sent;
  };
  using ReplyCallback = void(redisAsyncContext*, void*, void*);  // hiredis' redisCallbackFn

  RedisLink(const boost::asio::any_io_executor& executor, const RedisOptions& options,
            const std::vector<std::string>& channels, RedisLinkObserver* observer);

  void set_state(State state);

  // Asio side
  static void hook_add_read(void* data);
  static void hook_del_read(void* data);
  static void hook_add_write(void* data);
  static void hook_del_write(void* data);
  static void hook_cleanup(void* data);
  void arm(boost::asio::posix::descriptor_base::wait_type what);
  void release_socket();

  // hiredis side
  static void on_connect(const redisAsyncContext* ac, int status);
  void start_handshake();
  void send_internal(std::span<const std::string_view> argv, ReplyCallback* callback);
  static void on_handshake_reply(redisAsyncContext* ac, void* reply_ptr, void*);
  void after_handshake();
  static void on_subscription_reply(redisAsyncContext* ac, void* reply_ptr, void*);
  static void on_command_reply(redisAsyncContext* ac, void* reply_ptr, void*);

  redisAsyncContext* ac_ = nullptr;
  boost::asio::posix::stream_descriptor socket_;
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

}  // namespace keygate::store::detail
