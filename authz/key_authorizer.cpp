#include "authz/key_authorizer.hpp"

#include "authz/key_format.hpp"
#include "authz/key_hash.hpp"
#include "authz/policy.hpp"
#include "authz/rate_limiter.hpp"
#include "store/key_lookup.hpp"

namespace keygate::authz {

KeyAuthorizer::KeyAuthorizer(std::shared_ptr<const AuthorizerSettings> settings,
                             store::KeyLookup& lookup, RateLimiter& limiter)
    : settings_(std::move(settings)), lookup_(lookup), limiter_(limiter) {}

boost::asio::awaitable<AuthResult> KeyAuthorizer::authorize(const AuthRequest& request) {
  AuthResult result;
  // Held for the whole request: a reload may replace settings_ while this one is suspended,
  // and `route` points into these settings.
  const std::shared_ptr<const AuthorizerSettings> settings = settings_;
  const Route* route = settings->routes.match(request.method, request.path);
  if (route != nullptr && route->is_public) {
    result.decision = Decision::allow();
    result.public_route = true;
    co_return result;
  }

  // 1. Credential: present and well-formed, checked with no I/O.
  if (!request.credential) {
    result.decision = Decision::deny(DenyReason::missing_key);
    co_return result;
  }
  if (check_key_format(*request.credential) != KeyFormat::valid) {
    result.decision = Decision::deny(DenyReason::invalid_key);
    co_return result;
  }

  // 2. Lookup: L1 -> Redis -> PostgreSQL.
  const store::KeyHash hash = hash_key(*request.credential, settings->pepper);
  const store::LookupResult found = co_await lookup_.lookup(hash);
  switch (found.status) {
    case store::LookupResult::Status::error:
      result.decision = Decision::error(DenyReason::store_unavailable);
      result.rate.retry_after_seconds = 1;
      co_return result;
    case store::LookupResult::Status::not_found:
      result.decision = Decision::deny(DenyReason::invalid_key);
      co_return result;
    case store::LookupResult::Status::found:
      break;
  }
  // The stores matched on the hash already; this constant-time check keeps a cache bug from
  // ever turning into the wrong key's identity.
  if (!hashes_equal(found.record->key_hash, hash)) {
    result.decision = Decision::deny(DenyReason::invalid_key);
    co_return result;
  }
  result.key = found.record;

  // 3. Policy: active, not revoked or expired, address allowed, scopes for the route.
  result.decision = decide(*found.record, route, request.client_ip, store::Clock::now());
  if (!result.decision.allowed()) {
    result.rate = limiter_.peek(*found.record, route);  // RateLimit-* on every keyed answer
    co_return result;
  }

  // 4. Rate limit: counted only for requests that would otherwise pass.
  const RateOutcome rate = co_await limiter_.check(*found.record, route);
  result.rate = rate.status;
  switch (rate.verdict) {
    case RateVerdict::allowed: break;
    case RateVerdict::rate_limited: result.decision = Decision::deny(DenyReason::rate_limited); break;
    case RateVerdict::quota_exceeded: result.decision = Decision::deny(DenyReason::quota_exceeded); break;
    case RateVerdict::unavailable:
      // A store error with a key that was verified and passed the policy: the one place where
      // on_store_error may let a request through.
      result.decision = settings->on_store_error == OnStoreError::open
                            ? Decision::allow()
                            : Decision::error(DenyReason::store_unavailable);
      break;
  }
  co_return result;
}

}  // namespace keygate::authz
