#pragma once
// Internal to proxy/ (Beast via exchange.hpp): forwarding an allowed request to the upstream
// and its response back to the client, bodies streamed through one fixed buffer.
#include <string_view>

#include "authz/authorizer.hpp"
#include "authz/request_path.hpp"
#include "proxy/exchange.hpp"

namespace keygate::proxy {

struct ForwardPlan {
  const authz::AuthResult& result;
  const authz::NormalizedTarget& target;  // forwarded as path?query
};

// Sets x.status (0 when the client left) and x.fate; answers 502/504 (or 400/408/413 for a bad
// upload) itself. With hide_credentials, every configured credential location (each
// keys.headers field, the query parameter) is removed, whichever held the key.
asio::awaitable<void> forward(Exchange& x, const ForwardPlan& plan);

}  // namespace keygate::proxy
