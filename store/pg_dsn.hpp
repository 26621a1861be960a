#pragma once
// A PostgreSQL connection string (a URI or key=value words, as libpq reads them) taken apart,
// so that its host names can be resolved off the event loop before libpq sees them (libpq would
// call a blocking getaddrinfo), and put back together with the addresses as `hostaddr`. `host`
// stays as given: libpq still uses it for TLS verification, Kerberos and the password file.
// Pure: parsing uses libpq's own parser (PQconninfoParse), which does no I/O.
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace keygate::store {

// The settings a connection string gives, in libpq's keyword order.
class PgDsn {
 public:
  bool has(std::string_view keyword) const;
  std::string value(std::string_view keyword) const;  // "" when not given
  void set(std::string_view keyword, std::string value);
  void erase(std::string_view keyword);
  const std::vector<std::pair<std::string, std::string>>& settings() const { return settings_; }

 private:
  std::vector<std::pair<std::string, std::string>> settings_;
};

// nullopt and, in *error, libpq's one-line reason when `dsn` is malformed.
std::optional<PgDsn> parse_pg_dsn(std::string_view dsn, std::string* error);

// One entry of a connection string's host list; libpq tries them in order.
struct PgHost {
  std::string host;      // a name, an IP literal, a socket directory, or empty (libpq's default)
  std::string hostaddr;  // the address to connect to; empty: libpq resolves `host` itself
  std::string port;      // empty: libpq's default

  bool operator==(const PgHost&) const = default;
};

// The host, hostaddr and port lists side by side (a single port applies to every host).
// nullopt when their lengths do not match: libpq then refuses the string itself, before it
// resolves anything.
std::optional<std::vector<PgHost>> pg_hosts(const PgDsn& dsn);

// True when libpq would look the entry's host up by name: a host that is not empty, not a
// socket directory ("/..." or "@..."), not an IP literal, and has no hostaddr.
bool needs_lookup(const PgHost& entry);

// Replaces the host, hostaddr and port lists with `hosts` (a key left out when every entry
// has it empty, so libpq's default or environment applies as before).
void set_pg_hosts(PgDsn& dsn, const std::vector<PgHost>& hosts);

// "host:port" of a connection string, for messages (the first host when several are given).
std::string pg_address(std::string_view dsn);

}  // namespace keygate::store
