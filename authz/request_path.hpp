#pragma once
// The request target in one canonical form. keygate matches routes on this path AND forwards
// this same path, so keygate and the upstream can never disagree about which resource was
// asked for ("/public/../admin", "/public/%2e%2e/admin", "//admin" all become "/admin").
#include <optional>
#include <string>
#include <string_view>

namespace keygate::authz {

inline constexpr std::size_t max_target_length = 8 * 1024;

enum class PathError {
  none,
  not_origin_form,       // does not start with '/' ("*", "http://host/x"), or holds a '#'
  bad_percent_encoding,  // '%' not followed by two hex digits
  encoded_separator,     // %2F, %5C, or a raw '\' (which some servers treat as '/')
  control_character,     // raw bytes 0x00-0x1F, 0x7F (path or query), or %00
  too_long,              // over max_target_length
};

struct NormalizedTarget {
  std::string path;   // starts with '/'
  std::string query;  // without the '?'; may be empty
};

// The path is normalized in this order:
// 1. %-escapes of unreserved characters (ALPHA DIGIT - . _ ~) are decoded, the hex digits of
//    all other escapes are upper-cased; bytes that may not appear raw in a path (space, '"',
//    '<', '>', '[', ']', '^', '`', '{', '|', '}', non-ASCII) are %-encoded.
// 2. Repeated '/' are merged.
// 3. Dot segments are removed (RFC 3986 5.2.4); ".." never climbs above "/". A segment whose
//    part before ';' is "." or ".." also counts (Tomcat reads "/..;/" as "/../").
// The query is kept as sent (only control characters are refused).
std::optional<NormalizedTarget> normalize_target(std::string_view target,
                                                 PathError* error = nullptr);

}  // namespace keygate::authz
