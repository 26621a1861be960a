#include "store/pg_text.hpp"

#include <span>

#include "core/hex.hpp"
#include "core/text.hpp"

namespace keygate::store {

std::string hide_secret(std::string message, std::string_view secret) {
  constexpr std::string_view with = "***";
  if (secret.empty()) return message;
  for (std::size_t at = message.find(secret); at != std::string::npos;
       at = message.find(secret, at + with.size())) {
    message.replace(at, secret.size(), with);
  }
  return message;
}

std::string hide_quoted_parts(std::string_view message, std::string_view dsn) {
  constexpr std::string_view hidden = "\"***\"";
  const std::size_t first = message.find('"');
  if (first == std::string_view::npos) return std::string(message);
  if (dsn.find('"') != std::string_view::npos) {
    const std::size_t last = message.rfind('"');
    return std::string(message.substr(0, first)) + std::string(hidden) +
           std::string(last > first ? message.substr(last + 1) : std::string_view());
  }
  std::string out(message.substr(0, first));
  std::size_t open = first;
  while (open != std::string_view::npos) {
    const std::size_t close = message.find('"', open + 1);
    if (close == std::string_view::npos) {  // unpaired: the rest may be the string's
      out += hidden;
      return out;
    }
    const std::string_view inside = message.substr(open + 1, close - open - 1);
    const bool format_literal = inside == "=" || inside == "]" || inside == ":" || inside == "/";
    out += format_literal ? message.substr(open, close - open + 1) : hidden;
    open = message.find('"', close + 1);
    out += message.substr(close + 1, (open == std::string_view::npos ? message.size() : open) - close - 1);
  }
  return out;
}

std::string one_line_reason(std::string_view libpq_message) {
  std::string line(libpq_message.substr(0, libpq_message.find('\n')));
  while (!line.empty() && (core::is_blank(line.back()) || line.back() == '\r')) line.pop_back();
  // "connection to server at "127.0.0.1", port 5999 failed: Connection refused" -> the reason.
  if (line.starts_with("connection to server")) {
    if (auto at = line.find(" failed: "); at != std::string::npos) line.erase(0, at + 9);
  }
  for (std::string_view level : {"FATAL:  ", "ERROR:  "}) {
    if (line.starts_with(level)) line.erase(0, level.size());
  }
  // "Connection refused" -> "connection refused", but "SSL ..." stays.
  if (line.size() > 1 && line[0] >= 'A' && line[0] <= 'Z' && line[1] >= 'a' && line[1] <= 'z') {
    line[0] = core::ascii_lower(line[0]);
  }
  return line.empty() ? "unknown error" : line;
}

std::optional<std::vector<std::optional<std::string>>> parse_pg_array(std::string_view text) {
  // Optional dimension decoration for non-default bounds: "[0:1]={a,b}".
  if (!text.empty() && text.front() == '[') {
    const auto eq = text.find('=');
    if (eq == std::string_view::npos) return std::nullopt;
    text.remove_prefix(eq + 1);
  }
  if (text.size() < 2 || text.front() != '{' || text.back() != '}') return std::nullopt;
  std::vector<std::optional<std::string>> elements;
  std::size_t i = 1;
  const std::size_t end = text.size() - 1;
  if (i == end) return elements;
  for (;;) {
    while (i < end && text[i] == ' ') ++i;
    if (i >= end) return std::nullopt;  // missing element
    std::string value;
    bool quoted = false;
    if (text[i] == '{') return std::nullopt;  // nested: not a one-dimensional array
    if (text[i] == '"') {
      quoted = true;
      ++i;
      for (;;) {
        if (i >= end) return std::nullopt;  // unterminated quote
        const char c = text[i++];
        if (c == '"') break;
        if (c == '\\') {
          if (i >= end) return std::nullopt;
          value += text[i++];
        } else {
          value += c;
        }
      }
      while (i < end && text[i] == ' ') ++i;
    } else {
      while (i < end && text[i] != ',') {
        const char c = text[i++];
        if (c == '"' || c == '{' || c == '}') return std::nullopt;
        if (c == '\\') {
          if (i >= end) return std::nullopt;
          value += text[i++];
        } else {
          value += c;
        }
      }
      while (!value.empty() && value.back() == ' ') value.pop_back();
      if (value.empty()) return std::nullopt;
    }
    const bool is_null = !quoted && core::iequals_ascii(value, "NULL");
    if (is_null) elements.emplace_back(std::nullopt);
    else elements.emplace_back(std::move(value));
    if (i == end) return elements;
    if (text[i] != ',') return std::nullopt;
    ++i;
  }
}

std::string format_pg_array(const std::vector<std::string>& elements) {
  std::string out = "{";
  for (std::size_t i = 0; i < elements.size(); ++i) {
    if (i != 0) out += ',';
    out += '"';
    for (const char c : elements[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  out += '}';
  return out;
}

std::optional<std::vector<std::uint8_t>> parse_pg_bytea(std::string_view text) {
  if (!text.starts_with("\\x")) return std::nullopt;
  return core::decode_hex(text.substr(2));
}

std::string format_pg_bytea(const std::uint8_t* data, std::size_t size) {
  std::string out = "\\x";
  core::append_hex(out, std::span<const std::uint8_t>(data, size));
  return out;
}

}  // namespace keygate::store
