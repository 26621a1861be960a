#include "store/metrics.hpp"

#include <cstdio>

namespace keygate::store {

void LatencyHistogram::observe_us(std::uint64_t us) {
  std::size_t i = 0;
  while (i < bounds_us.size() && us > bounds_us[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_us_.fetch_add(us, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
}

void LatencyHistogram::render(std::string& out, const std::string& name,
                              const std::string& labels) const {
  const std::string sep = labels.empty() ? "" : ",";
  std::uint64_t cumulative = 0;
  char line[256];
  for (std::size_t i = 0; i <= bounds_us.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    if (i < bounds_us.size()) {
      std::snprintf(line, sizeof line, "%s_bucket{%s%sle=\"%g\"} %llu\n", name.c_str(),
                    labels.c_str(), sep.c_str(), static_cast<double>(bounds_us[i]) / 1e6,
                    static_cast<unsigned long long>(cumulative));
    } else {
      std::snprintf(line, sizeof line, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name.c_str(),
                    labels.c_str(), sep.c_str(), static_cast<unsigned long long>(cumulative));
    }
    out += line;
  }
  const std::string braces = labels.empty() ? "" : "{" + labels + "}";
  std::snprintf(line, sizeof line, "%s_sum%s %.6f\n%s_count%s %llu\n", name.c_str(),
                braces.c_str(), static_cast<double>(sum_us_.load(std::memory_order_relaxed)) / 1e6,
                name.c_str(), braces.c_str(),
                static_cast<unsigned long long>(count_.load(std::memory_order_relaxed)));
  out += line;
}

Metrics& metrics() {
  static Metrics instance;
  return instance;
}

}  // namespace keygate::store
