// keygate keys create|list|show|revoke|rotate: the operator's side of api_keys. Strict argument
// parsing (a bad flag is exit 2 with one line naming it), then one repository call on an
// io_context of its own. The full key is printed by create and rotate only, once.
#include <boost/asio/io_context.hpp>
#include <boost/json/object.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "app/cli_args.hpp"
#include "app/cli_custom_keys.hpp"
#include "app/cli_run.hpp"
#include "app/key_output.hpp"
#include "app/options.hpp"
#include "core/duration.hpp"
#include "core/hex.hpp"
#include "core/text.hpp"
#include "core/time_format.hpp"
#include "authz/key_format.hpp"
#include "authz/key_hash.hpp"
#include "store/custom_schema.hpp"
#include "store/key_repository.hpp"
#include "store/pg_pool.hpp"

namespace keygate::app {

namespace {

namespace asio = boost::asio;
namespace json = boost::json;

constexpr std::chrono::hours default_grace{24};

bool printable(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) {
    return std::isgraph(static_cast<unsigned char>(c)) && c != '"' && c != '\\';
  });
}

std::vector<core::IpNetwork> parse_networks(const std::string& text) {
  std::vector<core::IpNetwork> networks;
  for (const auto& item : core::split_list(text)) {
    auto network = core::IpNetwork::parse(item);
    if (!network) {
      throw UsageError("--allowed-ips: expected addresses or CIDR networks like 10.0.0.0/8,::1, got " +
                       quoted_argument(item));
    }
    networks.push_back(*network);
  }
  return networks;
}

std::int64_t parse_quota(const std::string& text) {
  std::int64_t value = -1;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < 0 || text.starts_with("+")) {
    throw UsageError("--quota: expected a whole number of requests (0 or more), got " + quoted_argument(text));
  }
  return value;
}

// An id that is not a uuid goes to the repository ("no key with id ..."), unless it may be a
// key itself, which is refused here without being shown.
const std::string& key_id_argument(const std::string& command, const ParsedArgs& parsed) {
  if (parsed.positional.empty()) throw UsageError(command + ": missing key ID");
  const std::string& id = parsed.positional[0];
  if (!core::is_uuid(id) && may_hold_key(id)) {
    throw UsageError(command + ": ID: expected a key id (a uuid, as keys list shows), got " +
                     quoted_argument(id));
  }
  return id;
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

CreateRequest parse_create(Args args) {
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
    if (!spec) throw UsageError("--rate-limit: expected REQUESTS/WINDOW like 100/60s, got " + quoted_argument(*limit));
    request.key.rate_limit = spec->limit;
    request.key.window_seconds = spec->window_seconds;
  }
  if (auto quota = parsed.value("--quota")) request.key.quota = parse_quota(*quota);
  if (auto ips = parsed.value("--allowed-ips")) request.key.allowed_ips = parse_networks(*ips);
  if (auto description = parsed.value("--description")) request.key.description = *description;
  request.key.created_by = "keygate keys create";
  request.json = parsed.has("--json");
  return request;
}

asio::awaitable<int> create(Context ctx, CreateRequest request) {
  const std::string key = authz::generate_key(ctx.config.keys.prefix);
  request.key.key_prefix = authz::key_display_prefix(key);
  request.key.key_hash = authz::hash_key(key, ctx.config.keys.pepper);
  auto created = co_await ctx.repository.create(std::move(request.key));
  if (!created.ok()) co_return report_failure(created.error);
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
  if (!listed.ok()) co_return report_failure(listed.error);
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
  if (!shown.ok()) co_return report_failure(shown.error);
  if (as_json) print_json(key_json(shown.value, nullptr));
  else print_details(shown.value);
  co_return exit_ok;
}

asio::awaitable<int> revoke(Context ctx, std::string id) {
  auto revoked = co_await ctx.repository.revoke(id);
  if (!revoked.ok()) co_return report_failure(revoked.error);
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
  if (!rotated.ok()) co_return report_failure(rotated.error);
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

constexpr const char* subcommands = "create, list, show, revoke or rotate";

}  // namespace

store::KeyOwner parse_owner(const std::string& text) {
  const auto colon = text.find(':');
  const bool ok = colon != std::string::npos && colon > 0 && colon + 1 < text.size() &&
                  std::all_of(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(colon), [](char c) {
                    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
                  }) &&
                  printable(std::string_view(text).substr(colon + 1));
  if (!ok) throw UsageError("--owner: expected TYPE:ID like user:42, got " + quoted_argument(text));
  return {text.substr(0, colon), text.substr(colon + 1)};
}

std::vector<std::string> parse_scopes(const std::string& text) {
  std::vector<std::string> scopes;
  for (auto& scope : core::split_list(text)) {
    if (scope.empty() || !printable(scope)) {
      throw UsageError("--scopes: expected comma-separated scopes like inventory:read,orders:write, got " +
                       quoted_argument(text));
    }
    if (std::find(scopes.begin(), scopes.end(), scope) == scopes.end()) scopes.push_back(std::move(scope));
  }
  return scopes;
}

// `keys ... --preset NAME`: the command runs against that preset's table (as with store:
// {schema: custom, preset: NAME}), so that an operator needs no config file for it. A config
// that already names another table is a contradiction, refused.
Config with_preset(const Config& config, const std::string& name) {
  const store::CustomSchema* preset = store::find_preset(name);
  if (preset == nullptr) {
    std::string names;
    for (std::string_view known : store::preset_names()) names += (names.empty() ? "" : ", ") + std::string(known);
    throw UsageError("--preset: expected one of " + names + ", got " + quoted_argument(name));
  }
  if (config.store.schema == Config::Store::Schema::custom && config.store.preset != name) {
    throw UsageError("--preset " + name + ": the config's store section already names " +
                     (config.store.preset.empty() ? "a table of its own" : "preset " + config.store.preset) +
                     "; drop one of the two");
  }
  Config out = config;
  if (out.store.schema != Config::Store::Schema::custom) {
    out.store.schema = Config::Store::Schema::custom;
    out.store.preset = name;
    out.store.custom = *preset;
  }
  return out;
}

int run_keys(const Config& config, Args args) {
  if (args.empty()) throw UsageError(std::string("keys: missing subcommand (") + subcommands + ")");
  const std::string& verb = args[0];
  Args rest = args.subspan(1);
  std::vector<std::string> without_preset;
  for (std::size_t i = 0; i < rest.size(); ++i) {
    if (rest[i] != "--preset") continue;
    if (i + 1 >= rest.size()) throw UsageError("--preset: missing preset name");
    const Config custom = with_preset(config, rest[i + 1]);
    without_preset.assign(rest.begin(), rest.begin() + static_cast<std::ptrdiff_t>(i));
    without_preset.insert(without_preset.end(), rest.begin() + static_cast<std::ptrdiff_t>(i) + 2, rest.end());
    if (std::find(without_preset.begin(), without_preset.end(), "--preset") != without_preset.end()) {
      throw UsageError("--preset: given twice");
    }
    return run_custom_keys(custom, verb, without_preset);
  }
  if (config.store.schema == Config::Store::Schema::custom) return run_custom_keys(config, verb, rest);

  // Every argument is checked before PostgreSQL is contacted.
  asio::io_context io;
  store::PgOptions options = postgres_options(config, 1);
  options.pool_size = 1;  // a command makes one repository call
  store::PgPool pool(io.get_executor(), options);
  store::KeyRepository repository(pool);
  Context ctx{config, repository};

  if (verb == "create") return run_to_completion(io, create(ctx, parse_create(rest)));
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
  throw UsageError("keys: unknown subcommand " + quoted_argument(verb) + " (expected " + subcommands + ")");
}

}  // namespace keygate::app
