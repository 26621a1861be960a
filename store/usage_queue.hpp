#pragma once
// The usage log's in-memory queue between the worker threads (producers) and the one usage
// writer (consumer). One shard per worker thread: recording an event locks only that worker's
// shard (uncontended except for the moment the writer swaps its buffer out) and copies the
// fixed-size event into a buffer that keeps its capacity, so the request path does no syscall
// and, once the buffer has grown to its peak, no allocation. A full shard drops the event
// (counted) instead of blocking: the writer empties the shards every few milliseconds whatever
// PostgreSQL's state, so a shard fills only when the writer thread itself is stuck.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "store/usage_event.hpp"

namespace keygate::store {

class UsageQueue {
 public:
  // `capacity`: events held by all shards together (each shard holds its share, at least 1).
  UsageQueue(unsigned shards, std::size_t capacity);
  ~UsageQueue();
  UsageQueue(const UsageQueue&) = delete;
  UsageQueue& operator=(const UsageQueue&) = delete;

  // Worker side, from worker `shard`'s thread (any thread is safe, but sharing a shard costs
  // contention). False when the shard is full or the queue is closed: the event is dropped.
  bool record(unsigned shard, const UsageFacts& facts) noexcept;

  // Writer side. Called once by the writer before any worker records: `wake` is called (from a
  // worker thread, outside the shard's lock) when a shard's fill reaches `threshold` events.
  void set_wake(std::function<void()> wake, std::size_t threshold);

  struct Taken {
    std::size_t recorded = 0;  // events recorded since the previous take (now appended to out)
    std::size_t dropped = 0;   // events dropped since the previous take (shard full or closed)
  };
  // Appends every shard's events to `out` (oldest first within a shard).
  Taken take_all(std::vector<UsageEvent>& out);
  // After close(), record() drops (and counts) everything: nothing can sit unseen in a shard
  // after the writer's final take.
  void close();

  unsigned shards() const { return static_cast<unsigned>(shards_.size()); }
  std::size_t shard_capacity() const { return shard_capacity_; }
  std::size_t depth() const;  // events waiting in the shards right now

 private:
  struct alignas(64) Shard {
    mutable std::mutex mutex;
    std::vector<UsageEvent> events;  // guarded by mutex
    std::size_t recorded = 0;        // guarded by mutex
    std::size_t dropped = 0;         // guarded by mutex
    bool closed = false;             // guarded by mutex
    std::vector<UsageEvent> spare;   // writer only: swapped with `events`, keeps its capacity
  };
  std::vector<std::unique_ptr<Shard>> shards_;
  std::size_t shard_capacity_;
  std::function<void()> wake_;
  std::size_t wake_threshold_ = 0;  // 0: never wake
};

}  // namespace keygate::store
