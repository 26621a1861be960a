#pragma once
// The outcome of authorizing one request, and how each outcome is answered over HTTP
// (the design's decision table). Knows nothing of transport: proxy/ turns it into a response.
#include <string_view>

namespace keygate::authz {

enum class DenyReason {
  none,                // allowed
  missing_key,         // 401 + WWW-Authenticate: Bearer
  invalid_key,         // 401: malformed, bad checksum, or unknown
  expired_key,         // 401
  revoked_key,         // 401: revoked or inactive
  ip_not_allowed,      // 403
  insufficient_scope,  // 403
  rate_limited,        // 429 + Retry-After
  quota_exceeded,      // 429
  store_unavailable,   // 503: not cached and the stores are down (an error, not a denial)
};

// allow: forward. deny: the key (or its absence) is the reason. error: keygate could not decide
// (a store failure); kept apart from deny so that fail-open/closed is one explicit choice.
enum class Verdict { allow, deny, error };

struct Decision {
  Verdict verdict = Verdict::deny;
  DenyReason reason = DenyReason::none;

  static constexpr Decision allow() { return {Verdict::allow, DenyReason::none}; }
  static constexpr Decision deny(DenyReason why) { return {Verdict::deny, why}; }
  static constexpr Decision error(DenyReason why) { return {Verdict::error, why}; }
  bool allowed() const { return verdict == Verdict::allow; }
  friend constexpr bool operator==(const Decision&, const Decision&) = default;
};

constexpr int http_status(DenyReason reason) {
  switch (reason) {
    case DenyReason::none: return 200;
    case DenyReason::missing_key:
    case DenyReason::invalid_key:
    case DenyReason::expired_key:
    case DenyReason::revoked_key: return 401;
    case DenyReason::ip_not_allowed:
    case DenyReason::insufficient_scope: return 403;
    case DenyReason::rate_limited:
    case DenyReason::quota_exceeded: return 429;
    case DenyReason::store_unavailable: return 503;
  }
  return 500;
}

// The "error" field of the JSON body.
constexpr std::string_view error_code(DenyReason reason) {
  switch (reason) {
    case DenyReason::none: return "none";
    case DenyReason::missing_key: return "missing_key";
    case DenyReason::invalid_key: return "invalid_key";
    case DenyReason::expired_key: return "expired_key";
    case DenyReason::revoked_key: return "revoked_key";
    case DenyReason::ip_not_allowed: return "ip_not_allowed";
    case DenyReason::insufficient_scope: return "insufficient_scope";
    case DenyReason::rate_limited: return "rate_limited";
    case DenyReason::quota_exceeded: return "quota_exceeded";
    case DenyReason::store_unavailable: return "store_unavailable";
  }
  return "internal_error";
}

// The "message" field: for people; never contains the key.
constexpr std::string_view error_message(DenyReason reason) {
  switch (reason) {
    case DenyReason::none: return "allowed";
    case DenyReason::missing_key: return "an API key is required";
    case DenyReason::invalid_key: return "the API key is not valid";
    case DenyReason::expired_key: return "the API key has expired";
    case DenyReason::revoked_key: return "the API key has been revoked";
    case DenyReason::ip_not_allowed: return "the API key may not be used from this address";
    case DenyReason::insufficient_scope: return "the API key lacks a scope this route requires";
    case DenyReason::rate_limited: return "rate limit exceeded";
    case DenyReason::quota_exceeded: return "the API key's quota is used up";
    case DenyReason::store_unavailable: return "the key store is unavailable; try again";
  }
  return "internal error";
}

}  // namespace keygate::authz
