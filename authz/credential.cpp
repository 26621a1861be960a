#include "authz/credential.hpp"

#include "core/text.hpp"

namespace keygate::authz {
namespace {

std::optional<std::string_view> non_empty(std::string_view text) {
  if (text.empty()) return std::nullopt;
  return text;
}

}  // namespace

std::optional<std::string_view> credential_from_header(std::string_view header_name_lower,
                                                       std::string_view value) {
  value = core::trim_blanks(value);
  if (header_name_lower != "authorization") return non_empty(value);

  constexpr std::string_view scheme = "bearer";
  if (value.size() <= scheme.size() ||
      !core::iequals_ascii(value.substr(0, scheme.size()), scheme) ||
      !core::is_blank(value[scheme.size()])) {
    return std::nullopt;
  }
  return non_empty(core::trim_blanks(value.substr(scheme.size())));
}

void add_query_credentials(std::string_view query, std::string_view parameter,
                           PresentedKey& into) {
  if (parameter.empty()) return;
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    if (pair.size() > parameter.size() + 1 && pair.starts_with(parameter) &&
        pair[parameter.size()] == '=') {
      into.add(pair.substr(parameter.size() + 1));
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
}

}  // namespace keygate::authz
