#pragma once
// Process-wide counters and histograms, rendered by the admin listener as Prometheus text.
// Relaxed atomics: each update is one uncontended-enough add on the request path.
#include <array>
#include <string_view>
#include <atomic>
#include <cstdint>
#include <string>

namespace keygate::store {

using Counter = std::atomic<std::uint64_t>;
using Gauge = std::atomic<std::int64_t>;

// Latency histogram with fixed bucket bounds in microseconds (Prometheus "le" in seconds).
class LatencyHistogram {
 public:
  static constexpr std::array<std::uint64_t, 12> bounds_us{
      50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 100000, 500000, 2000000};
  void observe_us(std::uint64_t us);
  // Appends the _bucket/_sum/_count lines for `name` (with an optional label set like
  // `tier="redis"`).
  void render(std::string& out, const std::string& name, const std::string& labels) const;

 private:
  std::array<Counter, bounds_us.size() + 1> buckets_{};  // last: +Inf
  Counter sum_us_{0};
  Counter count_{0};
};

enum class LookupTier { l1 = 0, redis = 1, postgres = 2 };
enum class LookupOutcome { hit = 0, miss = 1, error = 2 };

// The key-management API's endpoints as metric labels, in api::Endpoint's order (api/api_routes.hpp
// asserts it).
inline constexpr std::array<std::string_view, 10> api_endpoint_labels{
    "openapi", "verify", "keys", "key", "key_revoke", "key_rotate", "key_usage", "audit", "leaks", "not_found"};

struct Metrics {
  // Requests by decision (index: authz::decision_index; 0 = allowed) and by HTTP class.
  std::array<Counter, 16> requests_by_decision{};
  std::array<Counter, 6> responses_by_status_class{};  // index: status / 100 (1xx..5xx)
  // Key lookups by tier and outcome.
  std::array<std::array<Counter, 3>, 3> lookups{};  // [tier][outcome]
  Counter postgres_key_queries{0};  // SELECTs by key_hash actually sent to PostgreSQL
  LatencyHistogram redis_latency;
  LatencyHistogram postgres_latency;
  LatencyHistogram upstream_latency;
  Counter upstream_errors_connect{0};
  Counter upstream_errors_timeout{0};
  Counter upstream_errors_other{0};
  Gauge open_connections{0};
  Gauge open_upstream_connections{0};
  Counter invalidations{0};  // L1 entries dropped on revocation notices
  Counter redis_reconnects{0};
  // Redis Cluster (store/redis_cluster.hpp): redirections followed, slot maps read.
  Counter redis_cluster_moved{0};
  Counter redis_cluster_ask{0};
  Counter redis_cluster_slot_refreshes{0};
  Counter postgres_reconnects{0};
  // Rate limiting and usage (issues #4, #5) add their counters here.
  Counter ratelimit_decided_without_redis{0};  // Redis down: decided by on_redis_error
  Counter ratelimit_redis_calls{0};             // rate-limit scripts sent to Redis
  Counter ratelimit_near_cache_hits{0};         // 429s answered from the over-limit cache
  Counter ratelimit_lease_hits{0};              // admitted from a worker's lease, no Redis call
  Counter usage_queued{0}, usage_written{0}, usage_spilled{0}, usage_replayed{0}, usage_dropped{0};
  Counter usage_refused{0};  // of usage_dropped: rows PostgreSQL refused (isolated, dropped alone)
  // Rows written again after a COMMIT without an answer, to a custom usage table (no event id
  // there): each may now be in the table twice.
  Counter usage_possibly_duplicated{0};
  // The key-management API: answers by endpoint and status class, and their latency.
  std::array<std::array<Counter, 6>, api_endpoint_labels.size()> api_responses{};  // [endpoint][status / 100]
  LatencyHistogram api_latency;
  Gauge usage_queue_depth{0};

  void count_lookup(LookupTier tier, LookupOutcome outcome) {
    lookups[static_cast<int>(tier)][static_cast<int>(outcome)].fetch_add(1, std::memory_order_relaxed);
  }
};

// The process's metrics. One instance; tests may read it directly.
Metrics& metrics();

}  // namespace keygate::store
