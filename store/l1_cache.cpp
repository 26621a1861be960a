#include "store/l1_cache.hpp"

#include <algorithm>
#include <cstring>

namespace keygate::store {

std::size_t L1Cache::HashOfKeyHash::operator()(const KeyHash& h) const noexcept {
  // The key hash is SHA-256 output: any 8 of its bytes are already uniformly distributed.
  std::size_t value;
  std::memcpy(&value, h.data(), sizeof value);
  return value;
}

L1Cache::L1Cache(Options options)
    : options_(options),
      max_per_shard_(std::max<std::size_t>(1, (options.max_entries + shard_count - 1) / shard_count)) {}

L1Cache::Shard& L1Cache::shard_for(const KeyHash& hash) const {
  // A byte the map's own hash does not use, so shards and buckets stay independent.
  return shards_[hash[31] % shard_count];
}

L1Cache::Found L1Cache::find(const KeyHash& hash, SteadyClock::time_point now) const {
  Shard& shard = shard_for(hash);
  std::lock_guard lock(shard.mutex);
  auto it = shard.entries.find(hash);
  if (it == shard.entries.end() || it->second.expires <= now) return {};
  if (!it->second.record) return {Probe::known_absent, nullptr};
  return {Probe::hit, it->second.record};
}

void L1Cache::put(const KeyHash& hash, KeyRecordPtr record, std::uint64_t epoch_at_start,
                  SteadyClock::time_point now) {
  insert(hash, Entry{std::move(record), now + options_.ttl}, epoch_at_start, now);
}

void L1Cache::put_absent(const KeyHash& hash, std::uint64_t epoch_at_start,
                         SteadyClock::time_point now) {
  insert(hash, Entry{nullptr, now + options_.negative_ttl}, epoch_at_start, now);
}

void L1Cache::insert(const KeyHash& hash, Entry entry, std::uint64_t epoch_at_start,
                     SteadyClock::time_point now) {
  Shard& shard = shard_for(hash);
  std::lock_guard lock(shard.mutex);
  // Checked under the shard lock: invalidate() takes its sequence number before taking it.
  if (all_invalidated_at_.load(std::memory_order_acquire) > epoch_at_start) return;
  if (auto it = shard.invalidated.find(hash);
      it != shard.invalidated.end() && it->second.sequence > epoch_at_start) {
    return;
  }
  if (shard.entries.size() >= max_per_shard_ && !shard.entries.contains(hash)) {
    std::erase_if(shard.entries, [now](const auto& item) { return item.second.expires <= now; });
    // Still full of live entries: drop an arbitrary one. Hashes are random, so this is a
    // random eviction, which for a cache of hot keys with short TTLs is close to LRU.
    if (shard.entries.size() >= max_per_shard_) shard.entries.erase(shard.entries.begin());
  }
  shard.entries.insert_or_assign(hash, std::move(entry));
}

void L1Cache::invalidate(const KeyHash& hash) {
  const std::uint64_t sequence = sequence_.fetch_add(1, std::memory_order_acq_rel) + 1;
  const auto now = SteadyClock::now();
  Shard& shard = shard_for(hash);
  std::lock_guard lock(shard.mutex);
  shard.entries.erase(hash);
  if (shard.invalidated.size() >= 256) {
    // Lookups are bounded by store timeouts of seconds; a minute is far beyond any of them.
    std::erase_if(shard.invalidated,
                  [now](const auto& item) { return now - item.second.at > std::chrono::minutes(1); });
  }
  shard.invalidated.insert_or_assign(hash, Invalidation{sequence, now});
}

void L1Cache::invalidate_all() {
  const std::uint64_t sequence = sequence_.fetch_add(1, std::memory_order_acq_rel) + 1;
  all_invalidated_at_.store(sequence, std::memory_order_release);
  for (Shard& shard : shards_) {
    std::lock_guard lock(shard.mutex);
    shard.entries.clear();
  }
}

std::size_t L1Cache::size() const {
  std::size_t total = 0;
  for (const Shard& shard : shards_) {
    std::lock_guard lock(shard.mutex);
    total += shard.entries.size();
  }
  return total;
}

void L1Cache::distrust_shared_cache(const KeyHash& hash, SteadyClock::time_point until) {
  Shard& shard = shard_for(hash);
  std::lock_guard lock(shard.mutex);
  auto [it, inserted] = shard.distrusted.try_emplace(hash, until);
  if (inserted) {
    distrusted_.fetch_add(1, std::memory_order_release);
  } else {
    it->second = std::max(it->second, until);
  }
}

void L1Cache::trust_shared_cache(const KeyHash& hash) {
  Shard& shard = shard_for(hash);
  std::lock_guard lock(shard.mutex);
  if (shard.distrusted.erase(hash) > 0) distrusted_.fetch_sub(1, std::memory_order_release);
}

bool L1Cache::shared_cache_trusted(const KeyHash& hash, SteadyClock::time_point now) const {
  if (distrusted_.load(std::memory_order_acquire) == 0) return true;
  Shard& shard = shard_for(hash);
  std::lock_guard lock(shard.mutex);
  const auto it = shard.distrusted.find(hash);
  return it == shard.distrusted.end() || it->second <= now;
}

}  // namespace keygate::store
