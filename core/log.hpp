#pragma once
// keygate's startup, reload and error lines: one JSON object per line on stderr, in the same
// format as the access log (core/json_line.hpp):
//   {"ts":"2025-01-31T12:00:00.123456Z","level":"info","msg":"keygate serving","listen":"..."}
// Synchronous (these lines are rare); never pass a key, a DSN or a credential header here.
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <type_traits>

namespace keygate::core {

struct LogField {
  LogField(std::string_view field_name, std::string_view text) : name(field_name), value(text) {}
  LogField(std::string_view field_name, const char* text) : name(field_name), value(text) {}
  LogField(std::string_view field_name, const std::string& text) : name(field_name), value(text) {}
  template <typename Number, typename = std::enable_if_t<std::is_integral_v<Number>>>
  LogField(std::string_view field_name, Number n)
      : name(field_name), number(static_cast<std::int64_t>(n)), is_number(true) {}

  std::string_view name;
  std::string_view value;
  std::int64_t number = 0;
  bool is_number = false;
};

// The line as text (ends in '\n'); log() writes it.
std::string format_log_line(std::string_view level, std::string_view msg,
                            std::initializer_list<LogField> fields = {});
void log(std::string_view level, std::string_view msg, std::initializer_list<LogField> fields = {});

inline void log_info(std::string_view msg, std::initializer_list<LogField> fields = {}) {
  log("info", msg, fields);
}
inline void log_warn(std::string_view msg, std::initializer_list<LogField> fields = {}) {
  log("warn", msg, fields);
}
inline void log_error(std::string_view msg, std::initializer_list<LogField> fields = {}) {
  log("error", msg, fields);
}

}  // namespace keygate::core
