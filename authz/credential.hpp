#pragma once
// Taking the key out of a request: from every configured header and, when enabled, the query
// string. The results view into the caller's buffers (no allocation); they are only
// candidates — the key format check comes next. Every location is read, not only the first
// that holds something: a request that presents two different keys is refused (an upstream
// must never receive a credential keygate did not check).
#include <optional>
#include <string_view>

namespace keygate::authz {

// For "authorization": the token after the "Bearer" scheme (case-insensitive) and one or more
// spaces/tabs, trimmed; nullopt for another scheme ("Basic ...") or an empty token.
// For any other header name: the trimmed value; nullopt if empty.
std::optional<std::string_view> credential_from_header(std::string_view header_name_lower,
                                                       std::string_view value);

// What a request presents, once every location was read.
struct PresentedKey {
  enum class Kind { none, one, conflicting };
  Kind kind = Kind::none;
  std::string_view key;  // Kind::one: the key (sent once, or the same key in several places)

  void add(std::string_view candidate) {
    if (kind == Kind::none) {
      kind = Kind::one;
      key = candidate;
    } else if (kind == Kind::one && candidate != key) {
      kind = Kind::conflicting;
      key = {};
    }
  }
};

// Every non-empty `parameter=` value in a query string ("a=1&api_key=XYZ&b=2" -> "XYZ"), as
// sent (keys are base62 and '_', so never %-encoded), added to `into`.
void add_query_credentials(std::string_view query, std::string_view parameter,
                           PresentedKey& into);

}  // namespace keygate::authz
