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
  std::string_view credential_header;     // where the key came from (lower case); empty: none
  bool credential_in_query = false;
};

// Sets x.status (0 when the client left) and x.keep_alive; answers 502/504 (or 400/408/413
// for a bad upload) itself.
asio::awaitable<void> forward(Exchange& x, const ForwardPlan& plan);

}  // namespace keygate::proxy
