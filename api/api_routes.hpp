#pragma once
// The key-management API's routes: which handler a method and path name, or the 404 / 405
// (with Allow) that answers them. Pure.
#include <string>
#include <string_view>

namespace keygate::api {

enum class Endpoint {
  openapi,      // GET  /v1/openapi.json (no token)
  verify,       // POST /v1/verify (no token: the key checked is the credential)
  keys,         // GET /v1/keys, POST /v1/keys
  key,          // GET, PATCH, DELETE /v1/keys/{id}
  key_revoke,   // POST /v1/keys/{id}/revoke
  key_rotate,   // POST /v1/keys/{id}/rotate
  key_usage,    // GET /v1/keys/{id}/usage
  audit,        // GET /v1/audit (operators)
  leaks,        // POST /v1/leaks (no token: the report is signed by the secret scanner)
  not_found,
};

inline constexpr std::size_t endpoint_count = static_cast<std::size_t>(Endpoint::not_found) + 1;

struct RouteMatch {
  Endpoint endpoint = Endpoint::not_found;
  std::string id;               // {id}, as sent (the repository answers not found for a non-uuid)
  bool method_allowed = false;  // false with a known endpoint: 405
  std::string_view allow;       // the Allow header for 405
};

// `path` without the query string. A trailing slash is not the same path (404).
RouteMatch match_route(std::string_view method, std::string_view path);

}  // namespace keygate::api
