#pragma once
// Revocation that takes effect now: one LISTEN connection per process receives the
// `keygate_key_changed` notices that a trigger on api_keys sends for every UPDATE or DELETE
// (keygate keys revoke/rotate, or any SQL), and hands each changed key hash to `on_change`.
// On every connect it asks PostgreSQL which keys changed while it was not listening (since it
// last heard from PostgreSQL, or since the process started; by updated_at, against
// PostgreSQL's own clock) and hands each to `on_change`; after a reconnect it also calls
// `on_resync` so the owner drops its in-process cache as well. (A key DELETEd while it was away leaves no row to
// find: its Redis record lives on until cache.redis_ttl.)
//
// Table::custom (store.schema: custom): the operator's table sends the notices through the
// optional trigger of deploy/presets/*.notify.sql, which cannot name keygate's cache key (a
// bcrypt table has no SHA-256 of the key; a pepper is keygate's alone), so every notice, and
// every reconnect, calls `on_resync`: the in-process cache is dropped whole. There is no
// api_keys to catch up from.
//
// Poll (store.revocation: poll, where the table's owner allows no trigger): no LISTEN; the
// connection runs `Poll::statement` (one row, one value: the table's change signature) every
// `Poll::interval` and calls `on_resync` whenever the value differs from the one before.
#include <boost/asio/any_io_executor.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "store/key_record.hpp"

namespace keygate::store {

inline constexpr const char* key_changed_channel = "keygate_key_changed";

// store.revocation: poll (a member initializer in a nested struct could not be a default argument).
struct KeyChangePoll {
  std::string statement;  // empty: LISTEN for notices
  std::chrono::milliseconds interval{500};
};

class KeyChangeListener {
 public:
  using ChangeHandler = std::function<void(const KeyHash& hash)>;
  using ResyncHandler = std::function<void()>;
  enum class Table { native, custom };
  using Poll = KeyChangePoll;

  KeyChangeListener(boost::asio::any_io_executor executor, std::string dsn,
                    std::chrono::milliseconds connect_timeout, ChangeHandler on_change,
                    ResyncHandler on_resync, Table table = Table::native, Poll poll = {});
  ~KeyChangeListener();

  void start();
  // Called on the executor's thread (or once its io_context has stopped), no handler is called
  // after it returns. The listener may be destroyed after its io_context has stopped.
  void stop();
  // Listening now; readiness uses it as "PostgreSQL answers".
  bool listening() const { return state_->listening.load(std::memory_order_relaxed); }

  // Shared with the listening loop, which may outlive the listener by one wait after stop().
  struct State {
    std::atomic<bool> listening{false};
    std::atomic<bool> stopped{false};
  };

 private:
  boost::asio::any_io_executor executor_;
  std::string dsn_;
  std::chrono::milliseconds connect_timeout_;
  ChangeHandler on_change_;
  ResyncHandler on_resync_;
  Table table_;
  Poll poll_;
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

}  // namespace keygate::store
