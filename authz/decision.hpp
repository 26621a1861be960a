#pragma once
// The outcome of authorizing one request, and how each outcome is answered over HTTP (the
// design's decision table). Knows nothing of transport: proxy/ turns it into a response.
#include <array>
#include <cstddef>
#include <string_view>

namespace keygate::authz {

// Why a request was refused (or, for store_unavailable with Outcome::allow, why it passed
// without a complete check: on_store_error: open).
enum class DenyReason {
  none,                // allowed
  missing_key,         // 401 + WWW-Authenticate: Bearer
  invalid_key,         // 401: malformed, bad checksum, or unknown
  expired_key,         // 401
  revoked_key,         // 401: revoked or inactive
  ip_not_allowed,      // 403
  insufficient_scope,  // 403
  no_route,            // 403: no route matches the path and routes_default is deny
  method_not_allowed,  // 405 + Allow: a route matches the path, none lists the method
  conflicting_keys,    // 400: two different keys in one request
  rate_limited,        // 429 + Retry-After
  quota_exceeded,      // 429
  store_unavailable,   // 503: a store error (on_store_error decides; see KeyAuthorizer)
  internal_error,      // 500: nothing decided (a bug); never an allow
};
inline constexpr auto last_deny_reason = DenyReason::internal_error;

// allow: forward. deny: the request (its key, route or method) is the reason. error: keygate
// could not decide. Error is first so that a Decision nobody set is an error, never an allow.
enum class Outcome { error, allow, deny };

struct Decision {
  Outcome outcome = Outcome::error;
  DenyReason reason = DenyReason::internal_error;

  static constexpr Decision allow() { return {Outcome::allow, DenyReason::none}; }
  // on_store_error: open let a verified key through a store error.
  static constexpr Decision allow_on_store_error() {
    return {Outcome::allow, DenyReason::store_unavailable};
  }
  static constexpr Decision deny(DenyReason why) { return {Outcome::deny, why}; }
  static constexpr Decision error(DenyReason why) { return {Outcome::error, why}; }
  constexpr bool allowed() const { return outcome == Outcome::allow; }
  friend constexpr bool operator==(const Decision&, const Decision&) = default;
};

// The status of a refusal for `reason`; 500 for none (a refusal without a reason is a bug).
constexpr int refusal_status(DenyReason reason) {
  switch (reason) {
    case DenyReason::missing_key:
    case DenyReason::invalid_key:
    case DenyReason::expired_key:
    case DenyReason::revoked_key: return 401;
    case DenyReason::ip_not_allowed:
    case DenyReason::insufficient_scope:
    case DenyReason::no_route: return 403;
    case DenyReason::method_not_allowed: return 405;
    case DenyReason::conflicting_keys: return 400;
    case DenyReason::rate_limited:
    case DenyReason::quota_exceeded: return 429;
    case DenyReason::store_unavailable: return 503;
    case DenyReason::none:
    case DenyReason::internal_error: return 500;
  }
  return 500;
}

// 200 only for an allow.
constexpr int http_status(const Decision& decision) {
  return decision.allowed() ? 200 : refusal_status(decision.reason);
}

// The "error" field of the JSON body.
constexpr std::string_view error_code(DenyReason reason) {
  switch (reason) {
    case DenyReason::missing_key: return "missing_key";
    case DenyReason::invalid_key: return "invalid_key";
    case DenyReason::expired_key: return "expired_key";
    case DenyReason::revoked_key: return "revoked_key";
    case DenyReason::ip_not_allowed: return "ip_not_allowed";
    case DenyReason::insufficient_scope: return "insufficient_scope";
    case DenyReason::no_route: return "no_route";
    case DenyReason::method_not_allowed: return "method_not_allowed";
    case DenyReason::conflicting_keys: return "conflicting_keys";
    case DenyReason::rate_limited: return "rate_limited";
    case DenyReason::quota_exceeded: return "quota_exceeded";
    case DenyReason::store_unavailable: return "store_unavailable";
    case DenyReason::none:
    case DenyReason::internal_error: return "internal_error";
  }
  return "internal_error";
}

// The "message" field: for people; never contains the key.
constexpr std::string_view error_message(DenyReason reason) {
  switch (reason) {
    case DenyReason::missing_key: return "an API key is required";
    case DenyReason::invalid_key: return "the API key is not valid";
    case DenyReason::expired_key: return "the API key has expired";
    case DenyReason::revoked_key: return "the API key has been revoked";
    case DenyReason::ip_not_allowed: return "the API key may not be used from this address";
    case DenyReason::insufficient_scope: return "the API key lacks a scope this route requires";
    case DenyReason::no_route: return "no route allows this path";
    case DenyReason::method_not_allowed: return "the route does not allow this method";
    case DenyReason::conflicting_keys: return "the request carries more than one API key";
    case DenyReason::rate_limited: return "rate limit exceeded";
    case DenyReason::quota_exceeded: return "the API key's quota is used up";
    case DenyReason::store_unavailable: return "the key store is unavailable; try again";
    case DenyReason::none:
    case DenyReason::internal_error: return "internal error";
  }
  return "internal error";
}

// The decision as metrics and the access log name it: "allowed", "allowed_on_store_error", or
// the error code. Counters are kept by decision_index (0 .. decision_label_count - 1).
inline constexpr std::size_t decision_label_count = static_cast<std::size_t>(last_deny_reason) + 2;
constexpr std::size_t decision_index(const Decision& decision) {
  if (decision.allowed()) return decision.reason == DenyReason::none ? 0 : 1;
  // A refusal without a reason is counted as the internal error it is.
  const DenyReason reason =
      decision.reason == DenyReason::none ? DenyReason::internal_error : decision.reason;
  return static_cast<std::size_t>(reason) + 1;
}
constexpr std::string_view decision_label(std::size_t index) {
  if (index == 0) return "allowed";
  if (index == 1) return "allowed_on_store_error";
  return error_code(static_cast<DenyReason>(index - 1));
}
constexpr std::string_view decision_label(const Decision& decision) {
  return decision_label(decision_index(decision));
}

}  // namespace keygate::authz
