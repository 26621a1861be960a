// keygate keys create|list|show|revoke|rotate: the operator's side of api_keys. Strict argument
// parsing (a bad flag is exit 2 with one line naming it), then one repository call on an
// io_context of its own. The full key is printed by create and rotate only, once.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <exception>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "app/commands.hpp"
#include "core/duration.hpp"
#include "core/time_format.hpp"
#include "authz/key_format.hpp"
#include "authz/key_hash.hpp"
#include "store/key_repository.hpp"
#include "store/pg_pool.hpp"

namespace keygate::app {

namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using store::KeyDetails;
using store::RepoStatus;

constexpr std::chrono::hours default_grace{24};

// ---------------------------------------------------------------------------------------------
// Arguments

struct ParsedArgs {
  std::map<std::string, std::string, std::less<>> values;  // --flag VALUE / --flag=VALUE
  std::set<std::string, std::less<>> switches;             // --flag
  std::vector<std::string> positional;

  std::optional<std::string> value(std::string_view flag) const {
    auto it = values.find(flag);
    if (it == values.end()) return std::nullopt;
    return it->second;
  }
  bool has(std::string_view flag) const { return switches.contains(flag); }
};

ParsedArgs parse_args(const std::string& command, Args args, const std::set<std::string_view>& valued,
                      const std::set<std::string_view>& switches, std::size_t max_positional) {
  ParsedArgs parsed;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (!arg.starts_with("--")) {
      if (parsed.positional.size() >= max_positional) {
        throw UsageError(command + ": unexpected argument \"" + arg + "\"");
      }
      parsed.positional.push_back(arg);
      continue;
    }
    const auto eq = arg.find('=');
    const std::string flag = arg.substr(0, eq);
    if (switches.contains(flag)) {
      if (eq != std::string::npos) throw UsageError(flag + ": takes no value");
      if (!parsed.switches.insert(flag).second) throw UsageError(flag + ": given twice");
      continue;
    }
    if (!valued.contains(flag)) throw UsageError(command + ": unknown option " + flag);
    std::string value;
    if (eq != std::string::npos) {
      value = arg.substr(eq + 1);
    } else if (i + 1 < args.size() && !args[i + 1].starts_with("--")) {
      value = args[++i];
    } else {
      throw UsageError(flag + ": missing value");
    }
    if (!parsed.values.emplace(flag, std::move(value)).second) throw UsageError(flag + ": given twice");
  }
  return parsed;
}

std::string quoted(std::string_view text) { return "\"" + std::string(text) + "\""; }

bool printable(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) {
    return std::isgraph(static_cast<unsigned char>(c)) && c != '"' && c != '\\';
  });
}

store::KeyOwner parse_owner(const std::string& text) {
  const auto colon = text.find(':');
  const bool ok = colon != std::string::npos && colon > 0 && colon + 1 < text.size() &&
                  std::all_of(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(colon), [](char c) {
                    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
                  }) &&
                  printable(std::string_view(text).substr(colon + 1));
  if (!ok) throw UsageError("--owner: expected TYPE:ID like user:42, got " + quoted(text));
  return {text.substr(0, colon), text.substr(colon + 1)};
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  std::size_t start = 0;
  for (;;) {
    const auto comma = text.find(',', start);
    items.push_back(text.substr(start, comma - start));
    if (comma == std::string::npos) return items;
    start = comma + 1;
  }
}

std::vector<std::string> parse_scopes(const std::string& text) {
  std::vector<std::string> scopes;
  for (auto& scope : split_list(text)) {
    if (scope.empty() || !printable(scope)) {
      throw UsageError("--scopes: expected comma-separated scopes like inventory:read,orders:write, got " +
                       quoted(text));
    }
    if (std::find(scopes.begin(), scopes.end(), scope) == scopes.end()) scopes.push_back(std::move(scope));
  }
  return scopes;
}

std::vector<core::IpNetwork> parse_networks(const std::string& text) {
  std::vector<core::IpNetwork> networks;
  for (const auto& item : split_list(text)) {
    auto network = core::IpNetwork::parse(item);
    if (!network) {
      throw UsageError("--allowed-ips: expected addresses or CIDR networks like 10.0.0.0/8,::1, got " +
                       quoted(item));
    }
    networks.push_back(*network);
  }
  return networks;
}

std::chrono::milliseconds parse_duration_flag(const std::string& flag, const std::string& text,
                                              std::string_view example, bool allow_zero) {
  auto duration = core::parse_duration(text);
  if (!duration) {
    throw UsageError(flag + ": expected a duration like " + std::string(example) + ", got " + quoted(text));
  }
  if (!allow_zero && duration->count() <= 0) throw UsageError(flag + ": must be more than 0, got " + quoted(text));
  return *duration;
}

std::int64_t parse_quota(const std::string& text) {
  std::int64_t value = -1;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < 0 || text.starts_with("+")) {
    throw UsageError("--quota: expected a whole number of requests (0 or more), got " + quoted(text));
  }
  return value;
}

const std::string& key_id_argument(const std::string& command, const ParsedArgs& parsed) {
  if (parsed.positional.empty()) throw UsageError(command + ": missing key ID");
  return parsed.positional[0];
}

// ---------------------------------------------------------------------------------------------
// Output

std::string owner_text(const store::KeyRecord& r) { return r.owner_type + ":" + r.owner_id; }

std::optional<std::string> rate_limit_text(const store::KeyRecord& r) {
  if (!r.rate_limit || !r.window_seconds) return std::nullopt;
  return std::to_string(*r.rate_limit) + "/" + std::to_string(*r.window_seconds) + "s";
}

std::string status_text(const store::KeyRecord& r) {
  if (r.revoked_at) return "revoked";
  if (!r.is_active) return "inactive";
  if (r.expires_at && *r.expires_at <= store::Clock::now()) return "expired";
  return "active";
}

json::value time_json(const std::optional<store::TimePoint>& t) {
  return t ? json::value(core::format_utc_seconds(*t)) : json::value(nullptr);
}

json::object key_json(const KeyDetails& k, const std::string* full_key) {
  const auto& r = k.record;
  json::object o;
  o["id"] = r.id;
  if (full_key != nullptr) o["key"] = *full_key;
  o["key_prefix"] = k.key_prefix;
  o["owner"] = owner_text(r);
  o["name"] = r.name;
  o["description"] = k.description ? json::value(*k.description) : json::value(nullptr);
  json::array scopes;
  for (const auto& s : r.scopes) scopes.emplace_back(s);
  o["scopes"] = std::move(scopes);
  json::array ips;
  for (const auto& n : r.allowed_ips) ips.emplace_back(n.to_string());
  o["allowed_ips"] = std::move(ips);
  const auto limit = rate_limit_text(r);
  o["rate_limit"] = limit ? json::value(*limit) : json::value(nullptr);
  o["quota"] = r.quota ? json::value(*r.quota) : json::value(nullptr);
  o["is_active"] = r.is_active && !r.revoked_at;
  o["status"] = status_text(r);
  o["expires_at"] = time_json(r.expires_at);
  o["revoked_at"] = time_json(r.revoked_at);
  o["created_at"] = core::format_utc_seconds(k.created_at);
  o["last_used_at"] = time_json(k.last_used_at);
  return o;
}

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

// A repository failure: one line on stderr, exit 1.
template <typename T>
int report_failure(const store::RepoResult<T>& result) {
  std::fprintf(stderr, "keygate: %s\n", result.error.c_str());
  return exit_failure;
}

// ---------------------------------------------------------------------------------------------
// Commands

struct Context {
  const Config& config;
  store::KeyRepository& repository;
};

struct CreateRequest {
  store::NewKey key;
  bool json = false;
};

CreateRequest parse_create(const Config& config, Args args) {
  const auto parsed = parse_args(
      "keys create", args,
      {"--owner", "--name", "--scopes", "--expires-in", "--rate-limit", "--quota", "--allowed-ips", "--description"},
      {"--json"}, 0);
  CreateRequest request;
  auto owner = parsed.value("--owner");
  if (!owner) throw UsageError("keys create: --owner is required");
  request.key.owner = parse_owner(*owner);
  auto name = parsed.value("--name");
  if (!name) throw UsageError("keys create: --name is required");
  if (name->empty()) throw UsageError("--name: must not be empty");
  request.key.name = *name;
  if (auto scopes = parsed.value("--scopes")) request.key.scopes = parse_scopes(*scopes);
  if (auto expires = parsed.value("--expires-in")) {
    request.key.expires_in = parse_duration_flag("--expires-in", *expires, "30d", false);
  }
  if (auto limit = parsed.value("--rate-limit")) {
    auto spec = core::parse_rate_limit(*limit);
    if (!spec) throw UsageError("--rate-limit: expected REQUESTS/WINDOW like 100/60s, got " + quoted(*limit));
    request.key.rate_limit = spec->limit;
    request.key.window_seconds = spec->window_seconds;
  }
  if (auto quota = parsed.value("--quota")) request.key.quota = parse_quota(*quota);
  if (auto ips = parsed.value("--allowed-ips")) request.key.allowed_ips = parse_networks(*ips);
  if (auto description = parsed.value("--description")) request.key.description = *description;
  request.key.created_by = "keygate keys create";
  request.json = parsed.has("--json");
  (void)config;
  return request;
}

asio::awaitable<int> create(Context ctx, CreateRequest request) {
  const std::string key = authz::generate_key(ctx.config.keys.prefix);
  request.key.key_prefix = authz::key_display_prefix(key);
  request.key.key_hash = authz::hash_key(key, ctx.config.keys.pepper);
  auto created = co_await ctx.repository.create(std::move(request.key));
  if (!created.ok()) co_return report_failure(created);
  if (request.json) {
    print_json(key_json(created.value, &key));
  } else {
    const auto& r = created.value.record;
    std::printf("Created key %s for %s (%s).\n", r.id.c_str(), owner_text(r).c_str(), r.name.c_str());
    print_new_key(key);
  }
  co_return exit_ok;
}

asio::awaitable<int> list(Context ctx, std::optional<store::KeyOwner> owner, bool as_json) {
  auto listed = co_await ctx.repository.list(owner);
  if (!listed.ok()) co_return report_failure(listed);
  if (as_json) {
    json::array keys;
    for (const auto& k : listed.value) keys.emplace_back(key_json(k, nullptr));
    print_json(keys);
  } else if (listed.value.empty()) {
    std::puts("no keys");
  } else {
    print_table(listed.value);
  }
  co_return exit_ok;
}

asio::awaitable<int> show(Context ctx, std::string id, bool as_json) {
  auto shown = co_await ctx.repository.show(id);
  if (!shown.ok()) co_return report_failure(shown);
  if (as_json) print_json(key_json(shown.value, nullptr));
  else print_details(shown.value);
  co_return exit_ok;
}

asio::awaitable<int> revoke(Context ctx, std::string id) {
  auto revoked = co_await ctx.repository.revoke(id);
  if (!revoked.ok()) co_return report_failure(revoked);
  if (revoked.value.already_revoked) {
    std::printf("Key %s was already revoked at %s.\n", id.c_str(), core::format_utc_seconds(revoked.value.revoked_at).c_str());
  } else {
    std::printf("Revoked key %s.\n", id.c_str());
  }
  co_return exit_ok;
}

asio::awaitable<int> rotate(Context ctx, std::string id, std::chrono::milliseconds grace, bool as_json) {
  const std::string key = authz::generate_key(ctx.config.keys.prefix);
  auto rotated = co_await ctx.repository.rotate(id, authz::key_display_prefix(key),
                                                authz::hash_key(key, ctx.config.keys.pepper), grace);
  if (!rotated.ok()) co_return report_failure(rotated);
  const auto& result = rotated.value;
  if (as_json) {
    json::object o = key_json(result.new_key, &key);
    o["previous_id"] = result.previous_id;
    o["previous_expires_at"] = time_json(result.previous_expires_at);
    print_json(o);
  } else {
    std::printf("Rotated key %s: the new key is %s.\n", id.c_str(), result.new_key.record.id.c_str());
    if (result.previous_expires_at) {
      std::printf("The old key stops working at %s (grace %s).\n",
                  core::format_utc_seconds(*result.previous_expires_at).c_str(), core::format_duration(grace).c_str());
    }
    print_new_key(key);
  }
  co_return exit_ok;
}

// Runs one command coroutine to completion; its exceptions reach main unchanged.
int run_to_completion(asio::io_context& io, asio::awaitable<int> command) {
  std::exception_ptr failure;
  int code = exit_failure;
  asio::co_spawn(io, std::move(command), [&](std::exception_ptr e, int result) {
    failure = e;
    code = result;
  });
  io.run();
  if (failure) std::rethrow_exception(failure);
  return code;
}

constexpr const char* subcommands = "create, list, show, revoke or rotate";

}  // namespace

int run_keys(const Config& config, Args args) {
  if (args.empty()) throw UsageError(std::string("keys: missing subcommand (") + subcommands + ")");
  const std::string& verb = args[0];
  const Args rest = args.subspan(1);

  // Every argument is checked before PostgreSQL is contacted.
  asio::io_context io;
  store::PgOptions options{config.postgres.dsn, 1, config.postgres.connect_timeout,
                           config.postgres.query_timeout};
  store::PgPool pool(io.get_executor(), options);
  store::KeyRepository repository(pool);
  Context ctx{config, repository};

  if (verb == "create") return run_to_completion(io, create(ctx, parse_create(config, rest)));
  if (verb == "list") {
    const auto parsed = parse_args("keys list", rest, {"--owner"}, {"--json"}, 0);
    std::optional<store::KeyOwner> owner;
    if (auto text = parsed.value("--owner")) owner = parse_owner(*text);
    return run_to_completion(io, list(ctx, owner, parsed.has("--json")));
  }
  if (verb == "show") {
    const auto parsed = parse_args("keys show", rest, {}, {"--json"}, 1);
    return run_to_completion(io, show(ctx, key_id_argument("keys show", parsed), parsed.has("--json")));
  }
  if (verb == "revoke") {
    const auto parsed = parse_args("keys revoke", rest, {}, {}, 1);
    return run_to_completion(io, revoke(ctx, key_id_argument("keys revoke", parsed)));
  }
  if (verb == "rotate") {
    const auto parsed = parse_args("keys rotate", rest, {"--grace"}, {"--json"}, 1);
    const std::string& id = key_id_argument("keys rotate", parsed);
    std::chrono::milliseconds grace = default_grace;
    if (auto text = parsed.value("--grace")) grace = parse_duration_flag("--grace", *text, "24h", true);
    return run_to_completion(io, rotate(ctx, id, grace, parsed.has("--json")));
  }
  throw UsageError("keys: unknown subcommand \"" + verb + "\" (expected " + subcommands + ")");
}

}  // namespace keygate::app
