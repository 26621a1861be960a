#pragma once
// Points in time as RFC 3339 UTC text, from <chrono>'s calendar types (no gmtime/strftime, no
// locale, no time zone database).
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace keygate::core {

using SystemTime = std::chrono::system_clock::time_point;

// "2025-01-31T12:00:00Z" (whole seconds, rounded down).
std::string format_utc_seconds(SystemTime t);
// Appends "2025-01-31T12:00:00.123456Z" (microseconds, rounded down).
void append_utc_micros(std::string& out, SystemTime t);
// RFC 3339 date-time: "2025-01-31T12:00:00Z", "2025-01-31T12:00:00.5+02:00" (T or t, Z or z;
// at most 9 fraction digits, kept to the microsecond; a real calendar date; years 1970-9999;
// no leap second). Anything else: nullopt.
std::optional<SystemTime> parse_rfc3339(std::string_view text);

}  // namespace keygate::core
