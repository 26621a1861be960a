#pragma once
// The authorizer of the data path (see authz/authorizer.hpp for the steps and their order).
#include <memory>
#include <string>

#include "authz/authorizer.hpp"
#include "core/duration.hpp"
#include "authz/routes.hpp"

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
struct AuthorizerSettings {
  std::string pepper;  // non-empty: keys are hashed with HMAC-SHA-256 (not changed by SIGHUP)
  RouteTable routes;
  RoutesDefault routes_default = RoutesDefault::deny;
  OnStoreError on_store_error = OnStoreError::closed;
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
  std::shared_ptr<const AuthorizerSettings> settings_;
  store::KeyLookup& lookup_;
  RateLimiter& limiter_;
};

}  // namespace keygate::authz
