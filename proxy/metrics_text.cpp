#include "proxy/metrics_text.hpp"

#include <malloc.h>

#include <array>
#include <charconv>
#include <initializer_list>
#include <string>
#include <string_view>

#include "authz/decision.hpp"
#include "proxy/ops_metrics.hpp"

namespace keygate::proxy {

OpsMetrics& ops_metrics() {
  static OpsMetrics instance;
  return instance;
}

namespace {

void header(std::string& out, std::string_view name, std::string_view type,
            std::string_view help) {
  out.append("# HELP ").append(name).append(" ").append(help).append("\n");
  out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

template <typename Value>
void sample(std::string& out, std::string_view name, std::string_view labels, Value value) {
  out.append(name);
  if (!labels.empty()) out.append("{").append(labels).append("}");
  out += ' ';
  std::array<char, 32> digits;
  const auto result = std::to_chars(digits.data(), digits.data() + digits.size(), value);
  out.append(digits.data(), result.ptr);
  out += '\n';
}

std::uint64_t read(const store::Counter& counter) {
  return counter.load(std::memory_order_relaxed);
}

void counter(std::string& out, std::string_view name, std::string_view help,
             const store::Counter& value) {
  header(out, name, "counter", help);
  sample(out, name, "", read(value));
}

// A counter family with one label: each value under its label value.
struct Labelled {
  std::string_view label;
  const store::Counter& value;
};
void labelled_counter(std::string& out, std::string_view name, std::string_view help,
                      std::string_view label_name, std::initializer_list<Labelled> values) {
  header(out, name, "counter", help);
  std::string labels;
  for (const Labelled& v : values) {
    labels.assign(label_name).append("=\"").append(v.label).append("\"");
    sample(out, name, labels, read(v.value));
  }
}

void gauge(std::string& out, std::string_view name, std::string_view help,
           const store::Gauge& value) {
  header(out, name, "gauge", help);
  sample(out, name, "", value.load(std::memory_order_relaxed));
}

void histogram(std::string& out, const std::string& name, std::string_view help,
               const store::LatencyHistogram& value) {
  header(out, name, "histogram", help);
  value.render(out, name, "");
}

constexpr std::array<std::string_view, 3> tier_names{"l1", "redis", "postgres"};
constexpr std::array<std::string_view, 3> outcome_names{"hit", "miss", "error"};

}  // namespace

static_assert(authz::decision_label_count <=
              std::tuple_size_v<decltype(store::Metrics::requests_by_decision)>);

std::string render_metrics(const store::Metrics& m) {
  std::string out;
  out.reserve(8192);
  std::string labels;

  header(out, "keygate_requests_total", "counter",
         "Requests by authorization decision (allowed or the error code).");
  for (std::size_t i = 0; i < authz::decision_label_count; ++i) {
    labels.assign("decision=\"").append(authz::decision_label(i)).append("\"");
    sample(out, "keygate_requests_total", labels, read(m.requests_by_decision[i]));
  }

  header(out, "keygate_responses_total", "counter", "Responses by HTTP status class.");
  for (std::size_t i = 1; i < m.responses_by_status_class.size(); ++i) {
    labels.assign("class=\"").append(std::to_string(i)).append("xx\"");
    sample(out, "keygate_responses_total", labels, read(m.responses_by_status_class[i]));
  }

  header(out, "keygate_key_lookups_total", "counter", "Key lookups by tier and outcome.");
  for (std::size_t tier = 0; tier < tier_names.size(); ++tier) {
    for (std::size_t outcome = 0; outcome < outcome_names.size(); ++outcome) {
      labels.assign("tier=\"").append(tier_names[tier]).append("\",outcome=\"");
      labels.append(outcome_names[outcome]).append("\"");
      sample(out, "keygate_key_lookups_total", labels, read(m.lookups[tier][outcome]));
    }
  }
  counter(out, "keygate_postgres_key_queries_total",
          "SELECTs by key hash sent to PostgreSQL.", m.postgres_key_queries);

  histogram(out, "keygate_redis_latency_seconds", "Redis command latency.", m.redis_latency);
  histogram(out, "keygate_postgres_latency_seconds", "PostgreSQL query latency.",
            m.postgres_latency);
  header(out, "keygate_api_responses_total", "counter",
         "Key-management API answers by endpoint and status class.");
  for (std::size_t e = 0; e < store::api_endpoint_labels.size(); ++e) {
    for (std::size_t c = 1; c < m.api_responses[e].size(); ++c) {
      labels.assign("endpoint=\"").append(store::api_endpoint_labels[e]).append("\",class=\"");
      labels.append(std::to_string(c)).append("xx\"");
      sample(out, "keygate_api_responses_total", labels, read(m.api_responses[e][c]));
    }
  }
  histogram(out, "keygate_api_latency_seconds", "Key-management API: from a request read to its answer written.",
            m.api_latency);
  histogram(out, "keygate_upstream_latency_seconds",
            "Time from forwarding a request to the upstream's response header.",
            m.upstream_latency);

  labelled_counter(out, "keygate_upstream_errors_total",
                   "Upstream failures: connect (refused or timed out), timeout (no response in "
                   "time), other.",
                   "kind",
                   {{"connect", m.upstream_errors_connect},
                    {"timeout", m.upstream_errors_timeout},
                    {"other", m.upstream_errors_other}});

  // glibc's own accounting: bytes handed out by malloc now, and bytes it holds from the OS.
  // Their difference is what freed memory costs in RSS (fragmentation), e.g. after a burst.
  const struct mallinfo2 heap = ::mallinfo2();
  header(out, "keygate_heap_bytes", "gauge",
         "Heap memory (glibc malloc): in use by keygate, and held from the OS in all.");
  sample(out, "keygate_heap_bytes", "state=\"in_use\"", heap.uordblks + heap.hblkhd);
  sample(out, "keygate_heap_bytes", "state=\"held\"", heap.arena + heap.hblkhd);

  gauge(out, "keygate_open_connections", "Open client connections.", m.open_connections);
  gauge(out, "keygate_open_upstream_connections", "Open upstream connections (busy or pooled).",
        m.open_upstream_connections);
  struct PlainCounter {
    std::string_view name, help;
    const store::Counter& value;
  };
  const PlainCounter plain_counters[] = {
      {"keygate_l1_invalidations_total", "L1 cache entries dropped on revocation notices.",
       m.invalidations},
      {"keygate_redis_reconnects_total", "Reconnections to Redis.", m.redis_reconnects},
      {"keygate_redis_cluster_moved_total",
       "Redis Cluster MOVED redirections followed (the slot map was out of date).",
       m.redis_cluster_moved},
      {"keygate_redis_cluster_ask_total",
       "Redis Cluster ASK redirections followed (a slot being migrated).", m.redis_cluster_ask},
      {"keygate_redis_cluster_slot_refreshes_total",
       "Redis Cluster slot maps read with CLUSTER SLOTS.", m.redis_cluster_slot_refreshes},
      {"keygate_postgres_reconnects_total", "Reconnections to PostgreSQL.", m.postgres_reconnects},
      {"keygate_ratelimit_decided_without_redis_total",
       "Rate-limit decisions taken without Redis (on_redis_error).",
       m.ratelimit_decided_without_redis},
      {"keygate_ratelimit_redis_calls_total",
       "Rate-limit scripts sent to Redis (each counts one request, or a lease of several).",
       m.ratelimit_redis_calls},
      {"keygate_ratelimit_lease_hits_total",
       "Requests admitted from a worker's lease (counted in Redis earlier), without a call.",
       m.ratelimit_lease_hits},
      {"keygate_ratelimit_near_cache_hits_total",
       "429s answered from the in-process over-limit cache, without asking Redis.",
       m.ratelimit_near_cache_hits},
  };
  for (const PlainCounter& c : plain_counters) counter(out, c.name, c.help, c.value);

  labelled_counter(out, "keygate_usage_events_total", "Usage events by what became of them.",
                   "outcome",
                   {{"queued", m.usage_queued},
                    {"written", m.usage_written},
                    {"spilled", m.usage_spilled},
                    {"replayed", m.usage_replayed},
                    {"dropped", m.usage_dropped}});
  gauge(out, "keygate_usage_queue_depth", "Usage events waiting to be written.",
        m.usage_queue_depth);
  counter(out, "keygate_usage_rows_refused_total",
          "Usage rows PostgreSQL refused (a value its column cannot hold, a key gone), dropped "
          "alone; also counted as dropped.",
          m.usage_refused);
  counter(out, "keygate_usage_rows_possibly_duplicated_total",
          "Usage rows written again to a custom usage table after a COMMIT that got no answer: "
          "each may be there twice (that table has no event id).",
          m.usage_possibly_duplicated);

  const OpsMetrics& ops = ops_metrics();
  labelled_counter(out, "keygate_tls_handshake_failures_total",
                   "TLS handshakes that failed: from clients on the listener, or to the upstream.",
                   "side",
                   {{"client", ops.tls_handshake_failures_client},
                    {"upstream", ops.tls_handshake_failures_upstream}});
  labelled_counter(out, "keygate_connections_rejected_total",
                   "Connections accepted over max_connections: answered 503 over_capacity and "
                   "closed, or closed at once (too many already being answered on that worker, or "
                   "a TLS listener).",
                   "answer",
                   {{"503", ops.connections_rejected_answered},
                    {"none", ops.connections_rejected_closed}});
  labelled_counter(out, "keygate_config_reloads_total",
                   "SIGHUP reloads: applied, or rejected (the running configuration was kept).",
                   "outcome",
                   {{"applied", ops.reloads_applied}, {"rejected", ops.reloads_rejected}});
  labelled_counter(out, "keygate_access_log_lines_total",
                   "Access-log lines written, or dropped (buffer full or write failed).",
                   "outcome",
                   {{"written", ops.access_log_written}, {"dropped", ops.access_log_dropped}});
  return out;
}

}  // namespace keygate::proxy
