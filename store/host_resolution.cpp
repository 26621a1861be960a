#include "store/host_resolution.hpp"

#include <netdb.h>
#include <sys/socket.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <system_error>
#include <thread>
#include <unordered_map>

namespace keygate::store {

namespace asio = boost::asio;
using SteadyClock = std::chrono::steady_clock;

namespace {

// A coroutine waiting for a lookup: woken by cancelling its timer on its own executor.
struct Waiting {
  asio::any_io_executor executor;
  std::weak_ptr<asio::steady_timer> timer;
};

}  // namespace

// One getaddrinfo, shared by every caller asking for that name while it runs.
struct HostLookupState {
  std::mutex mutex;
  bool done = false;
  ResolvedHost result;
  std::list<Waiting> waiting;
};

namespace {

using Lookup = HostLookupState;

// The lookups in flight, by name. Never destroyed: a lookup thread may still be blocked in
// getaddrinfo when the process exits, and must find it intact.
struct Registry {
  std::mutex mutex;
  std::unordered_map<std::string, std::shared_ptr<Lookup>> in_flight;
};

Registry& registry() {
  static Registry* const instance = new Registry;
  return *instance;
}

ResolvedHost failure(std::string_view name, std::string_view reason) {
  ResolvedHost result;
  result.error = "could not resolve \"" + std::string(name) + "\": " + std::string(reason);
  return result;
}

// Runs on the lookup's own thread: the one place that may block.
ResolvedHost call_getaddrinfo(const std::string& name) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;  // one entry per address instead of one per socket type
  addrinfo* list = nullptr;
  const int rc = ::getaddrinfo(name.c_str(), nullptr, &hints, &list);
  if (rc != 0) {
    if (rc == EAI_SYSTEM) return failure(name, std::generic_category().message(errno));
    return failure(name, ::gai_strerror(rc));
  }
  ResolvedHost result;
  for (const addrinfo* entry = list; entry != nullptr; entry = entry->ai_next) {
    asio::ip::tcp::endpoint endpoint;
    if (entry->ai_addr == nullptr || entry->ai_addrlen > endpoint.capacity() ||
        (entry->ai_family != AF_INET && entry->ai_family != AF_INET6)) {
      continue;
    }
    std::memcpy(endpoint.data(), entry->ai_addr, entry->ai_addrlen);
    endpoint.resize(entry->ai_addrlen);
    const auto address = endpoint.address();
    if (std::find(result.addresses.begin(), result.addresses.end(), address) ==
        result.addresses.end()) {
      result.addresses.push_back(address);
    }
  }
  ::freeaddrinfo(list);
  if (result.addresses.empty()) return failure(name, "no IPv4 or IPv6 address");
  return result;
}

void finish(const std::string& name, const std::shared_ptr<Lookup>& lookup, ResolvedHost result) {
  {
    Registry& r = registry();
    std::lock_guard lock(r.mutex);
    const auto it = r.in_flight.find(name);
    if (it != r.in_flight.end() && it->second == lookup) r.in_flight.erase(it);
  }
  std::lock_guard lock(lookup->mutex);
  lookup->result = std::move(result);
  lookup->done = true;
  // Posted under the lock: a waiter that leaves (its coroutine ends, or its io_context shuts
  // down and destroys it) takes the lock first, so nothing is posted to it after it left.
  for (const Waiting& waiting : lookup->waiting) {
    asio::post(waiting.executor, [timer = waiting.timer] {
      if (const auto alive = timer.lock()) alive->cancel();
    });
  }
  lookup->waiting.clear();
}

std::shared_ptr<Lookup> lookup_for(std::string_view name) {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  auto [it, inserted] = r.in_flight.try_emplace(std::string(name));
  if (!inserted) return it->second;
  auto lookup = std::make_shared<Lookup>();
  it->second = lookup;
  try {
    std::thread([name = std::string(name), lookup] {
      finish(name, lookup, call_getaddrinfo(name));
    }).detach();
  } catch (const std::system_error& e) {
    r.in_flight.erase(it);
    lookup->result = failure(name, std::string("no thread for the lookup: ") + e.what());
    lookup->done = true;  // nobody else holds it yet: no lock needed
  }
  return lookup;
}

// A coroutine's registration with a lookup, from the first wait until it returns (or its frame
// is destroyed).
class LookupWait {
 public:
  LookupWait(std::shared_ptr<Lookup> lookup, const asio::any_io_executor& executor,
             const std::shared_ptr<asio::steady_timer>& timer)
      : lookup_(std::move(lookup)) {
    std::lock_guard lock(lookup_->mutex);
    if (!lookup_->done) {
      entry_ = lookup_->waiting.insert(lookup_->waiting.end(), Waiting{executor, timer});
    }
  }
  ~LookupWait() {
    std::lock_guard lock(lookup_->mutex);
    if (!lookup_->done && entry_) lookup_->waiting.erase(*entry_);  // done: the list was cleared
  }
  LookupWait(const LookupWait&) = delete;
  LookupWait& operator=(const LookupWait&) = delete;

  std::optional<ResolvedHost> result() const {
    std::lock_guard lock(lookup_->mutex);
    if (!lookup_->done) return std::nullopt;
    return lookup_->result;
  }

 private:
  std::shared_ptr<Lookup> lookup_;
  std::optional<std::list<Waiting>::iterator> entry_;
};

// A literal resolves to itself.
std::optional<ResolvedHost> literal_result(const std::string& host) {
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(host, ec);
  if (ec) return std::nullopt;
  ResolvedHost result;
  result.addresses.push_back(address);
  return result;
}

}  // namespace

bool is_ip_literal(std::string_view host) { return literal_result(std::string(host)).has_value(); }

HostLookup::HostLookup(std::string name)
    : name_(std::move(name)), started_(SteadyClock::now()) {
  if (auto literal = literal_result(name_)) {
    state_ = std::make_shared<Lookup>();
    state_->result = std::move(*literal);
    state_->done = true;
  } else {
    state_ = lookup_for(name_);
  }
}

bool HostLookup::done() const {
  std::lock_guard lock(state_->mutex);
  return state_->done;
}

asio::awaitable<ResolvedHost> HostLookup::wait(SteadyClock::time_point deadline) const {
  const auto executor = co_await asio::this_coro::executor;
  auto timer = std::make_shared<asio::steady_timer>(executor, deadline);
  const LookupWait wait(state_, executor, timer);
  for (;;) {
    if (auto result = wait.result()) co_return std::move(*result);
    if (SteadyClock::now() >= deadline) {
      const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(
          SteadyClock::now() - started_ + std::chrono::microseconds(500));
      co_return failure(name_, "no answer within " + std::to_string(waited.count()) + " ms");
    }
    auto [ec] = co_await timer->async_wait(asio::as_tuple(asio::use_awaitable));
    // Only the lookup's end cancels this timer; aborted with no result is our caller's cancel.
    if (ec == asio::error::operation_aborted && !wait.result()) {
      co_return failure(name_, "cancelled");
    }
  }
}

asio::awaitable<ResolvedHost> resolve_host(std::string name, SteadyClock::time_point deadline) {
  const HostLookup lookup(std::move(name));
  co_return co_await lookup.wait(deadline);
}

}  // namespace keygate::store
