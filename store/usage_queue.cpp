#include "store/usage_queue.hpp"

#include <algorithm>

namespace keygate::store {

UsageQueue::UsageQueue(unsigned shards, std::size_t capacity)
    : shard_capacity_(std::max<std::size_t>(1, (capacity + std::max(1u, shards) - 1) /
                                                   std::max(1u, shards))) {
  shards_.reserve(std::max(1u, shards));
  for (unsigned i = 0; i < std::max(1u, shards); ++i) {
    auto shard = std::make_unique<Shard>();
    // A first slab, so a quiet worker never allocates; busier ones grow (amortized) to their peak.
    shard->events.reserve(std::min<std::size_t>(shard_capacity_, 256));
    shard->spare.reserve(std::min<std::size_t>(shard_capacity_, 256));
    shards_.push_back(std::move(shard));
  }
}

UsageQueue::~UsageQueue() = default;

void UsageQueue::set_wake(std::function<void()> wake, std::size_t threshold) {
  wake_ = std::move(wake);
  wake_threshold_ = std::min(threshold, shard_capacity_);
}

bool UsageQueue::record(unsigned shard_index, const UsageFacts& facts) noexcept {
  Shard& shard = *shards_[shard_index % shards_.size()];
  std::size_t fill = 0;
  {
    std::lock_guard lock(shard.mutex);
    if (shard.closed || shard.events.size() >= shard_capacity_) {
      ++shard.dropped;
      return false;
    }
    try {
      fill_usage_event(shard.events.emplace_back(), facts);
    } catch (...) {  // bad_alloc while growing: drop rather than fail the request
      ++shard.dropped;
      return false;
    }
    ++shard.recorded;
    fill = shard.events.size();
  }
  if (fill == wake_threshold_ && wake_) wake_();
  return true;
}

UsageQueue::Taken UsageQueue::take_all(std::vector<UsageEvent>& out) {
  Taken taken;
  for (auto& shard : shards_) {
    {
      std::lock_guard lock(shard->mutex);
      shard->events.swap(shard->spare);
      taken.recorded += shard->recorded;
      taken.dropped += shard->dropped;
      shard->recorded = 0;
      shard->dropped = 0;
    }
    out.insert(out.end(), shard->spare.begin(), shard->spare.end());
    shard->spare.clear();
  }
  return taken;
}

void UsageQueue::close() {
  for (auto& shard : shards_) {
    std::lock_guard lock(shard->mutex);
    shard->closed = true;
  }
}

std::size_t UsageQueue::depth() const {
  std::size_t n = 0;
  for (const auto& shard : shards_) {
    std::lock_guard lock(shard->mutex);
    n += shard->events.size();
  }
  return n;
}

}  // namespace keygate::store
