// How `keygate keys` shows keys (see key_output.hpp).
#include "app/key_output.hpp"

#include <boost/json/array.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <cstdio>

#include "core/time_format.hpp"

namespace keygate::app {
namespace json = boost::json;
using store::KeyDetails;

void print_json(const json::value& v) { std::printf("%s\n", json::serialize(v).c_str()); }

void print_new_key(const std::string& key) {
  std::printf("\n    %s\n\nStore this key now: it will not be shown again.\n", key.c_str());
}

void print_details(const KeyDetails& k) {
  const auto& r = k.record;
  auto line = [](const char* label, const std::string& value) { std::printf("%-13s %s\n", label, value.c_str()); };
  std::string scopes, ips;
  for (const auto& s : r.scopes) scopes += (scopes.empty() ? "" : ", ") + s;
  for (const auto& n : r.allowed_ips) ips += (ips.empty() ? "" : ", ") + n.to_string();
  line("id:", r.id);
  line("key prefix:", k.key_prefix);
  line("owner:", owner_text(r));
  line("name:", r.name);
  if (k.description) line("description:", *k.description);
  line("status:", status_text(r));
  line("scopes:", scopes.empty() ? "(none)" : scopes);
  line("allowed ips:", ips.empty() ? "any" : ips);
  line("rate limit:", rate_limit_text(r).value_or("default"));
  line("quota:", r.quota ? std::to_string(*r.quota) : "unlimited");
  line("expires at:", r.expires_at ? core::format_utc_seconds(*r.expires_at) : "never");
  if (r.revoked_at) line("revoked at:", core::format_utc_seconds(*r.revoked_at));
  line("created at:", core::format_utc_seconds(k.created_at));
  line("last used:", k.last_used_at ? core::format_utc_seconds(*k.last_used_at) : "never");
  if (k.leaked_at) line("leaked at:", core::format_utc_seconds(*k.leaked_at));
}

void print_table(const std::vector<KeyDetails>& keys) {
  std::vector<std::vector<std::string>> rows{{"ID", "PREFIX", "OWNER", "NAME", "STATUS", "EXPIRES", "CREATED"}};
  for (const auto& k : keys) {
    const auto& r = k.record;
    rows.push_back({r.id, k.key_prefix, owner_text(r), r.name, status_text(r),
                    r.expires_at ? core::format_utc_seconds(*r.expires_at) : "never", core::format_utc_seconds(k.created_at)});
  }
  std::vector<std::size_t> widths(rows[0].size(), 0);
  for (const auto& row : rows) {
    for (std::size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], row[c].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t c = 0; c < row.size(); ++c) {
      line += row[c];
      if (c + 1 < row.size()) line += std::string(widths[c] - row[c].size() + 2, ' ');
    }
    std::printf("%s\n", line.c_str());
  }
}

}  // namespace keygate::app
