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
#include <memory>
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

struct HostLookupState;  // host_resolution.cpp

// One name being resolved: constructing it starts the lookup in the background (or joins the
// one in flight for that name) and returns at once; a literal is resolved on the spot. The
// result, once there, stays with this object: construct several to resolve names at the same
// time, then wait for each.
class HostLookup {
 public:
  explicit HostLookup(std::string name);

  const std::string& name() const { return name_; }
  bool done() const;
  // The result, waiting at most until `deadline`. Not done by then: an error result
  // ("could not resolve \"name\": no answer within N ms", N counted from this object's
  // construction) and the lookup goes on, for a later wait. Cancellation (e.g. by an
  // awaitable operator ||) ends the wait at once, with an error result.
  boost::asio::awaitable<ResolvedHost> wait(std::chrono::steady_clock::time_point deadline) const;

 private:
  std::string name_;
  std::chrono::steady_clock::time_point started_;
  std::shared_ptr<HostLookupState> state_;
};

// HostLookup(name).wait(deadline).
boost::asio::awaitable<ResolvedHost> resolve_host(std::string name,
                                                  std::chrono::steady_clock::time_point deadline);

}  // namespace keygate::store
