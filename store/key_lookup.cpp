#include "store/key_lookup.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <cstring>

namespace keygate::store {
namespace asio = boost::asio;

// A lookup in flight in the lower tiers; later requests for the same hash wait on its timer,
// which the first request cancels when the result is in.
struct KeyLookup::Pending {
  explicit Pending(const asio::any_io_executor& executor) : done(executor) {
    done.expires_at(asio::steady_timer::time_point::max());
  }
  asio::steady_timer done;
  LookupResult result;
};

std::size_t KeyLookup::HashOfKeyHash::operator()(const KeyHash& h) const noexcept {
  std::size_t value;
  std::memcpy(&value, h.data(), sizeof value);
  return value;
}

KeyLookup::KeyLookup(asio::any_io_executor executor, L1Cache& l1, SharedKeyCache* shared_cache,
                     KeySource& source)
    : executor_(std::move(executor)), l1_(l1), shared_cache_(shared_cache), source_(source) {}

KeyLookup::~KeyLookup() = default;

asio::awaitable<LookupResult> KeyLookup::lookup(const KeyHash& hash, std::string_view presented_key) {
  auto& counters = metrics();
  const L1Cache::Found cached = l1_.find(hash, L1Cache::SteadyClock::now());
  if (cached.probe == L1Cache::Probe::hit) {
    counters.count_lookup(LookupTier::l1, LookupOutcome::hit);
    co_return LookupResult{LookupResult::Status::found, cached.record, LookupTier::l1};
  }
  if (cached.probe == L1Cache::Probe::known_absent) {
    counters.count_lookup(LookupTier::l1, LookupOutcome::hit);
    co_return LookupResult{LookupResult::Status::not_found, nullptr, LookupTier::l1};
  }
  counters.count_lookup(LookupTier::l1, LookupOutcome::miss);

  if (auto it = pending_.find(hash); it != pending_.end()) {
    std::shared_ptr<Pending> pending = it->second;
    co_await pending->done.async_wait(asio::as_tuple(asio::use_awaitable));
    co_return pending->result;
  }

  auto pending = std::make_shared<Pending>(executor_);
  pending_.emplace(hash, pending);
  try {
    pending->result = co_await lookup_lower_tiers(hash, presented_key);
  } catch (const std::exception&) {
    pending->result = LookupResult{LookupResult::Status::error, nullptr, LookupTier::postgres};
  }
  pending_.erase(hash);
  pending->done.cancel();
  co_return pending->result;
}

asio::awaitable<LookupResult> KeyLookup::lookup_lower_tiers(const KeyHash& hash,
                                                             std::string_view presented_key) {
  auto& counters = metrics();
  // Read before the lower tiers: if a revocation notice arrives meanwhile, what we read may be
  // stale and must not be cached.
  const std::uint64_t epoch = l1_.epoch();

  bool fill_shared_cache = false;
  if (shared_cache_ != nullptr && l1_.shared_cache_trusted(hash, L1Cache::SteadyClock::now())) {
    TierAnswer probe = co_await shared_cache_->get(hash);
    if (probe.status == TierAnswer::Status::found) {
      counters.count_lookup(LookupTier::redis, LookupOutcome::hit);
      probe.record->key_hash = hash;
      KeyRecordPtr record = std::move(probe.record);
      l1_.put(hash, record, epoch, L1Cache::SteadyClock::now());
      co_return LookupResult{LookupResult::Status::found, std::move(record), LookupTier::redis};
    }
    const bool missed = probe.status == TierAnswer::Status::not_found;
    counters.count_lookup(LookupTier::redis, missed ? LookupOutcome::miss : LookupOutcome::error);
    fill_shared_cache = missed;
  }

  TierAnswer row = co_await source_.find(hash, presented_key);
  switch (row.status) {
    case TierAnswer::Status::found: {
      counters.count_lookup(LookupTier::postgres, LookupOutcome::hit);
      row.record->key_hash = hash;
      if (fill_shared_cache) shared_cache_->put(hash, *row.record);
      KeyRecordPtr record = std::move(row.record);
      l1_.put(hash, record, epoch, L1Cache::SteadyClock::now());
      co_return LookupResult{LookupResult::Status::found, std::move(record), LookupTier::postgres};
    }
    case TierAnswer::Status::not_found:
      counters.count_lookup(LookupTier::postgres, LookupOutcome::miss);
      l1_.put_absent(hash, epoch, L1Cache::SteadyClock::now());
      co_return LookupResult{LookupResult::Status::not_found, nullptr, LookupTier::postgres};
    case TierAnswer::Status::unavailable:
      break;
  }
  counters.count_lookup(LookupTier::postgres, LookupOutcome::error);
  co_return LookupResult{LookupResult::Status::error, nullptr, LookupTier::postgres};
}

asio::awaitable<void> forget_key(L1Cache& l1, SharedKeyCache* shared_cache, KeyHash hash,
                                 std::chrono::milliseconds shared_record_ttl) {
  l1.invalidate(hash);
  if (shared_cache == nullptr) co_return;
  // Until the marker is in Redis, this process reads the key from PostgreSQL only. After
  // `shared_record_ttl` the old record has left Redis by itself, marker or not.
  const auto give_up_at = L1Cache::SteadyClock::now() + shared_record_ttl;
  l1.distrust_shared_cache(hash, give_up_at);
  asio::steady_timer pause(co_await asio::this_coro::executor);
  for (auto wait = std::chrono::milliseconds(50);; wait = std::min(2 * wait, std::chrono::milliseconds(2000))) {
    const bool marked = co_await shared_cache->invalidate(hash);
    if (marked || L1Cache::SteadyClock::now() >= give_up_at) break;
    pause.expires_after(wait);  // Redis is away (or reconnecting): try again
    co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  l1.invalidate(hash);
  l1.trust_shared_cache(hash);
}

}  // namespace keygate::store
