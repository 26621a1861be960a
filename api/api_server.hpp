#pragma once
// The key-management API's listener (api_listen; issue 14): JSON over HTTP/1.1 on one executor
// (the main worker's), with the admin token checked on every call but /v1/openapi.json and
// /v1/verify. Not on the request path: plain Beast idioms, bounded (16 KiB of headers, 64 KiB
// of body, 10 s per read or write).
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <functional>
#include <memory>
#include <string>

#include "api/key_request.hpp"

namespace boost::asio::ssl {
class context;
}
namespace keygate::authz {
class Authorizer;
class LeakKeys;
}
namespace keygate::store {
class KeyRepository;
class PgPool;
}

namespace keygate::api {

struct ApiServices {
  store::KeyRepository* repository = nullptr;  // on the listener's executor: the admin token's lookup
  store::PgPool* pool = nullptr;               // its pool: each call's owner-scoped transaction
  authz::Authorizer* verifier = nullptr;       // POST /v1/verify: the same executor's authorizer
  std::string key_prefix;                      // of new keys
  std::string pepper;
  RequestRules rules;
  const authz::LeakKeys* leak_keys = nullptr;  // POST /v1/leaks; null: off (404)
  bool leak_action_revoke = true;              // else flag (leaked_at)
  // The listener's TLS context for each new connection (the proxy's, reloaded with it); null,
  // or no function: plain HTTP.
  std::function<std::shared_ptr<boost::asio::ssl::context>()> tls_context;
};

// Accepts until the acceptor is closed; each connection is served on the acceptor's executor.
// `services` must outlive the loop.
boost::asio::awaitable<void> serve_api(boost::asio::ip::tcp::acceptor& acceptor, const ApiServices& services);

// The OpenAPI 3.1 document of the routes above (served at /v1/openapi.json).
std::string_view openapi_document();

}  // namespace keygate::api
