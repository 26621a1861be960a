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

bool KeyAuthorizer::decide_route(const AuthorizerSettings& settings, const AuthRequest& request,
                                 const RouteMatch& match, AuthResult& result) {
  switch (match.kind) {
    case RouteMatch::Kind::method_not_allowed:
      result.decision = Decision::deny(DenyReason::method_not_allowed);
      result.allow = settings.routes.allowed_methods(request.path);
      return true;
    case RouteMatch::Kind::no_route:
      if (settings.routes_default == RoutesDefault::key) return false;
      result.decision = Decision::deny(DenyReason::no_route);
      return true;
    case RouteMatch::Kind::route:
      if (!match.route->is_public) return false;
      result.decision = Decision::allow();
      result.public_route = true;
      return true;
  }
  return true;  // unreachable; result.decision is still an error
}

bool KeyAuthorizer::check_credential(const AuthorizerSettings& settings, const AuthRequest& request,
                                     AuthResult& result) {
  switch (request.credential.kind) {
    case PresentedKey::Kind::none:
      result.decision = Decision::deny(DenyReason::missing_key);
      return true;
    case PresentedKey::Kind::conflicting:
      result.decision = Decision::deny(DenyReason::conflicting_keys);
      return true;
    case PresentedKey::Kind::one:
      if (settings.key_text ? store::key_text_allowed(request.credential.key, *settings.key_text)
                            : check_key_format(request.credential.key) == KeyFormat::valid) {
        return false;
      }
      result.decision = Decision::deny(DenyReason::invalid_key);
      return true;
  }
  return true;
}

boost::asio::awaitable<bool> KeyAuthorizer::look_up(const AuthorizerSettings& settings,
                                                    std::string_view credential,
                                                    AuthResult& result) {
  const store::KeyHash hash = hash_key(credential, settings.pepper);
  const store::LookupResult found = co_await lookup_.lookup(hash, credential);
  switch (found.status) {
    case store::LookupResult::Status::error:
      // Never verified: 503 whatever on_store_error says.
      result.decision = Decision::error(DenyReason::store_unavailable);
      result.rate.retry_after_seconds = 1;
      co_return true;
    case store::LookupResult::Status::not_found:
      result.decision = Decision::deny(DenyReason::invalid_key);
      co_return true;
    case store::LookupResult::Status::found:
      break;
  }
  // The stores matched on the hash already; this constant-time check keeps a cache bug from
  // ever turning into the wrong key's identity.
  if (!found.record || !hashes_equal(found.record->key_hash, hash)) {
    result.decision = Decision::deny(DenyReason::invalid_key);
    co_return true;
  }
  result.key = found.record;
  co_return false;
}

boost::asio::awaitable<void> KeyAuthorizer::count_request(const AuthorizerSettings& settings,
                                                          const Route* route, AuthResult& result) {
  const RateOutcome rate = co_await limiter_.check(*result.key, route);
  result.rate = rate.status;
  switch (rate.verdict) {
    case RateVerdict::allowed:
      result.decision = Decision::allow();
      break;
    case RateVerdict::rate_limited:
      result.decision = Decision::deny(DenyReason::rate_limited);
      break;
    case RateVerdict::quota_exceeded:
      result.decision = Decision::deny(DenyReason::quota_exceeded);
      break;
    case RateVerdict::unavailable:
      // A store error with a key that was verified and passed the policy: the one place where
      // on_store_error may let a request through.
      result.decision = settings.on_store_error == OnStoreError::open
                            ? Decision::allow_on_store_error()
                            : Decision::error(DenyReason::store_unavailable);
      break;
  }
}

boost::asio::awaitable<AuthResult> KeyAuthorizer::authorize(const AuthRequest& request) {
  AuthResult result;  // an error until a step decides
  // Held for the whole request: a reload may replace settings_ while this one is suspended,
  // and the matched route points into these settings.
  const std::shared_ptr<const AuthorizerSettings> settings = settings_;

  const RouteMatch match = settings->routes.match(request.method, request.path);
  if (decide_route(*settings, request, match, result)) co_return result;
  if (check_credential(*settings, request, result)) co_return result;
  const bool decided = co_await look_up(*settings, request.credential.key, result);
  if (decided) co_return result;

  result.decision = decide(*result.key, match.route, request.client_ip, store::Clock::now());
  if (!result.decision.allowed()) co_return result;  // refused before any limit: no RateLimit-*

  co_await count_request(*settings, match.route, result);
  co_return result;
}

}  // namespace keygate::authz
