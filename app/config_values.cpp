// The plain value parsers: numbers, words, durations, names and files (see config_values.hpp).
#include "app/config_values.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "authz/leak_report.hpp"
#include "core/text.hpp"

namespace keygate::app::configuration {
namespace {

using core::is_ascii_alpha;
using core::is_ascii_digit;

bool is_lower_alpha(char c) { return c >= 'a' && c <= 'z'; }

// RFC 9110 9.1: the methods it defines, which are written in upper case.
constexpr std::string_view standard_methods[] = {"GET",     "HEAD",    "POST",  "PUT",  "DELETE",
                                                 "CONNECT", "OPTIONS", "TRACE", "PATCH"};

}  // namespace

void Origin::fail(std::string_view what) const {
  throw ConfigError(prefix_ + ": " + std::string(what));
}

std::string quoted(std::string_view text) {
  if (text.empty()) return "nothing";
  std::string out = "\"";
  for (char c : text) {
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (static_cast<unsigned char>(c) < 0x20) out += '?';
    else out += c;
  }
  return out + '"';
}

// The last '@' ends the user part, since an unencoded password may itself hold '@' or '/'.
std::string without_userinfo(std::string_view url) {
  const std::size_t scheme_end = url.find("://");
  const std::size_t start = scheme_end == std::string_view::npos ? 0 : scheme_end + 3;
  const std::size_t at = url.rfind('@');
  if (at == std::string_view::npos || at < start) return std::string(url);
  return std::string(url.substr(0, start)) + "***" + std::string(url.substr(at));
}

std::uint64_t whole_number(std::string_view text, std::uint64_t min, std::uint64_t max,
                           bool open_ended, const Origin& at) {
  std::uint64_t value = 0;
  const char* end = text.data() + text.size();
  const auto [stop, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc{} || stop != end || value < min || value > max) {
    const std::string range = open_ended ? "a whole number of at least " + std::to_string(min)
                                         : "a whole number from " + std::to_string(min) +
                                               " to " + std::to_string(max);
    at.fail("expected " + range + ", got " + quoted(text));
  }
  return value;
}

bool boolean(std::string_view text, const Origin& at) {
  const std::string word = core::to_lower_ascii(text);
  if (word == "true" || word == "yes" || word == "on") return true;
  if (word == "false" || word == "no" || word == "off") return false;
  at.fail("expected true or false, got " + quoted(text));
}

// "expected a, b or c, got ..." for messages listing the accepted words.
void fail_choice(std::span<const std::string_view> names, std::string_view text,
                 const Origin& at) {
  std::string expected;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i > 0) expected += (i + 1 == names.size()) ? " or " : ", ";
    expected += names[i];
  }
  at.fail("expected " + expected + ", got " + quoted(text));
}

authz::OnRedisError redis_error_policy(std::string_view text, const Origin& at) {
  if (text == "deny" || text == "allow") {
    at.fail("\"" + std::string(text) + "\" was replaced by on_redis_error: error together with "
            "on_store_error: " + (text == "deny" ? "closed" : "open"));
  }
  return choice(text, on_redis_error_choices, at);
}

Duration duration(std::string_view text, bool zero_allowed, const Origin& at) {
  const auto parsed = core::parse_duration(text);
  if (!parsed) at.fail("expected a duration like 30s, got " + quoted(text));
  if (!zero_allowed && parsed->count() == 0) at.fail("must be longer than 0s, got " + quoted(text));
  return *parsed;
}

core::RateLimitSpec rate_limit(std::string_view text, const Origin& at) {
  const auto spec = core::parse_rate_limit(text);
  if (!spec) at.fail("expected a rate limit like 100/60s, got " + quoted(text));
  return *spec;
}

unsigned thread_count(std::string_view text, const Origin& at) {
  if (text == "auto") return 0;
  std::uint64_t value = 0;
  const char* end = text.data() + text.size();
  const auto [stop, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc{} || stop != end || value < 1 || value > 256) {
    at.fail("expected auto or a whole number from 1 to 256, got " + quoted(text));
  }
  return static_cast<unsigned>(value);
}

std::string required(std::string_view text, const Origin& at) {
  if (text.empty()) at.fail("must not be empty");
  return std::string(text);
}

std::string scope_name(std::string_view text, const Origin& at) {
  if (text.empty() || text.size() > 128) at.fail("expected a scope of 1 to 128 characters");
  for (char c : text) {
    if (c <= ' ' || c > '~' || c == '"' || c == ',' || c == '\\') {
      at.fail("a scope is visible ASCII without quotes, commas or backslashes, got " + quoted(text));
    }
  }
  return std::string(text);
}

authz::LeakKeysParse read_leak_keys(const std::string& path) {
  authz::LeakKeysParse out;
  std::ifstream in(path, std::ios::binary);
  std::string document(authz::leak_keys_max_document_bytes + 1, '\0');
  in.read(document.data(), static_cast<std::streamsize>(document.size()));
  if (in.bad() || (!in.eof() && in.fail())) {
    out.error = "cannot read it";
    return out;
  }
  document.resize(static_cast<std::size_t>(in.gcount()));
  if (document.size() > authz::leak_keys_max_document_bytes) {
    out.error = "larger than 64 KiB";
    return out;
  }
  return authz::parse_leak_keys(document);
}

std::string leak_keys_file(std::string_view text, const Origin& at) {
  std::string path = readable_file(text, at);
  if (path.empty()) return path;
  const authz::LeakKeysParse parsed = read_leak_keys(path);
  if (!parsed.ok()) at.fail(quoted(path) + ": " + parsed.error);
  return path;
}

double share(std::string_view text, const Origin& at) {
  double value = 0;
  const char* end = text.data() + text.size();
  const auto [stop, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc{} || stop != end || !(value >= 0 && value <= 1)) {
    at.fail("expected a number from 0 to 1 like 0.01, got " + quoted(text));
  }
  return value;
}

// Keys look like <prefix>_<random><checksum>: the prefix must be a plain lower-case word.
std::string key_prefix(std::string_view text, const Origin& at) {
  const bool valid = !text.empty() && text.size() <= 32 && is_lower_alpha(text.front()) &&
                     !text.ends_with('_') &&
                     std::all_of(text.begin(), text.end(), [](char c) {
                       return is_lower_alpha(c) || is_ascii_digit(c) || c == '_';
                     });
  if (!valid) {
    at.fail("expected a lower-case word like kg_live (a-z first, then a-z 0-9 _, at most 32, "
            "not ending in _), got " + quoted(text));
  }
  return std::string(text);
}

std::string header_name(std::string_view text, const Origin& at) {
  if (!core::is_token(text)) {
    at.fail("expected an HTTP header name like x-api-key, got " + quoted(text));
  }
  return core::to_lower_ascii(text);
}

// "get" would never match a request (GET is what clients send), so it is a mistake, not a
// custom method; PURGE or M-SEARCH are taken as written.
std::string method_name(std::string_view text, const Origin& at) {
  if (!core::is_token(text)) at.fail("expected an HTTP method like GET, got " + quoted(text));
  for (std::string_view standard : standard_methods) {
    if (text != standard && core::iequals_ascii(text, standard)) {
      at.fail(quoted(text) + " is not a method: methods are case-sensitive; write " +
              std::string(standard));
    }
  }
  return std::string(text);
}

std::string query_parameter(std::string_view text, const Origin& at) {
  const bool valid = std::all_of(text.begin(), text.end(), [](char c) {
    return is_ascii_alpha(c) || is_ascii_digit(c) || c == '_' || c == '-' || c == '.' || c == '~';
  });
  if (!valid) {
    at.fail("expected a query parameter name like api_key (or nothing), got " + quoted(text));
  }
  return std::string(text);
}

std::string route_path(std::string_view text, const Origin& at) {
  if (!text.starts_with('/')) at.fail("expected a path starting with '/', got " + quoted(text));
  if (text.find_first_of(" \t#") != std::string_view::npos) {
    at.fail("expected a path without spaces or '#', got " + quoted(text));
  }
  return std::string(text);
}

// Checked here, not when the server starts, so that the message has the file and line.
std::string readable_file(std::string_view text, const Origin& at) {
  if (text.empty()) return {};
  const std::string path(text);
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) at.fail("cannot read " + quoted(path) + ": " + std::strerror(errno));
  char byte;
  const bool readable = std::fread(&byte, 1, 1, file) == 1;
  std::fclose(file);
  if (!readable) at.fail("cannot read " + quoted(path) + ": empty, or not a file");
  return path;
}

}  // namespace keygate::app::configuration
