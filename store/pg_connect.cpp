// PgConnection::connect: the DSN's host names resolved off the event loop
// (store/host_resolution.hpp) and passed to libpq as `hostaddr`, then libpq's non-blocking
// connect (PQconnectStartParams + PQconnectPoll), all within the one timeout.
#include "store/pg_connection.hpp"

#include <boost/asio/posix/stream_descriptor.hpp>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <utility>

#include "store/host_resolution.hpp"
#include "store/pg_dsn.hpp"
#include "store/pg_session.hpp"

namespace keygate::store {

namespace asio = boost::asio;
using namespace detail;
using SteadyClock = std::chrono::steady_clock;

namespace {

// libpq's environment defaults for the host list, made explicit: libpq would apply them after
// us, and resolve PGHOST itself. Not with a service file, which may name hosts of its own
// (libpq resolves those, blocking: they are not known here).
void apply_host_environment(PgDsn& dsn) {
  if (dsn.has("service") || std::getenv("PGSERVICE") != nullptr) return;
  const std::pair<const char*, const char*> defaults[] = {
      {"host", "PGHOST"}, {"hostaddr", "PGHOSTADDR"}, {"port", "PGPORT"}};
  for (const auto& [keyword, variable] : defaults) {
    const char* value = std::getenv(variable);
    if (!dsn.has(keyword) && value != nullptr && *value != '\0') dsn.set(keyword, value);
  }
}

PgHost with_address(const PgHost& entry, const asio::ip::address& address) {
  PgHost resolved = entry;
  resolved.hostaddr = address.to_string();
  return resolved;
}

// Every name's lookup is started at once; a name is then replaced by one entry per address.
// Names not resolved by half the time are left out when another host is usable (one name
// that hangs in a failover list does not use up the connect timeout); when none is, the rest
// get the whole time. Returns "" or, when no host is usable, the first name's reason.
asio::awaitable<std::string> resolve_hosts(PgDsn& dsn, PgDeadline deadline) {
  const auto entries = pg_hosts(dsn);
  if (!entries) co_return std::string();  // mismatched lists: libpq refuses them unresolved
  std::vector<std::optional<HostLookup>> lookups(entries->size());
  bool any_name = false;
  for (std::size_t i = 0; i < entries->size(); ++i) {
    if (needs_lookup((*entries)[i])) lookups[i].emplace((*entries)[i].host);
    any_name = any_name || lookups[i].has_value();
  }
  if (!any_name) co_return std::string();
  const auto half_time = SteadyClock::now() + (deadline - SteadyClock::now()) / 2;
  std::vector<ResolvedHost> resolved(entries->size());
  bool any_usable = false;
  const std::array<PgDeadline, 2> phases{half_time, deadline};
  for (const PgDeadline wait_until : phases) {
    for (std::size_t i = 0; i < entries->size(); ++i) {
      if (!lookups[i]) {
        any_usable = true;  // a literal or a socket: no lookup
      } else if (!resolved[i].ok()) {  // a failed lookup answers again at once
        resolved[i] = co_await lookups[i]->wait(wait_until);
        any_usable = any_usable || resolved[i].ok();
      }
    }
    if (any_usable) break;
  }
  std::vector<PgHost> usable;
  std::string first_error;
  for (std::size_t i = 0; i < entries->size(); ++i) {
    if (!lookups[i]) usable.push_back((*entries)[i]);
    if (lookups[i] && first_error.empty()) first_error = resolved[i].error;
    for (const auto& address : resolved[i].addresses) {
      usable.push_back(with_address((*entries)[i], address));
    }
  }
  if (usable.empty()) co_return first_error;
  set_pg_hosts(dsn, usable);
  co_return std::string();
}

// PQconnectStartParams' two null-terminated arrays, pointing into `dsn`.
struct ConnectParams {
  explicit ConnectParams(const PgDsn& dsn) {
    for (const auto& [keyword, value] : dsn.settings()) {
      keywords.push_back(keyword.c_str());
      values.push_back(value.c_str());
    }
    keywords.push_back(nullptr);
    values.push_back(nullptr);
  }
  std::vector<const char*> keywords;
  std::vector<const char*> values;
};

}  // namespace

asio::awaitable<PgResult> PgConnection::connect(std::string dsn, std::chrono::milliseconds timeout) {
  Impl& s = *impl_;
  const PgOperation operation(s, timeout);
  drop(s);
  s.notifications.clear();
  s.address = pg_address(dsn);
  std::string parse_error;
  std::optional<PgDsn> parsed = parse_pg_dsn(dsn, &parse_error);
  s.password = parsed ? parsed->value("password") : "";
  auto fail = [&](std::string reason) {
    auto message = scrub(s, "cannot reach PostgreSQL at " + s.address + ": " + reason);
    drop(s);
    return PgResult::failure(PgStatus::connection_error, std::move(message));
  };
  if (!parsed) {  // no address to name: pg_address would make one up from libpq's defaults
    drop(s);
    co_return PgResult::failure(PgStatus::connection_error,
                                "cannot reach PostgreSQL: malformed connection string: " + parse_error);
  }
  apply_host_environment(*parsed);
  const std::string unresolved = co_await resolve_hosts(*parsed, operation.deadline);
  if (!unresolved.empty()) co_return fail(unresolved);

  const ConnectParams params(*parsed);
  s.conn = PQconnectStartParams(params.keywords.data(), params.values.data(), 0);
  if (s.conn == nullptr) co_return fail("out of memory");
  if (PQstatus(s.conn) == CONNECTION_BAD) co_return fail(libpq_error(s));
  s.broken = false;
  PostgresPollingStatusType poll = PGRES_POLLING_WRITING;
  while (poll != PGRES_POLLING_OK) {
    if (poll == PGRES_POLLING_FAILED) co_return fail(libpq_error(s));
    if (!register_socket(s)) co_return fail("no socket");
    const PgReadiness r = co_await wait_socket(
        s, poll == PGRES_POLLING_READING ? asio::posix::descriptor_base::wait_read
                                         : asio::posix::descriptor_base::wait_write,
        operation.deadline);
    if (r == PgReadiness::timeout) {
      co_return fail("no answer within " + std::to_string(timeout.count()) + " ms");
    }
    if (r != PgReadiness::ready) co_return fail("socket wait failed");
    poll = PQconnectPoll(s.conn);
  }
  if (PQsetnonblocking(s.conn, 1) != 0) co_return fail(libpq_error(s));
  if (!register_socket(s)) co_return fail("no socket");
  co_return PgResult();
}

}  // namespace keygate::store
