#pragma once
// Internal to proxy/ (Beast via exchange.hpp): forwarding an allowed request to the upstream
// and its response back to the client, bodies streamed through one fixed buffer.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "authz/authorizer.hpp"
#include "authz/request_path.hpp"
#include "proxy/exchange.hpp"

namespace keygate::proxy {

struct ProxyOptions;

struct ForwardPlan {
  const authz::AuthResult& result;
  const authz::NormalizedTarget& target;  // forwarded as path?query
};

// Sets x.status (0 when the client left) and x.fate; answers 502/504 (or 400/408/413 for a bad
// upload) itself. With hide_credentials, every configured credential location (each
// keys.headers field, the query parameter) is removed, whichever held the key.
asio::awaitable<void> forward(Exchange& x, const ForwardPlan& plan);

// What prepare_upstream_request needs to know of the client connection and the request body.
struct UpstreamRequestContext {
  std::string_view peer_text;  // for X-Forwarded-For
  bool peer_trusted = false;
  bool tls = false;            // X-Forwarded-Proto
  bool chunked = false;        // what the parser saw of the body's framing
  std::optional<std::uint64_t> content_length;
};

// The request head as it goes to the upstream: hop-by-hop fields and client-sent identity
// headers out, the key's identity in, credentials out (hide_credentials), the normalized
// target, X-Forwarded-For/-Proto, the framing re-stated, HTTP/1.1. Pure: no I/O
// (tests/fuzz/request_head.cpp checks that what comes out always parses back).
void prepare_upstream_request(Request& request, const ForwardPlan& plan,
                              const UpstreamRequestContext& context, const ProxyOptions& options,
                              std::string& scratch);

}  // namespace keygate::proxy
