#include "authz/request_path.hpp"

#include <vector>

namespace keygate::authz {
namespace {

constexpr std::string_view hex_digits = "0123456789ABCDEF";

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool is_control(unsigned char c) { return c < 0x20 || c == 0x7F; }

bool is_unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

// RFC 3986 pchar minus '%' (handled apart), plus '/'.
bool may_appear_raw(unsigned char c) {
  constexpr std::string_view sub_delims_and_separators = "!$&'()*+,;=:@/";
  return is_unreserved(c) ||
         sub_delims_and_separators.find(static_cast<char>(c)) != std::string_view::npos;
}

void append_escape(std::string& out, unsigned char c) {
  out.push_back('%');
  out.push_back(hex_digits[c >> 4]);
  out.push_back(hex_digits[c & 0x0F]);
}

// Step 1: canonical escapes. Fails on the errors listed in the header.
PathError canonicalize_escapes(std::string_view path, std::string& out) {
  out.reserve(path.size());
  for (std::size_t i = 0; i < path.size(); ++i) {
    const auto c = static_cast<unsigned char>(path[i]);
    if (is_control(c)) return PathError::control_character;
    if (c == '\\') return PathError::encoded_separator;
    if (c != '%') {
      if (may_appear_raw(c)) {
        out.push_back(static_cast<char>(c));
      } else {
        append_escape(out, c);
      }
      continue;
    }
    if (i + 2 >= path.size()) {
      return PathError::bad_percent_encoding;
    }
    const int high = hex_value(path[i + 1]);
    const int low = hex_value(path[i + 2]);
    if (high < 0 || low < 0) return PathError::bad_percent_encoding;
    const auto decoded = static_cast<unsigned char>(high << 4 | low);
    if (decoded == '/' || decoded == '\\') return PathError::encoded_separator;
    if (decoded == 0) return PathError::control_character;
    if (is_unreserved(decoded)) {
      out.push_back(static_cast<char>(decoded));
    } else {
      append_escape(out, decoded);
    }
    i += 2;
  }
  return PathError::none;
}

// "." or ".." before any ';' parameters.
int dot_segment_kind(std::string_view segment) {
  const std::string_view name = segment.substr(0, segment.find(';'));
  if (name == ".") return 1;
  if (name == "..") return 2;
  return 0;
}

// Steps 2 and 3 on a path that starts with '/'.
std::string remove_dot_segments(std::string_view path) {
  std::vector<std::string_view> kept;
  bool trailing_slash = false;
  std::size_t start = 1;
  while (start <= path.size()) {
    std::size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    const std::string_view segment = path.substr(start, end - start);
    const bool last = end == path.size();
    const int dots = dot_segment_kind(segment);
    if (segment.empty() || dots != 0) {
      if (dots == 2 && !kept.empty()) kept.pop_back();
      // "/a/", "/a/." and "/a/b/.." all name a directory: keep its trailing '/'.
      if (last) trailing_slash = true;
    } else {
      kept.push_back(segment);
      if (last) trailing_slash = false;
    }
    start = end + 1;
  }
  std::string out;
  out.reserve(path.size());
  for (std::string_view segment : kept) {
    out.push_back('/');
    out.append(segment);
  }
  if (out.empty() || trailing_slash) out.push_back('/');
  return out;
}

}  // namespace

std::optional<NormalizedTarget> normalize_target(std::string_view target, PathError* error) {
  const auto fail = [error](PathError why) -> std::optional<NormalizedTarget> {
    if (error != nullptr) *error = why;
    return std::nullopt;
  };
  if (target.size() > max_target_length) return fail(PathError::too_long);
  if (target.empty() || target.front() != '/') return fail(PathError::not_origin_form);
  // A fragment never belongs in a request; refusing it avoids guessing what the upstream does.
  if (target.find('#') != std::string_view::npos) return fail(PathError::not_origin_form);

  const std::size_t question = target.find('?');
  const std::string_view raw_path = target.substr(0, question);
  const std::string_view raw_query =
      question == std::string_view::npos ? std::string_view() : target.substr(question + 1);
  for (char c : raw_query) {
    if (is_control(static_cast<unsigned char>(c))) return fail(PathError::control_character);
  }

  std::string escaped;
  if (const PathError why = canonicalize_escapes(raw_path, escaped); why != PathError::none) {
    return fail(why);
  }
  if (error != nullptr) *error = PathError::none;
  return NormalizedTarget{remove_dot_segments(escaped), std::string(raw_query)};
}

}  // namespace keygate::authz
