#pragma once
// Which address a request comes from, for IP allowlists and usage records. X-Forwarded-For is
// only believed as far as it was written by proxies we trust; anything a client sends itself
// is ignored.
#include <string_view>
#include <vector>

#include "core/ip_network.hpp"

namespace keygate::authz {

// The socket peer, unless the peer is in `trusted_proxies`; then X-Forwarded-For (all of the
// request's XFF headers joined with ',') is walked from the right, skipping trusted addresses,
// and the first untrusted one is the client (the leftmost if all are trusted). An entry that
// does not parse as an address (or an empty one) stops the walk: the last good address wins,
// because whatever lies left of it was written by a party we cannot vouch for.
core::IpAddress client_address(const core::IpAddress& peer, std::string_view x_forwarded_for,
                                const std::vector<core::IpNetwork>& trusted_proxies);

}  // namespace keygate::authz
