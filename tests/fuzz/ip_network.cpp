// core/ip_network: an address or CIDR network parses to a value whose text form parses back to
// the same value; a network contains its own base address.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/ip_network.hpp"
#include "fuzz_check.hpp"

using keygate::core::IpAddress;
using keygate::core::IpNetwork;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (const auto address = IpAddress::parse(text)) {
    const auto again = IpAddress::parse(address->to_string());
    FUZZ_CHECK(again && *again == *address);
  }
  if (const auto network = IpNetwork::parse(text)) {
    FUZZ_CHECK(network->prefix_length <= (network->base.is_v4 ? 32 : 128));
    FUZZ_CHECK(network->contains(network->base));
    const auto again = IpNetwork::parse(network->to_string());
    FUZZ_CHECK(again && *again == *network);
  }
  return 0;
}
