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

// Parsed once from config.yaml (and again on SIGHUP), shared read-only by every worker.
struct AuthorizerSettings {
  std::string pepper;  // non-empty: keys are hashed with HMAC-SHA-256
  RouteTable routes;
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
