#include "authz/request_path.hpp"

#include <algorithm>
#include <vector>

#include "core/hex.hpp"
#include "core/text.hpp"

namespace keygate::authz {
namespace {

constexpr std::string_view hex_digits = "0123456789ABCDEF";

bool is_control(unsigned char c) { return c < 0x20 || c == 0x7F; }

bool is_unreserved(unsigned char c) {
  const auto ch = static_cast<char>(c);
  return core::is_ascii_alpha(ch) || core::is_ascii_digit(ch) || c == '-' || c == '.' ||
         c == '_' || c == '~';
}

bool is_sub_delim(unsigned char c) {
  return std::string_view("!$&'()*+,;=").find(static_cast<char>(c)) != std::string_view::npos;
}

// RFC 3986 pchar minus '%' (handled apart), plus '/'.
bool may_appear_raw(unsigned char c) {
  return is_unreserved(c) || is_sub_delim(c) || c == ':' || c == '@' || c == '/';
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
    const int high = core::hex_digit_value(path[i + 1]);
    const int low = core::hex_digit_value(path[i + 2]);
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

bool is_ip_literal_char(char c) { return core::hex_digit_value(c) >= 0 || c == ':' || c == '.'; }

// reg-name: unreserved / pct-encoded / sub-delims, labels between dots non-empty (a final
// empty one, the root of a fully qualified name, aside).
bool is_valid_reg_name(std::string_view name) {
  if (name.empty() || name.front() == '.' || name.find("..") != std::string_view::npos) {
    return false;
  }
  for (std::size_t i = 0; i < name.size(); ++i) {
    const auto c = static_cast<unsigned char>(name[i]);
    if (c == '%') {
      if (i + 2 >= name.size() || core::hex_digit_value(name[i + 1]) < 0 || core::hex_digit_value(name[i + 2]) < 0) {
        return false;
      }
      i += 2;
    } else if (!is_unreserved(c) && !is_sub_delim(c)) {
      return false;
    }
  }
  return true;
}

// RFC 3986: port = *DIGIT, so "host:" is valid.
bool is_port(std::string_view port) {
  return std::all_of(port.begin(), port.end(), core::is_ascii_digit);
}

// "http://" or "https://" (any case) at the start of `target`: its length, else 0.
std::size_t http_scheme_length(std::string_view target) {
  for (std::string_view scheme : {std::string_view("http://"), std::string_view("https://")}) {
    if (core::iequals_ascii(target.substr(0, scheme.size()), scheme)) return scheme.size();
  }
  return 0;
}

}  // namespace

bool is_valid_authority(std::string_view authority) {
  std::string_view host = authority;
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos || close == 1) return false;
    host = authority.substr(1, close - 1);
    for (char c : host) {
      if (!is_ip_literal_char(c)) return false;
    }
    const std::string_view rest = authority.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') return false;
    port = rest.empty() ? rest : rest.substr(1);
    return is_port(port);
  }
  if (const std::size_t colon = authority.find(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  return is_valid_reg_name(host) && is_port(port);
}

std::optional<NormalizedTarget> normalize_target(std::string_view target, PathError* error) {
  const auto fail = [error](PathError why) -> std::optional<NormalizedTarget> {
    if (error != nullptr) *error = why;
    return std::nullopt;
  };
  if (target.size() > max_target_length) return fail(PathError::too_long);
  std::string_view authority;
  if (const std::size_t scheme = http_scheme_length(target); scheme > 0) {
    // absolute-form: the authority ends at the path, the query or a fragment
    const std::size_t end = std::min(target.find_first_of("/?#", scheme), target.size());
    authority = target.substr(scheme, end - scheme);
    if (!is_valid_authority(authority)) return fail(PathError::bad_authority);
    target.remove_prefix(end);
  }
  std::string empty_path_target;  // "http://host?q": the path is "/" (RFC 9112 3.2.1)
  if (!authority.empty() && (target.empty() || target.front() == '?')) {
    empty_path_target = "/";
    empty_path_target += target;
    target = empty_path_target;
  }
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
  NormalizedTarget normalized{remove_dot_segments(escaped), std::string(raw_query),
                              std::string(authority)};
  // %-encoding raw bytes can make the target three times longer: what is forwarded must stay
  // within what keygate (and so, likely, the upstream) accepts (tests/fuzz/request_head.cpp).
  const std::size_t forwarded =
      normalized.path.size() + (normalized.query.empty() ? 0 : 1 + normalized.query.size());
  if (forwarded > max_target_length) return fail(PathError::too_long);
  if (error != nullptr) *error = PathError::none;
  return normalized;
}

}  // namespace keygate::authz
