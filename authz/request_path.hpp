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
  not_origin_form,       // neither origin-form nor http(s) absolute-form ("*", "host:80",
                         // "ftp://host/x"), or holds a '#'
  bad_authority,         // absolute-form whose authority is empty, invalid or has userinfo
  bad_percent_encoding,  // '%' not followed by two hex digits
  encoded_separator,     // %2F, %5C, or a raw '\' (which some servers treat as '/')
  control_character,     // raw bytes 0x00-0x1F, 0x7F (path or query), or %00
  too_long,              // over max_target_length
};

struct NormalizedTarget {
  std::string path;       // starts with '/'
  std::string query;      // without the '?'; may be empty
  std::string authority;  // absolute-form: its host[:port], the forwarded Host; else empty
};

// RFC 9110 7.2 / RFC 3986 3.2.2: uri-host [ ":" port ], without userinfo. uri-host is an IP
// literal in brackets (hex digits, ':' and '.') or a reg-name (unreserved, sub-delims,
// %-escapes) with no empty label but a final one ("a..b", ".a" and "." are refused, as nginx
// does). Both the Host header and an absolute-form target's authority must be one.
bool is_valid_authority(std::string_view authority);

// Origin-form ("/path?query") and absolute-form ("http://host/path?query", RFC 9112 3.2.2:
// a server MUST accept it; scheme http or https, any case; an empty path is "/").
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
