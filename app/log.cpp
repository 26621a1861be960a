#include "app/log.hpp"

#include "proxy/json_line.hpp"

namespace keygate::app {

std::string format_log_line(std::string_view level, std::string_view msg,
                            std::initializer_list<LogField> fields) {
  std::string line;
  proxy::json::begin_line(line, level, msg);
  for (const LogField& field : fields) {
    if (field.is_number) {
      proxy::json::add(line, field.name, field.number);
    } else {
      proxy::json::add(line, field.name, field.value);
    }
  }
  proxy::json::end_line(line);
  return line;
}

void log(std::string_view level, std::string_view msg, std::initializer_list<LogField> fields) {
  proxy::json::write_stderr(format_log_line(level, msg, fields));
}

}  // namespace keygate::app
