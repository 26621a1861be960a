#pragma once
// Points in time as RFC 3339 UTC text, from <chrono>'s calendar types (no gmtime/strftime, no
// locale, no time zone database).
#include <chrono>
#include <string>

namespace keygate::core {

using SystemTime = std::chrono::system_clock::time_point;

// "2025-01-31T12:00:00Z" (whole seconds, rounded down).
std::string format_utc_seconds(SystemTime t);
// Appends "2025-01-31T12:00:00.123456Z" (microseconds, rounded down).
void append_utc_micros(std::string& out, SystemTime t);

}  // namespace keygate::core
