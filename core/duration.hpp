#pragma once
// Durations and rate limits as written in config.yaml and on the command line. Strict on
// purpose: digits then exactly one unit, no sign, spaces, decimals or overflow, so a typo is
// an error at startup instead of a surprising limit.
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace keygate::core {

// "500ms", "90s", "15m", "24h", "30d", "0s". Units: ms s m h d.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);

struct RateLimitSpec {
  int limit;           // requests per window, > 0
  int window_seconds;  // > 0
  friend bool operator==(const RateLimitSpec&, const RateLimitSpec&) = default;
};

// "<limit>/<duration>": "100/60s", "10/1m", "5/1h". The window must be a whole number of
// seconds (e.g. "2000ms" is fine, "1500ms" is not); both numbers must be > 0 and fit an int.
std::optional<RateLimitSpec> parse_rate_limit(std::string_view text);

// The largest unit that represents `d` exactly: "30s", "24h", "1500ms"; zero is "0s".
std::string format_duration(std::chrono::milliseconds d);

}  // namespace keygate::core
