#include "core/log.hpp"

#include "core/json_line.hpp"

namespace keygate::core {

std::string format_log_line(std::string_view level, std::string_view msg,
                            std::initializer_list<LogField> fields) {
  std::string line;
  json::begin_line(line, level, msg);
  for (const LogField& field : fields) {
    if (field.is_number) {
      json::add(line, field.name, field.number);
    } else {
      json::add(line, field.name, field.value);
    }
  }
  json::end_line(line);
  return line;
}

void log(std::string_view level, std::string_view msg, std::initializer_list<LogField> fields) {
  json::write_stderr(format_log_line(level, msg, fields));
}

}  // namespace keygate::core
