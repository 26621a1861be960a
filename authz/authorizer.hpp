#pragma once
// The authorizer runs the steps of the data path in order for one request:
// route -> credential format -> key lookup (L1 -> Redis -> PostgreSQL) -> policy -> rate limit.
// proxy/ calls it once per request and turns the result into a forward or a rejection.
#include <boost/asio/awaitable.hpp>

#include <string>
#include <string_view>

#include "authz/credential.hpp"
#include "authz/decision.hpp"
#include "store/key_record.hpp"

namespace keygate::authz {

struct AuthRequest {
  std::string_view method;
  std::string_view path;  // normalized, without the query string
  core::IpAddress client_ip;
  PresentedKey credential;  // every configured location read (authz/credential.hpp)
};

// RateLimit-* header values for a keyed answer (IETF httpapi draft names).
struct RateLimitStatus {
  bool applies = false;  // false: send no RateLimit-* headers (no limit was consulted)
  long long limit = 0;
  long long remaining = 0;
  long long reset_seconds = 0;
  long long retry_after_seconds = 0;  // with rate_limited / quota_exceeded
};

struct AuthResult {
  Decision decision;        // an error until a step decides
  store::KeyRecordPtr key;  // set once the key was identified, also when denied by policy
  bool public_route = false;
  RateLimitStatus rate;     // applies only when the rate-limit step ran
  std::string allow;        // method_not_allowed: the Allow header's value
};

// One per worker thread (it owns that worker's L1 cache); not thread-safe.
class Authorizer {
 public:
  virtual ~Authorizer() = default;
  virtual boost::asio::awaitable<AuthResult> authorize(const AuthRequest& request) = 0;
};

}  // namespace keygate::authz
