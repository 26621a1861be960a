#pragma once
// Host names resolved off the event loop, for the Redis and PostgreSQL clients (hiredis and
// libpq would otherwise call a blocking getaddrinfo on a worker's loop).
//
// Each lookup runs getaddrinfo on a thread of its own, and concurrent calls for the same name
// share the lookup in flight: a name whose DNS server never answers costs one thread for as
// long as the C library waits (resolv.conf `timeout` x `attempts`), however often the clients
// retry meanwhile. Asio's resolver is not used: it runs every lookup of an io_context on one
// thread, so one hung name would queue every later lookup (PostgreSQL's behind Redis') and
// each retry behind it, and it cannot abandon a getaddrinfo in progress.
// Results are not cached here; every connect asks again (the C library, nscd or the DNS
// server cache what they cache), so a changed address is seen on the next reconnect.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/address.hpp>

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

namespace keygate::store {

struct ResolvedHost {
  std::vector<boost::asio::ip::address> addresses;  // the C library's order, no repeats
  std::string error;  // when there is none: one line naming the host, e.g. "could not resolve
                      // \"db.internal\": Name or service not known"
  bool ok() const { return !addresses.empty(); }
};

// An IPv4 or IPv6 address literal (which needs no lookup), e.g. "10.0.0.5", "::1", "fe80::1%lo".
bool is_ip_literal(std::string_view host);

// Starts resolving `name` in the background unless it is a literal or a lookup of it is already
// running; returns at once. For resolving several names at the same time before awaiting each.
void start_host_lookup(std::string_view name);

// The addresses of `name` (a literal gives itself, with no lookup), waiting at most until
// `deadline`. A lookup still running then keeps running for later callers; this call fails
// with "could not resolve \"name\": no answer within N ms". Cancellation (e.g. an
// awaitable operator ||) ends the wait at once, with an error result.
boost::asio::awaitable<ResolvedHost> resolve_host(std::string name,
                                                  std::chrono::steady_clock::time_point deadline);

}  // namespace keygate::store
