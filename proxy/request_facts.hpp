#pragma once
// Internal to proxy/ (Beast fields in the interface): what the authorizer and the logging
// phase need to know about a request, read from its header once. Pure: no I/O.
#include <optional>
#include <string_view>

#include "authz/credential.hpp"
#include "authz/request_path.hpp"
#include "core/ip_network.hpp"
#include "proxy/exchange.hpp"

namespace keygate::proxy {

struct ProxyOptions;

struct RequestFacts {
  std::string_view method;                       // the request's, or X-Original-Method's
  std::optional<authz::NormalizedTarget> target;  // nullopt: the target is malformed (400)
  authz::PresentedKey credential;                 // every configured location, read
  core::IpAddress client_ip;
};

// Who sent the request: the socket peer, and whether it is one of trusted_proxies.
struct Peer {
  core::IpAddress address;
  bool trusted = false;
};

// In authz mode the method and URI are the original request's, from X-Original-Method /
// X-Original-URI (nginx) or X-Forwarded-Method / X-Forwarded-Uri (Traefik) — but only when
// the peer is a trusted proxy: anyone else's copies are ignored and the request is judged by
// its own method and target (Envoy's ext_authz sends those). X-Forwarded-For is believed as
// far as trusted proxies wrote it (authz/client_address.hpp).
RequestFacts describe_request(const Request& request, const ProxyOptions& options, const Peer& peer);

}  // namespace keygate::proxy
