#pragma once
// An Asio address as keygate's IpAddress (IPv4 as ::ffff:a.b.c.d), for the policy's checks.
#include <boost/asio/ip/address.hpp>

#include "core/ip_network.hpp"

namespace keygate::proxy {

core::IpAddress to_ip_address(const boost::asio::ip::address& address);

}  // namespace keygate::proxy
