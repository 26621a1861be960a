#pragma once
// Counters of the operations side of proxy/ (TLS, reloads, the access log, connections turned
// away), rendered beside store::metrics() on /metrics.
#include "store/metrics.hpp"

namespace keygate::proxy {

struct OpsMetrics {
  store::Counter tls_handshake_failures_client{0};    // listener: handshake failed or timed out
  store::Counter tls_handshake_failures_upstream{0};  // to the upstream (e.g. not verified)
  store::Counter reloads_applied{0};
  store::Counter reloads_rejected{0};
  store::Counter access_log_written{0};  // lines handed to the file
  store::Counter access_log_dropped{0};  // lines dropped: the buffer was full or a write failed
  // Connections accepted over max_connections (turn_away.hpp): answered 503, or closed at once.
  store::Counter connections_rejected_answered{0};
  store::Counter connections_rejected_closed{0};
};

OpsMetrics& ops_metrics();

}  // namespace keygate::proxy
