#pragma once
// keygate's one log line format, shared by the access log and every startup, reload, store and
// error line. One JSON object per line:
//   {"ts":"2025-01-31T12:00:00.123456Z","level":"info","msg":"request",<fields>}
// Strings are escaped so that every line is valid JSON whatever the input: valid UTF-8 passes
// through as it is, control characters become \u00XX, and each byte that is not part of a
// valid UTF-8 sequence becomes U+FFFD (so a garbled header cannot break the line).
#include <cstdint>
#include <string>
#include <string_view>

namespace keygate::core::json {

void begin_line(std::string& out, std::string_view level, std::string_view msg);
void add(std::string& out, std::string_view name, std::string_view value);
void add(std::string& out, std::string_view name, std::int64_t value);
void add_null(std::string& out, std::string_view name);
void end_line(std::string& out);  // "}\n"

void append_string(std::string& out, std::string_view text);  // quoted and escaped

// Writes one finished line to stderr with a single write(2), so that lines from several
// threads never interleave. Synchronous: for startup and error lines, not the request path.
void write_stderr(std::string_view line);

}  // namespace keygate::core::json
