// PgConnection::connect: the DSN's host names resolved off the event loop
// (store/host_resolution.hpp) and passed to libpq as `hostaddr`, then libpq's non-blocking
// connect (PQconnectStartParams + PQconnectPoll), all within the one timeout.
#include "store/pg_connection.hpp"

#include <boost/asio/posix/stream_descriptor.hpp>

#include <algorithm>
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

// Every lookup is started at once, then each awaited in the DSN's order; a name is replaced
// by one entry per address. Names that do not resolve are left out; when nothing is left,
// the first one's reason is returned ("" when all is well).
asio::awaitable<std::string> resolve_hosts(PgDsn& dsn, PgDeadline deadline) {
  const auto entries = pg_hosts(dsn);
  if (!entries) co_return std::string();  // mismatched lists: libpq refuses them unresolved
  const bool any_name = std::any_of(entries->begin(), entries->end(), needs_lookup);
  if (!any_name) co_return std::string();
  for (const PgHost& entry : *entries) {
    if (needs_lookup(entry)) start_host_lookup(entry.host);
  }
  // Once an earlier host is usable, later names get until half time: one name that hangs in
  // a failover list does not use up the whole connect timeout.
  const auto half_time = SteadyClock::now() + (deadline - SteadyClock::now()) / 2;
  std::vector<PgHost> usable;
  std::string first_error;
  for (const PgHost& entry : *entries) {
    if (!needs_lookup(entry)) {
      usable.push_back(entry);
      continue;
    }
    const auto wait_until = usable.empty() ? deadline : std::min(deadline, half_time);
    const ResolvedHost resolved = co_await resolve_host(entry.host, wait_until);
    if (!resolved.ok() && first_error.empty()) first_error = resolved.error;
    for (const auto& address : resolved.addresses) usable.push_back(with_address(entry, address));
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
  if (!parsed) co_return fail(parse_error);
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
