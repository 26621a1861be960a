#include "proxy/json_line.hpp"

#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <ctime>

namespace keygate::proxy::json {

namespace {

// "2025-01-31T12:00:00.123456Z"; the part up to the seconds is formatted once per second and
// thread.
void append_timestamp(std::string& out) {
  thread_local std::time_t cached_second = -1;
  thread_local char cached[24];
  const auto now = std::chrono::system_clock::now();
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch())
                      .count();
  const std::time_t second = static_cast<std::time_t>(us / 1000000);
  if (second != cached_second) {
    std::tm parts{};
    gmtime_r(&second, &parts);
    std::strftime(cached, sizeof cached, "%Y-%m-%dT%H:%M:%S", &parts);
    cached_second = second;
  }
  out += cached;
  char fraction[8];
  const auto micro = static_cast<unsigned>(us % 1000000);
  fraction[0] = '.';
  for (int i = 6, v = static_cast<int>(micro); i >= 1; --i, v /= 10) {
    fraction[i] = static_cast<char>('0' + v % 10);
  }
  out.append(fraction, 7);
  out += 'Z';
}

}  // namespace

void append_string(std::string& out, std::string_view text) {
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (byte < 0x20 || byte >= 0x7f) {
      out += "\\u00";
      out += hex[byte >> 4];
      out += hex[byte & 0xf];
    } else {
      out += c;
    }
  }
  out += '"';
}

void begin_line(std::string& out, std::string_view level, std::string_view msg) {
  out += "{\"ts\":\"";
  append_timestamp(out);
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

}  // namespace keygate::proxy::json
