#pragma once
// Taking the key out of a request: from a header value or from the query string. The results
// view into the caller's buffers (no allocation); they are only candidates — the key format
// check comes next.
#include <optional>
#include <string_view>

namespace keygate::authz {

// For "authorization": the token after the "Bearer" scheme (case-insensitive) and one or more
// spaces/tabs, trimmed; nullopt for another scheme ("Basic ...") or an empty token.
// For any other header name: the trimmed value; nullopt if empty.
std::optional<std::string_view> credential_from_header(std::string_view header_name_lower,
                                                       std::string_view value);

// The value of the first `parameter=` in a query string ("a=1&api_key=XYZ&b=2" -> "XYZ"),
// as sent (keys are base62 and '_', so never %-encoded); nullopt if absent or empty.
std::optional<std::string_view> credential_from_query(std::string_view query,
                                                      std::string_view parameter);

}  // namespace keygate::authz
