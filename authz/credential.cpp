#include "authz/credential.hpp"

namespace keygate::authz {
namespace {

bool is_blank(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view text) {
  while (!text.empty() && is_blank(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_blank(text.back())) text.remove_suffix(1);
  return text;
}

bool equals_ignoring_case(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

std::optional<std::string_view> non_empty(std::string_view text) {
  if (text.empty()) return std::nullopt;
  return text;
}

}  // namespace

std::optional<std::string_view> credential_from_header(std::string_view header_name_lower,
                                                       std::string_view value) {
  value = trim(value);
  if (header_name_lower != "authorization") return non_empty(value);

  constexpr std::string_view scheme = "bearer";
  if (value.size() <= scheme.size() ||
      !equals_ignoring_case(value.substr(0, scheme.size()), scheme) ||
      !is_blank(value[scheme.size()])) {
    return std::nullopt;
  }
  return non_empty(trim(value.substr(scheme.size())));
}

std::optional<std::string_view> credential_from_query(std::string_view query,
                                                      std::string_view parameter) {
  if (parameter.empty()) return std::nullopt;
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    if (pair.size() > parameter.size() && pair.starts_with(parameter) &&
        pair[parameter.size()] == '=') {
      return non_empty(pair.substr(parameter.size() + 1));
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

}  // namespace keygate::authz
