#pragma once
// The authorizer of the data path. The steps, in order; the first that decides ends it:
//   1. route       the first route whose path and method match; a path some route matches
//                  with a method none lists: 405 method_not_allowed (with Allow); a path no
//                  route matches: routes_default (deny: 403 no_route; key: any valid key).
//                  A public route is allowed here, with no key.
//   2. credential  none: 401 missing_key; two different keys: 400 conflicting_keys; a bad
//                  format or checksum: 401 invalid_key (no I/O)
//   3. lookup      L1 -> Redis -> PostgreSQL by hash. Unknown: 401 invalid_key. No tier could
//                  answer: a store error that is always 503 (an unverified key never passes)
//   4. policy      active, not expired, client address, the route's scopes: 401/403
//   5. rate limit  429 rate_limited / quota_exceeded; Redis unreachable with
//                  rate_limit.on_redis_error: error is a store error for a verified key:
//                  on_store_error closed -> 503, open -> allowed (allowed_on_store_error)
// Only step 5 consults a limit, so only its answers carry RateLimit-* headers.
#include <memory>
#include <optional>
#include <string>

#include "authz/authorizer.hpp"
#include "core/duration.hpp"
#include "authz/routes.hpp"
#include "store/custom_schema.hpp"

namespace keygate::store {
class KeyLookup;
}

namespace keygate::authz {

class RateLimiter;

// What a path that no route matches needs (config: routes_default).
enum class RoutesDefault {
  deny,  // refused: 403 no_route (the default: only what a route names is let through)
  key,   // any valid key, with no scope
};

// What a store error answers (config: on_store_error). A store error is a lookup that no tier
// could answer, or a rate-limit check that could not reach Redis with
// rate_limit.on_redis_error: error.
enum class OnStoreError {
  closed,  // 503 store_unavailable (the default)
  open,    // the request passes, but only with a key that was verified (found in a cache or
           // PostgreSQL) and passed the policy: a key that could not be looked up is still 503
};

// Parsed once from config.yaml (and again on SIGHUP), shared read-only by every worker.
// Every member has a default, so designated initializers may name only some of them.
struct AuthorizerSettings {
  std::string pepper{};  // non-empty: keys are hashed with HMAC-SHA-256 (not changed by SIGHUP)
  RouteTable routes{};
  RoutesDefault routes_default = RoutesDefault::deny;
  OnStoreError on_store_error = OnStoreError::closed;
  // store.schema: custom: keys are the operator's own, checked by length and alphabet only.
  // Empty: keygate's format, checksum included.
  std::optional<store::KeyTextRule> key_text{};
};

class KeyAuthorizer final : public Authorizer {
 public:
  // `lookup` and `limiter` belong to the same worker as this authorizer.
  KeyAuthorizer(std::shared_ptr<const AuthorizerSettings> settings, store::KeyLookup& lookup,
                RateLimiter& limiter);
  boost::asio::awaitable<AuthResult> authorize(const AuthRequest& request) override;
  // SIGHUP: the settings for requests that start from now on (those in flight keep theirs).
  // Call on this authorizer's worker thread.
  void update_settings(std::shared_ptr<const AuthorizerSettings> settings) {
    settings_ = std::move(settings);
  }

 private:
  // Steps 1 and 2; each returns true when it decided `result`.
  static bool decide_route(const AuthorizerSettings& settings, const AuthRequest& request,
                           const RouteMatch& match, AuthResult& result);
  static bool check_credential(const AuthorizerSettings& settings, const AuthRequest& request,
                               AuthResult& result);
  // Step 3: sets result.key when found; true when it decided.
  boost::asio::awaitable<bool> look_up(const AuthorizerSettings& settings,
                                       std::string_view credential, AuthResult& result);
  // Step 5.
  boost::asio::awaitable<void> count_request(const AuthorizerSettings& settings,
                                             const Route* route, AuthResult& result);

  std::shared_ptr<const AuthorizerSettings> settings_;
  store::KeyLookup& lookup_;
  RateLimiter& limiter_;
};

}  // namespace keygate::authz
