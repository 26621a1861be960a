#include "store/pg_dsn.hpp"

#include <libpq-fe.h>

#include <algorithm>
#include <memory>

#include "core/text.hpp"
#include "store/host_resolution.hpp"
#include "store/pg_text.hpp"

namespace keygate::store {

namespace {

// `field` of every entry joined by commas; nullopt when all are empty.
std::optional<std::string> join_list(const std::vector<PgHost>& hosts, std::string PgHost::*field) {
  std::string list;
  bool any = false;
  for (std::size_t i = 0; i < hosts.size(); ++i) {
    if (i != 0) list += ',';
    list += hosts[i].*field;
    any = any || !(hosts[i].*field).empty();
  }
  if (!any) return std::nullopt;
  return list;
}

}  // namespace

bool PgDsn::has(std::string_view keyword) const {
  return std::any_of(settings_.begin(), settings_.end(),
                     [keyword](const auto& setting) { return setting.first == keyword; });
}

std::string PgDsn::value(std::string_view keyword) const {
  for (const auto& [name, value] : settings_) {
    if (name == keyword) return value;
  }
  return {};
}

void PgDsn::set(std::string_view keyword, std::string value) {
  for (auto& setting : settings_) {
    if (setting.first == keyword) {
      setting.second = std::move(value);
      return;
    }
  }
  settings_.emplace_back(std::string(keyword), std::move(value));
}

void PgDsn::erase(std::string_view keyword) {
  std::erase_if(settings_, [keyword](const auto& setting) { return setting.first == keyword; });
}

std::optional<PgDsn> parse_pg_dsn(std::string_view dsn, std::string* error) {
  char* message = nullptr;
  const std::unique_ptr<PQconninfoOption, decltype(&PQconninfoFree)> options(
      PQconninfoParse(std::string(dsn).c_str(), &message), &PQconninfoFree);
  if (!options) {
    // libpq's reason quotes pieces of the string, which may be the password.
    if (error != nullptr) {
      *error = message ? hide_quoted_parts(one_line_reason(message), dsn) : "out of memory";
    }
    if (message) PQfreemem(message);
    return std::nullopt;
  }
  PgDsn parsed;
  for (const PQconninfoOption* o = options.get(); o->keyword != nullptr; ++o) {
    if (o->val != nullptr) parsed.set(o->keyword, o->val);
  }
  return parsed;
}

std::optional<std::vector<PgHost>> pg_hosts(const PgDsn& dsn) {
  const auto hosts = core::split_list(dsn.value("host"));
  const auto addresses = core::split_list(dsn.value("hostaddr"));
  const auto ports = core::split_list(dsn.value("port"));
  // libpq: the host list is as long as hostaddr's when only that is given.
  const std::size_t n = dsn.has("host") ? hosts.size() : addresses.size();
  if (dsn.has("host") && dsn.has("hostaddr") && addresses.size() != n) return std::nullopt;
  if (ports.size() != 1 && ports.size() != n) return std::nullopt;
  std::vector<PgHost> entries(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (dsn.has("host")) entries[i].host = hosts[i];
    if (dsn.has("hostaddr")) entries[i].hostaddr = addresses[i];
    entries[i].port = ports.size() == 1 ? ports[0] : ports[i];
  }
  return entries;
}

bool needs_lookup(const PgHost& entry) {
  return entry.hostaddr.empty() && !entry.host.empty() && entry.host.front() != '/' &&
         entry.host.front() != '@' && !is_ip_literal(entry.host);
}

void set_pg_hosts(PgDsn& dsn, const std::vector<PgHost>& hosts) {
  const std::pair<const char*, std::string PgHost::*> lists[] = {
      {"host", &PgHost::host}, {"hostaddr", &PgHost::hostaddr}, {"port", &PgHost::port}};
  for (const auto& [keyword, field] : lists) {
    if (auto list = join_list(hosts, field)) {
      dsn.set(keyword, std::move(*list));
    } else {
      dsn.erase(keyword);
    }
  }
}

std::string pg_address(std::string_view dsn) {
  const auto parsed = parse_pg_dsn(dsn, nullptr);
  std::string host = parsed ? parsed->value("host") : "";
  if (host.empty() && parsed) host = parsed->value("hostaddr");
  std::string port = parsed ? parsed->value("port") : "";
  if (auto comma = host.find(','); comma != std::string::npos) host.resize(comma);
  if (auto comma = port.find(','); comma != std::string::npos) port.resize(comma);
  if (host.empty()) host = "localhost";
  if (port.empty()) port = "5432";
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  return host + ":" + port;
}

}  // namespace keygate::store
