#include "core/json_line.hpp"

#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>

#include "core/hex.hpp"
#include "core/time_format.hpp"
#include "core/utf8.hpp"

namespace keygate::core::json {


void append_string(std::string& out, std::string_view text) {
  out += '"';
  std::size_t i = 0;
  while (i < text.size()) {
    // Plain printable ASCII in runs: the common case, appended without per-byte checks.
    std::size_t run = i;
    while (run < text.size()) {
      const auto c = static_cast<unsigned char>(text[run]);
      if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') break;
      ++run;
    }
    out.append(text.data() + i, run - i);
    i = run;
    if (i == text.size()) break;
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
      ++i;
    } else if (c < 0x20 || c == 0x7f) {
      out += "\\u00";
      out += hex_digits[c >> 4];
      out += hex_digits[c & 0xf];
      ++i;
    } else if (const std::size_t n = utf8_sequence_length(text, i); n > 0) {
      out.append(text.data() + i, n);
      i += n;
    } else {
      out += "\\ufffd";
      ++i;
    }
  }
  out += '"';
}

void begin_line(std::string& out, std::string_view level, std::string_view msg) {
  out += "{\"ts\":\"";
  append_utc_micros(out, std::chrono::system_clock::now());
  out += "\",\"level\":";
  append_string(out, level);
  out += ",\"msg\":";
  append_string(out, msg);
}

void add(std::string& out, std::string_view name, std::string_view value) {
  out += ',';
  append_string(out, name);
  out += ':';
  append_string(out, value);
}

void add(std::string& out, std::string_view name, std::int64_t value) {
  out += ',';
  append_string(out, name);
  out += ':';
  char digits[24];
  const auto result = std::to_chars(digits, digits + sizeof digits, value);
  out.append(digits, result.ptr);
}

void add_null(std::string& out, std::string_view name) {
  out += ',';
  append_string(out, name);
  out += ":null";
}

void end_line(std::string& out) { out += "}\n"; }

void write_stderr(std::string_view line) {
  while (!line.empty()) {
    const ssize_t n = ::write(STDERR_FILENO, line.data(), line.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    line.remove_prefix(static_cast<std::size_t>(n));
  }
}

}  // namespace keygate::core::json
