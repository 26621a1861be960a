#pragma once
// The key-management API's pure part (issue 14): what an admin token may do, and the bodies of
// POST /v1/keys and PATCH /v1/keys/{id} decoded into values the repository takes, or a 400
// naming the field. No I/O; Boost.JSON stays in the .cpp.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/duration.hpp"
#include "core/ip_network.hpp"
#include "core/time_format.hpp"
#include "store/key_record.hpp"

namespace keygate::api {

// A 400 answer: {"error":"invalid_request","message":...,"field":...}. `field` is a JSON path
// like "scopes[2]", or empty for the body as a whole.
struct FieldError {
  std::string field;
  std::string message;
};

// ---- who may call ----------------------------------------------------------------------------

inline constexpr std::string_view operator_scope = "admin:*";  // every key
inline constexpr std::string_view owner_scope = "admin:self";  // the keys of its own owner

enum class AdminRole { none, owner, operator_ };

struct Authority {
  AdminRole role = AdminRole::none;
  std::string owner_type;  // the caller key's owner (role owner: the only owner it may manage)
  std::string owner_id;
  std::vector<std::string> scopes;  // the caller key's own scopes
};

// What a verified key may do through the API: admin:* makes it an operator, admin:self an
// owner of its own keys, anything else nothing (answered 403).
Authority admin_authority(const store::KeyRecord& caller);

// The caller may see and change keys of this owner (an operator: any; an owner: its own).
bool may_manage(const Authority& authority, std::string_view owner_type, std::string_view owner_id);

// An owner token grants only scopes it holds itself, and never admin:* (an operator grants
// anything). The first scope it may not grant, as "scopes[i]", or nullopt.
std::optional<FieldError> check_grant(const Authority& authority, const std::vector<std::string>& scopes);

// ---- request bodies --------------------------------------------------------------------------

struct RequestRules {
  // Empty: any scope of 1-128 visible ASCII characters; else only these (and admin:*,
  // admin:self, which the API itself defines).
  std::vector<std::string> scope_vocabulary;
  std::size_t max_name = 200;
  std::size_t max_description = 1000;
  std::size_t max_metadata_bytes = 4096;  // the object, serialized
  std::size_t max_scopes = 64;
  std::size_t max_allowed_ips = 64;
};

struct CreateKeyRequest {
  std::optional<std::string> owner_type;  // absent: the caller's own owner (owner tokens)
  std::optional<std::string> owner_id;
  std::string name;
  std::optional<std::string> description;
  std::vector<std::string> scopes;
  std::vector<core::IpNetwork> allowed_ips;
  std::optional<core::RateLimitSpec> rate_limit;
  std::optional<std::int64_t> quota;
  std::optional<int> quota_period_seconds;
  std::optional<core::SystemTime> expires_at;  // from expires_at, or now + expires_in
  std::string metadata_json = "{}";
};

// Each field is absent (unchanged) or present; a present null clears what may be cleared.
struct KeyPatch {
  std::optional<std::string> name;
  std::optional<std::optional<std::string>> description;
  std::optional<std::vector<std::string>> scopes;
  std::optional<std::vector<core::IpNetwork>> allowed_ips;
  std::optional<std::optional<core::RateLimitSpec>> rate_limit;
  std::optional<std::optional<std::int64_t>> quota;
  std::optional<std::optional<int>> quota_period_seconds;
  std::optional<std::optional<core::SystemTime>> expires_at;
  std::optional<std::string> metadata_json;
  bool empty() const;
};

template <typename T>
struct Decoded {
  T value{};
  std::optional<FieldError> error;
  bool ok() const { return !error.has_value(); }
};

// The body of POST /v1/keys: a JSON object with "owner" ("type:id", optional), "name"
// (required), "description", "scopes", "allowed_ips", "rate_limit" ("100/60s"), "quota",
// "quota_period" ("30d"), "expires_at" (RFC 3339, in the future) or "expires_in" ("30d"),
// "metadata" (an object). Unknown fields and wrong types are errors naming the field.
Decoded<CreateKeyRequest> decode_create_key(std::string_view body, const RequestRules& rules,
                                            core::SystemTime now);

// The body of POST /v1/verify: {"key": "...", "method": "GET", "path": "/orders/1",
// "client_ip": "203.0.113.7"}; method defaults to GET, path to "/", client_ip to the caller's
// address. The key is checked as the proxy would check it for that request.
struct VerifyRequest {
  std::string key;
  std::string method = "GET";
  std::string path = "/";
  std::optional<core::IpAddress> client_ip;
};
Decoded<VerifyRequest> decode_verify(std::string_view body);

// The body of POST /v1/keys/{id}/rotate: {"grace": "24h"} (optional; default 24h, at most 30d).
Decoded<std::chrono::milliseconds> decode_rotate(std::string_view body);

// The body of PATCH /v1/keys/{id}: the same fields but owner (a key does not change owner),
// each optional; null clears description, rate_limit, quota, quota_period, expires_at. A
// patch that changes nothing is an error.
Decoded<KeyPatch> decode_key_patch(std::string_view body, const RequestRules& rules, core::SystemTime now);

}  // namespace keygate::api
