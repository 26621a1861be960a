#pragma once
// Renders keygate's metrics (store/metrics.hpp) as Prometheus text format 0.0.4: every
// family with # HELP and # TYPE lines, names prefixed keygate_. Pure; no I/O.
#include <string>

#include "store/metrics.hpp"

namespace keygate::proxy {

std::string render_metrics(const store::Metrics& metrics);

}  // namespace keygate::proxy
