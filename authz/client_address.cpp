#include "authz/client_address.hpp"

#include <algorithm>

#include "core/text.hpp"

namespace keygate::authz {
namespace {

bool is_trusted(const core::IpAddress& address, const std::vector<core::IpNetwork>& trusted) {
  return std::any_of(trusted.begin(), trusted.end(), [&address](const core::IpNetwork& network) {
    return network.contains(address);
  });
}

}  // namespace

core::IpAddress client_address(const core::IpAddress& peer, std::string_view x_forwarded_for,
                                const std::vector<core::IpNetwork>& trusted_proxies) {
  core::IpAddress client = peer;
  if (!is_trusted(peer, trusted_proxies)) return client;
  std::string_view rest = x_forwarded_for;
  while (!core::trim_blanks(rest).empty()) {
    const std::size_t comma = rest.rfind(',');
    const std::string_view entry =
        core::trim_blanks(comma == std::string_view::npos ? rest : rest.substr(comma + 1));
    const auto address = core::IpAddress::parse(entry);
    if (!address) break;
    client = *address;
    if (!is_trusted(client, trusted_proxies) || comma == std::string_view::npos) break;
    rest = rest.substr(0, comma);
  }
  return client;
}

}  // namespace keygate::authz
