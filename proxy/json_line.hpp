#pragma once
// Internal to proxy/ (and app/log): keygate's log line format, shared by the access log and
// the startup and error lines. One JSON object per line:
//   {"ts":"2025-01-31T12:00:00.123456Z","level":"info","msg":"request",<fields>}
// Strings are escaped so that every line is valid JSON whatever the input (bytes of 0x80 and
// above become \u00XX: the line stays ASCII).
#include <cstdint>
#include <string>
#include <string_view>

namespace keygate::proxy::json {

void begin_line(std::string& out, std::string_view level, std::string_view msg);
void add(std::string& out, std::string_view name, std::string_view value);
void add(std::string& out, std::string_view name, std::int64_t value);
void add_null(std::string& out, std::string_view name);
void end_line(std::string& out);  // "}\n"

void append_string(std::string& out, std::string_view text);  // quoted and escaped

// Writes one finished line to stderr with a single write(2), so that lines from several
// threads never interleave. Synchronous: for startup and error lines, not the request path.
void write_stderr(std::string_view line);

}  // namespace keygate::proxy::json
