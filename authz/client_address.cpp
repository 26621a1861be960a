#include "authz/client_address.hpp"

#include <algorithm>

namespace keygate::authz {
namespace {

bool is_trusted(const store::IpAddress& address, const std::vector<store::IpNetwork>& trusted) {
  return std::any_of(trusted.begin(), trusted.end(), [&address](const store::IpNetwork& network) {
    return network.contains(address);
  });
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

}  // namespace

store::IpAddress client_address(const store::IpAddress& peer, std::string_view x_forwarded_for,
                                const std::vector<store::IpNetwork>& trusted_proxies) {
  store::IpAddress client = peer;
  if (!is_trusted(peer, trusted_proxies)) return client;
  std::string_view rest = x_forwarded_for;
  while (!trim(rest).empty()) {
    const std::size_t comma = rest.rfind(',');
    const std::string_view entry =
        trim(comma == std::string_view::npos ? rest : rest.substr(comma + 1));
    const auto address = store::IpAddress::parse(entry);
    if (!address) break;
    client = *address;
    if (!is_trusted(client, trusted_proxies) || comma == std::string_view::npos) break;
    rest = rest.substr(0, comma);
  }
  return client;
}

}  // namespace keygate::authz
