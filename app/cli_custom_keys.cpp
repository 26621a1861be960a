// keygate keys create|list|revoke on a custom key table (store.schema: custom): the rows the
// mapping can fill, in the table's own encodings. What the table cannot hold is refused with one
// line naming what it lacks (exit 2); show and rotate are keygate's own api_keys only.
#include <boost/asio/io_context.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "app/cli_args.hpp"
#include "app/cli_custom_keys.hpp"
#include "app/cli_run.hpp"
#include "app/key_output.hpp"
#include "app/key_table.hpp"
#include "app/options.hpp"
#include "authz/key_format.hpp"
#include "authz/key_hash.hpp"
#include "core/hex.hpp"
#include "core/time_format.hpp"
#include "store/custom_key_source.hpp"
#include "store/pg_pool.hpp"
#include "store/pg_text.hpp"

namespace keygate::app {

namespace {

namespace asio = boost::asio;
namespace json = boost::json;

constexpr int bcrypt_cost = 10;  // what seed 003's backend uses (bcrypt.hash(key, 10))

struct Table {
  const Config& config;
  const store::ResolvedSchema& resolved;
  store::PgPool& pool;
};

[[noreturn]] void not_possible(const Table& t, const std::string& what) {
  throw UsageError("keys: not possible with the table " + t.resolved.schema.table + ": " + what);
}

// The credential column's value for a new key (bcrypt: the hash).
std::string stored_credential(const Table& t, const std::string& key) {
  const store::CustomSchema& s = t.resolved.schema;
  auto encoded = [&](const store::KeyHash& h) {
    return t.resolved.credential_is_bytea ? store::format_pg_bytea(h.data(), h.size()) : authz::hash_to_hex(h);
  };
  switch (s.encoding) {
    case store::CredentialEncoding::sha256_hex:
    case store::CredentialEncoding::sha256_bytea: return encoded(authz::hash_key(key, ""));
    case store::CredentialEncoding::hmac_sha256: return encoded(authz::hash_key(key, t.config.keys.pepper));
    case store::CredentialEncoding::bcrypt: return store::bcrypt_hash(key, bcrypt_cost);
    case store::CredentialEncoding::plain: return key;
  }
  return {};
}

std::string scopes_parameter(const Table& t, const std::vector<std::string>& scopes) {
  if (t.resolved.scopes_type == "json" || t.resolved.scopes_type == "jsonb") {
    json::array array;
    for (const auto& scope : scopes) array.emplace_back(scope);
    return json::serialize(array);
  }
  return store::format_pg_array(scopes);
}

bool read_row(const Table& t, const store::PgResult& result, int row, store::KeyRecord& record) {
  store::CustomRow values;
  for (int column = 0; column < store::custom_row_columns; ++column) {
    values.values.push_back(result.get(row, column));
    values.null.push_back(result.is_null(row, column));
  }
  std::string error;
  if (store::decode_custom_row(t.resolved, values, record, error)) return true;
  report_failure(error);
  return false;
}

std::string state_of(const store::KeyRecord& r) {
  if (r.revoked_at || !r.is_active) return "revoked";
  if (r.expires_at && *r.expires_at <= store::Clock::now()) return "expired";
  return "active";
}

json::object record_json(const store::KeyRecord& r) {
  json::object o;
  o["id"] = r.id;
  o["owner"] = owner_text(r);
  o["name"] = r.name;
  json::array scopes;
  for (const auto& scope : r.scopes) scopes.emplace_back(scope);
  o["scopes"] = std::move(scopes);
  o["expires_at"] = time_json(r.expires_at);
  o["state"] = state_of(r);
  return o;
}

struct CreateArgs {
  store::KeyOwner owner;
  std::string name;
  std::optional<std::vector<std::string>> scopes;
  std::optional<std::chrono::milliseconds> expires_in;
  bool json = false;
};

asio::awaitable<int> create(Table t, CreateArgs args) {
  const store::CustomSchema& s = t.resolved.schema;
  std::string error;
  const std::string sql = store::insert_statement(t.resolved, args.scopes.has_value(), args.expires_in.has_value(), error);
  if (sql.empty()) not_possible(t, error);
  const std::string key = authz::generate_key(t.config.keys.prefix);
  if (!store::key_text_allowed(key, s.key_text)) {
    not_possible(t, "keygate's keys do not fit store.key_format (alphabet " + std::string(store::name_of(s.key_text.alphabet)) + ")");
  }
  store::PgParams params;
  params.emplace_back(stored_credential(t, key));
  params.emplace_back(s.prefix_column.empty() ? std::nullopt : std::optional(key.substr(0, s.prefix_length)));
  params.emplace_back(args.owner.type);
  params.emplace_back(args.owner.id);
  params.emplace_back(args.name);
  params.emplace_back(args.scopes ? std::optional(scopes_parameter(t, *args.scopes)) : std::nullopt);
  params.emplace_back(args.expires_in ? std::optional(std::to_string(args.expires_in->count())) : std::nullopt);
  store::PgResult result = co_await t.pool.query(sql, std::move(params));
  if (!result.ok()) co_return report_failure(result.error());
  store::KeyRecord record;
  if (result.rows() != 1) co_return report_failure("PostgreSQL inserted " + std::to_string(result.rows()) + " rows, not one");
  if (!read_row(t, result, 0, record)) co_return exit_failure;
  // A table's own trigger may have made the key (seed 001): the stored one is the key.
  std::string issued = key;
  if (s.encoding == store::CredentialEncoding::plain) issued = std::string(result.get(0, store::custom_row_credential));
  if (args.json) {
    json::object o = record_json(record);
    o["key"] = issued;
    print_json(o);
  } else {
    std::printf("Created key %s for %s (%s).\n", record.id.c_str(), owner_text(record).c_str(), record.name.c_str());
    print_new_key(issued);
  }
  co_return exit_ok;
}

asio::awaitable<int> list(Table t, std::optional<store::KeyOwner> owner, bool as_json) {
  store::PgParams params;
  params.emplace_back(owner ? std::optional(owner->type) : std::nullopt);
  params.emplace_back(owner ? std::optional(owner->id) : std::nullopt);
  store::PgResult result = co_await t.pool.query(store::list_statement(t.resolved), std::move(params));
  if (!result.ok()) co_return report_failure(result.error());
  std::vector<store::KeyRecord> records(static_cast<std::size_t>(result.rows()));
  for (int row = 0; row < result.rows(); ++row) {
    if (!read_row(t, result, row, records[static_cast<std::size_t>(row)])) co_return exit_failure;
  }
  if (as_json) {
    json::array keys;
    for (const auto& r : records) keys.emplace_back(record_json(r));
    print_json(keys);
  } else if (records.empty()) {
    std::puts("no keys");
  } else {
    std::printf("%-38s %-24s %-8s %-24s %s\n", "ID", "OWNER", "STATE", "EXPIRES", "NAME");
    for (const auto& r : records) {
      const std::string expires = r.expires_at ? core::format_utc_seconds(*r.expires_at) : "never";
      std::printf("%-38s %-24s %-8s %-24s %s\n", r.id.c_str(), owner_text(r).c_str(), state_of(r).c_str(),
                  expires.c_str(), r.name.c_str());
    }
  }
  co_return exit_ok;
}

asio::awaitable<int> revoke(Table t, std::string id) {
  std::string error;
  const std::string sql = store::revoke_statement(t.resolved, error);
  if (sql.empty()) not_possible(t, error);
  store::PgParams params;
  params.emplace_back(id);
  store::PgResult result = co_await t.pool.query(sql, std::move(params));
  if (!result.ok()) co_return report_failure(result.error());
  if (result.rows() == 0) co_return report_failure("no key with id " + id + " that is not revoked already");
  std::printf("Revoked key %s.\n", id.c_str());
  co_return exit_ok;
}

}  // namespace

int run_custom_keys(const Config& config, const std::string& verb, Args rest) {
  // Every argument is checked before PostgreSQL is contacted.
  std::optional<CreateArgs> create_args;
  std::optional<store::KeyOwner> list_owner;
  bool as_json = false;
  std::string revoke_id;
  if (verb == "create") {
    const auto parsed = parse_args(
        "keys create", rest,
        {"--owner", "--name", "--scopes", "--expires-in", "--rate-limit", "--quota", "--allowed-ips", "--description"},
        {"--json"}, 0);
    for (const char* flag : {"--rate-limit", "--quota", "--allowed-ips", "--description"}) {
      if (parsed.value(flag)) {
        throw UsageError(std::string("keys create: ") + flag +
                         ": not written to a custom table (store.schema: custom); set it with your project's code");
      }
    }
    CreateArgs a;
    auto owner = parsed.value("--owner");
    if (!owner) throw UsageError("keys create: --owner is required");
    a.owner = parse_owner(*owner);
    if (config.store.custom.owner_type_column.empty() && a.owner.type != config.store.custom.owner_type) {
      throw UsageError("--owner: the table has no owner type column; every key's owner type is " +
                       config.store.custom.owner_type + " (store.owner_type)");
    }
    auto name = parsed.value("--name");
    if (!name || name->empty()) throw UsageError("keys create: --name is required");
    a.name = *name;
    if (auto scopes = parsed.value("--scopes")) a.scopes = parse_scopes(*scopes);
    if (auto expires = parsed.value("--expires-in")) a.expires_in = parse_duration_flag("--expires-in", *expires, "30d", false);
    a.json = parsed.has("--json");
    create_args = std::move(a);
  } else if (verb == "list") {
    const auto parsed = parse_args("keys list", rest, {"--owner"}, {"--json"}, 0);
    if (auto text = parsed.value("--owner")) list_owner = parse_owner(*text);
    as_json = parsed.has("--json");
  } else if (verb == "revoke") {
    const auto parsed = parse_args("keys revoke", rest, {}, {}, 1);
    if (parsed.positional.empty()) throw UsageError("keys revoke: missing key ID");
    revoke_id = parsed.positional[0];
    if (may_hold_key(revoke_id)) {
      throw UsageError("keys revoke: ID: expected a key id (as keys list shows), got " + quoted_argument(revoke_id));
    }
  } else if (verb == "show" || verb == "rotate") {
    throw UsageError("keys " + verb + ": not available with store.schema: custom (table " +
                     config.store.custom.table + "); use keys list, keys create and keys revoke");
  } else {
    throw UsageError("keys: unknown subcommand " + quoted_argument(verb) + " (expected create, list or revoke)");
  }

  const auto resolved = resolve_key_table(config);
  asio::io_context io;
  store::PgOptions options = postgres_options(config, 1);
  options.pool_size = 1;
  store::PgPool pool(io.get_executor(), options);
  Table table{config, *resolved, pool};
  if (create_args) return run_to_completion(io, create(table, std::move(*create_args)));
  if (verb == "list") return run_to_completion(io, list(table, list_owner, as_json));
  return run_to_completion(io, revoke(table, revoke_id));
}

}  // namespace keygate::app
