// store.schema: custom, the pure part: presets, the key text rule, the check of a mapping
// against information_schema's column types, the lookup statement and row decoding; and the
// config section that builds the mapping.
#include <doctest/doctest.h>

#include "app/config.hpp"
#include "store/custom_schema.hpp"

namespace {

using keygate::app::Config;
using keygate::app::ConfigError;
using keygate::app::parse_config;
using namespace keygate::store;

std::string config_error(const std::string& yaml, std::map<std::string, std::string> env = {}) {
  try {
    parse_config(yaml, "config.yaml", env);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

// Seed 004 in its PostgreSQL translation, as information_schema reports it.
std::vector<ColumnType> seed_004_columns() {
  return {{"id", "bigint", "int8"},           {"owner_type", "character varying", "varchar"},
          {"owner_id", "bigint", "int8"},     {"name", "character varying", "varchar"},
          {"key_hash", "character", "bpchar"}, {"abilities", "jsonb", "jsonb"},
          {"last_used_at", "timestamp without time zone", "timestamp"},
          {"expires_at", "timestamp without time zone", "timestamp"},
          {"is_active", "boolean", "bool"},   {"revoked_at", "timestamp without time zone", "timestamp"},
          {"rate_limit", "integer", "int4"},  {"window_seconds", "integer", "int4"},
          {"allowed_ips", "jsonb", "jsonb"}};
}

ResolvedSchema resolved_004() {
  std::string error;
  ResolvedSchema resolved = resolve_schema(*find_preset("owner_abilities"), seed_004_columns(), error);
  REQUIRE(error.empty());
  return resolved;
}

CustomRow row_of(std::vector<std::optional<std::string>> values, std::vector<std::string>& storage) {
  storage.clear();
  storage.reserve(values.size());
  CustomRow row;
  for (const auto& v : values) {
    storage.push_back(v.value_or(""));
    row.null.push_back(!v.has_value());
  }
  for (const auto& s : storage) row.values.push_back(s);
  return row;
}

}  // namespace

TEST_CASE("each of the five presets passes its own consistency check") {
  REQUIRE(preset_names().size() == 5);
  for (std::string_view name : preset_names()) {
    CAPTURE(name);
    const CustomSchema* preset = find_preset(name);
    REQUIRE(preset != nullptr);
    CHECK(check_schema(*preset).empty());
  }
  CHECK(find_preset("api_keys") == nullptr);
}

TEST_CASE("a custom key passes on length and alphabet alone") {
  KeyTextRule rule;  // 16..128, base64url
  CHECK(key_text_allowed("sk_live_0123456789abcdef", rule));
  CHECK_FALSE(key_text_allowed("short_key_123", rule));
  CHECK_FALSE(key_text_allowed(std::string(129, 'a'), rule));
  CHECK_FALSE(key_text_allowed("sk_live_0123456789+bcdef", rule));
  CHECK_FALSE(key_text_allowed(std::string("sk_live_01234567\0abc", 20), rule));
  rule.alphabet = KeyAlphabet::hex;
  CHECK(key_text_allowed("0123456789abcdefABCDEF", rule));
  CHECK_FALSE(key_text_allowed("0123456789abcdefg", rule));
  rule.alphabet = KeyAlphabet::printable;
  CHECK(key_text_allowed("ak_!#$%&'()*+,-./:;<=>?@[]^_`{|}~", rule));
  CHECK_FALSE(key_text_allowed("ak_with a space in it", rule));
  CHECK_FALSE(key_text_allowed("ak_with\ta_tab_in_it__", rule));
}

TEST_CASE("a mapping names the option it breaks") {
  CustomSchema s = *find_preset("api_keys_bcrypt");
  s.prefix_column.clear();
  CHECK(check_schema(s).starts_with("store.credential: bcrypt needs prefix_column"));
  s = *find_preset("owner_abilities");
  s.prefix_column = "key_prefix";
  CHECK(check_schema(s).starts_with("store.credential.prefix_column:"));
  s = *find_preset("owner_abilities");
  s.id_column.clear();
  CHECK(check_schema(s).starts_with("store.columns.id:"));
  s = *find_preset("owner_abilities");
  s.table = "Api Keys";
  CHECK(check_schema(s).starts_with("store.table:"));
  CHECK(is_table_name("auth.api_key"));
  CHECK_FALSE(is_table_name("auth.api_key.x"));
  CHECK_FALSE(is_table_name("api_keys; drop table x"));
  CHECK_FALSE(is_plain_identifier("\"quoted\""));
}

TEST_CASE("information_schema's types are checked column by column") {
  const ResolvedSchema ok = resolved_004();
  CHECK_FALSE(ok.credential_is_bytea);
  CHECK(ok.id_type == "bigint");
  CHECK(ok.last_used_type == "timestamp");

  std::string error;
  auto columns = seed_004_columns();
  columns.erase(columns.begin() + 5);  // no abilities
  resolve_schema(*find_preset("owner_abilities"), columns, error);
  CHECK(error == "store: table api_keys has no column abilities");

  columns = seed_004_columns();
  columns[5] = {"abilities", "integer", "int4"};
  resolve_schema(*find_preset("owner_abilities"), columns, error);
  CHECK(error == "store: column api_keys.abilities is integer; expected text[], json or jsonb (an array of strings)");

  columns = seed_004_columns();
  columns[4] = {"key_hash", "bytea", "bytea"};
  resolve_schema(*find_preset("owner_abilities"), columns, error);
  CHECK(error == "store: column api_keys.key_hash is bytea; expected text, varchar or char for encoding sha256-hex");

  columns = seed_004_columns();
  columns[12] = {"allowed_ips", "ARRAY", "_int4"};
  resolve_schema(*find_preset("owner_abilities"), columns, error);
  CHECK(error.find("api_keys.allowed_ips is int4[]") != std::string::npos);

  resolve_schema(*find_preset("owner_abilities"), {}, error);
  CHECK(error.starts_with("store.table: no table or view api_keys"));
}

TEST_CASE("hmac-sha256 follows the column: hex text or bytea") {
  CustomSchema s = *find_preset("owner_abilities");
  s.encoding = CredentialEncoding::hmac_sha256;
  auto columns = seed_004_columns();
  std::string error;
  CHECK_FALSE(resolve_schema(s, columns, error).credential_is_bytea);
  columns[4] = {"key_hash", "bytea", "bytea"};
  const ResolvedSchema bytes = resolve_schema(s, columns, error);
  CHECK(error.empty());
  CHECK(bytes.credential_is_bytea);
  CHECK(lookup_statement(bytes).find("WHERE \"key_hash\" = $1::bytea LIMIT 2") != std::string::npos);
}

TEST_CASE("the lookup statement reads every mapped column and NULL for the others") {
  const std::string sql = lookup_statement(resolved_004());
  CHECK(sql ==
        "SELECT \"id\"::text, \"owner_type\"::text, \"owner_id\"::text, \"name\"::text, "
        "to_json(\"abilities\")::text, to_json(\"allowed_ips\")::text, \"rate_limit\"::text, "
        "\"window_seconds\"::text, \"is_active\", "
        "(extract(epoch FROM \"expires_at\") * 1000000)::bigint, "
        "(extract(epoch FROM \"revoked_at\") * 1000000)::bigint, NULL FROM \"api_keys\" "
        "WHERE \"key_hash\" = $1 LIMIT 2");

  std::string error;
  const ResolvedSchema bcrypt = resolve_schema(
      *find_preset("api_keys_bcrypt"),
      {{"id", "integer", "int4"}, {"user_id", "uuid", "uuid"}, {"key_hash", "character varying", "varchar"},
       {"key_prefix", "character varying", "varchar"}, {"name", "character varying", "varchar"},
       {"scopes", "ARRAY", "_text"}, {"is_active", "boolean", "bool"},
       {"expires_at", "timestamp with time zone", "timestamptz"},
       {"last_used_at", "timestamp with time zone", "timestamptz"},
       {"revoked_at", "timestamp with time zone", "timestamptz"}},
      error);
  REQUIRE(error.empty());
  const std::string by_prefix = lookup_statement(bcrypt);
  CHECK(by_prefix.find("to_json(\"scopes\")::text, NULL, NULL, NULL, \"is_active\"") != std::string::npos);
  CHECK(by_prefix.ends_with(", \"key_hash\"::text FROM \"api_keys\" WHERE \"key_prefix\" = $1 LIMIT 16"));

  CustomSchema qualified = *find_preset("auth_api_key");
  ResolvedSchema r;
  r.schema = qualified;
  r.id_type = "uuid";
  CHECK(lookup_statement(r).find(" FROM \"auth\".\"api_key\" WHERE \"token\" = $1") != std::string::npos);
}

TEST_CASE("a row decodes into the record, the mapping's fixed values filling the gaps") {
  const ResolvedSchema resolved = resolved_004();
  std::vector<std::string> storage;
  KeyRecord record;
  std::string error;
  REQUIRE(decode_custom_row(resolved,
                            row_of({"7", "App\\Models\\Team", "42", "ci", R"(["orders:read","*"])",
                                    R"(["10.0.0.0/8","::1"])", "5", "10", "t", "1700000000000000",
                                    std::nullopt, std::nullopt},
                                   storage),
                            record, error));
  CHECK(record.id == "7");
  CHECK(record.owner_type == "App\\Models\\Team");
  CHECK(record.owner_id == "42");
  CHECK(record.scopes == std::vector<std::string>{"orders:read", "*"});
  REQUIRE(record.allowed_ips.size() == 2);
  CHECK(record.allowed_ips[0].to_string() == "10.0.0.0/8");
  CHECK(record.rate_limit == 5);
  CHECK(record.window_seconds == 10);
  CHECK(record.is_active);
  REQUIRE(record.expires_at);
  CHECK(std::chrono::duration_cast<std::chrono::seconds>(record.expires_at->time_since_epoch()).count() == 1700000000);
  CHECK_FALSE(record.revoked_at);

  // A table without the columns: the preset's fixed owner type, no scopes, no limit, active.
  REQUIRE(decode_custom_row(resolved,
                            row_of({"8", std::nullopt, std::nullopt, std::nullopt, std::nullopt,
                                    "null", std::nullopt, std::nullopt, std::nullopt, std::nullopt,
                                    std::nullopt, std::nullopt},
                                   storage),
                            record, error));
  CHECK(record.owner_type == "user");
  CHECK(record.scopes.empty());
  CHECK(record.allowed_ips.empty());
  CHECK_FALSE(record.rate_limit);
  CHECK(record.is_active);

  // A rate limit without a window column takes the mapping's window (60 s unless written).
  REQUIRE(decode_custom_row(resolved,
                            row_of({"9", std::nullopt, std::nullopt, std::nullopt, std::nullopt,
                                    std::nullopt, "100", std::nullopt, "f", std::nullopt,
                                    "1700000000000000", std::nullopt},
                                   storage),
                            record, error));
  CHECK(record.window_seconds == 60);
  CHECK_FALSE(record.is_active);
  CHECK(record.revoked_at);
}

TEST_CASE("a row keygate cannot read is refused, naming the column and never a value") {
  const ResolvedSchema resolved = resolved_004();
  std::vector<std::string> storage;
  KeyRecord record;
  std::string error;
  auto decode = [&](int column, std::string value) {
    std::vector<std::optional<std::string>> values(12, std::nullopt);
    values[0] = "1";
    values[static_cast<std::size_t>(column)] = std::move(value);
    return decode_custom_row(resolved, row_of(values, storage), record, error);
  };
  CHECK_FALSE(decode(4, R"({"orders": "read"})"));
  CHECK(error == "column api_keys.abilities: not an array of strings");
  CHECK_FALSE(decode(4, R"(["a", 1])"));
  CHECK_FALSE(decode(5, R"(["10.0.0.300"])"));
  CHECK(error == "column api_keys.allowed_ips: an element is not an IP address or network");
  CHECK_FALSE(decode(6, "0"));
  CHECK(error == "column api_keys.rate_limit: not a positive number of requests");
  CHECK_FALSE(decode(9, "99999999999999999999"));
  CHECK(error == "column api_keys.expires_at: a time keygate cannot represent");

  std::vector<std::optional<std::string>> no_id(12, std::nullopt);
  CHECK_FALSE(decode_custom_row(resolved, row_of(no_id, storage), record, error));
  CHECK(error == "column api_keys.id: the key's id is null or empty");
}

TEST_CASE("config: store.preset with options written over it") {
  const Config config = parse_config(
      "store:\n"
      "  columns: { scopes: none, last_used_at: seen_at }\n"
      "  schema: custom\n"
      "  preset: owner_abilities\n"
      "  key_format: { min_length: 20, alphabet: hex }\n",
      "config.yaml", {});
  CHECK(config.store.schema == Config::Store::Schema::custom);
  CHECK(config.store.preset == "owner_abilities");
  CHECK(config.store.custom.table == "api_keys");
  CHECK(config.store.custom.scopes_column.empty());
  CHECK(config.store.custom.last_used_column == "seen_at");
  CHECK(config.store.custom.key_text.min_length == 20);
  CHECK(config.store.custom.key_text.alphabet == KeyAlphabet::hex);
  CHECK(parse_config("", "config.yaml", {}).store.schema == Config::Store::Schema::native);
}

TEST_CASE("config: a custom mapping written out in full") {
  const Config config = parse_config(
      "keys: { pepper: a-pepper-of-thirty-two-bytes-or-more-0123 }\n"
      "store:\n"
      "  schema: custom\n"
      "  table: billing.tokens\n"
      "  credential: { column: token_hmac, encoding: hmac-sha256 }\n"
      "  columns: { id: token_id, owner_id: account_id, rate_limit: per_minute }\n"
      "  owner_type: account\n"
      "  window: 1m\n",
      "config.yaml", {});
  const CustomSchema& s = config.store.custom;
  CHECK(s.table == "billing.tokens");
  CHECK(s.encoding == CredentialEncoding::hmac_sha256);
  CHECK(s.owner_type == "account");
  CHECK(s.window_seconds == 60);
}

TEST_CASE("config: every store mistake is one line naming the option") {
  CHECK(config_error("store: { schema: legacy }\n") ==
        "config.yaml:1: store.schema: expected native or custom, got \"legacy\"");
  CHECK(config_error("store: { schema: custom, preset: firebase }\n") ==
        "config.yaml:1: store.preset: expected one of supabase_api_keys, auth_api_key, "
        "user_api_key, api_keys_bcrypt, owner_abilities, got \"firebase\"");
  CHECK(config_error("store: { preset: user_api_key }\n") ==
        "config.yaml:1: store.schema: the table options need schema: custom (native is keygate's own api_keys)");
  CHECK(config_error("store:\n  schema: custom\n  preset: user_api_key\n  columns: { id: \"Id\" }\n") ==
        "config.yaml:4: store.columns.id: expected a column name ([a-z_][a-z0-9_]*, at most 63 characters) or none, got \"Id\"");
  CHECK(config_error("store:\n  schema: custom\n  preset: user_api_key\n  credential: { encoding: md5 }\n") ==
        "config.yaml:4: store.credential.encoding: expected sha256-hex, sha256-bytea, hmac-sha256, bcrypt or plain, got \"md5\"");
  CHECK(config_error("store:\n  schema: custom\n  table: api_keys\n") ==
        "config.yaml:1: store.credential.column: the column that holds the credential is required");
  CHECK(config_error("store:\n  schema: custom\n  preset: owner_abilities\n  credential: { encoding: hmac-sha256 }\n") ==
        "config.yaml:1: keys.pepper: missing: store.credential.encoding hmac-sha256 needs the pepper its hashes were made with");
  CHECK(config_error("store:\n  schema: custom\n  preset: owner_abilities\n  window: 1500ms\n") ==
        "config.yaml:4: store.window: expected whole seconds from 1s to 24h, got \"1500ms\"");
  CHECK(config_error("store:\n  schema: custom\n  preset: api_keys_bcrypt\n  key_format: { min_length: 10 }\n") ==
        "config.yaml:1: store.credential.prefix_length: longer than store.key_format.min_length");
  CHECK(config_error("store:\n  schema: custom\n  preset: user_api_key\n  colums: {}\n") ==
        "config.yaml:4: store.colums: unknown option (did you mean store.columns?)");
}

namespace {

// Seed 003's api_key_usage, as information_schema reports it.
std::vector<ColumnType> seed_003_usage_columns() {
  return {{"id", "integer", "int4", true},
          {"api_key_id", "integer", "int4"},
          {"endpoint", "character varying", "varchar"},
          {"method", "character varying", "varchar"},
          {"status_code", "integer", "int4"},
          {"ip_address", "inet", "inet"},
          {"user_agent", "text", "text"},
          {"response_time_ms", "integer", "int4"},
          {"created_at", "timestamp with time zone", "timestamptz", true}};
}

ResolvedSchema resolved_003() {
  ResolvedSchema r;
  r.schema = *find_preset("api_keys_bcrypt");
  r.id_type = "integer";
  return r;
}

}  // namespace

TEST_CASE("the usage table has keygate's usage columns, in types COPY can fill") {
  CHECK(check_usage_table(resolved_003(), seed_003_usage_columns()).empty());

  auto columns = seed_003_usage_columns();
  columns[5] = {"ip_address", "text", "text"};  // an address kept as text is fine
  CHECK(check_usage_table(resolved_003(), columns).empty());

  columns = seed_003_usage_columns();
  columns.erase(columns.begin() + 3);  // no method
  CHECK(check_usage_table(resolved_003(), columns) ==
        "store.usage_table: table api_key_usage has no column method (keygate writes api_key_id, endpoint, "
        "method, status_code, ip_address, user_agent, response_time_ms, created_at)");

  columns = seed_003_usage_columns();
  columns[4] = {"status_code", "text", "text"};
  CHECK(check_usage_table(resolved_003(), columns) ==
        "store.usage_table: column api_key_usage.status_code is text; expected integer, smallint or bigint");

  columns = seed_003_usage_columns();
  columns[5] = {"ip_address", "cidr", "cidr"};
  CHECK(check_usage_table(resolved_003(), columns) ==
        "store.usage_table: column api_key_usage.ip_address is cidr; expected inet or text");

  // The key ids must fit: integer ids go into any integer type or text, uuids into uuid or text.
  columns = seed_003_usage_columns();
  columns[1] = {"api_key_id", "uuid", "uuid"};
  CHECK(check_usage_table(resolved_003(), columns) ==
        "store.usage_table: column api_key_usage.api_key_id is uuid; the key ids (api_keys.id) are integer");
  columns[1] = {"api_key_id", "bigint", "int8"};
  CHECK(check_usage_table(resolved_003(), columns).empty());
  ResolvedSchema uuid_ids = resolved_003();
  uuid_ids.id_type = "uuid";
  CHECK_FALSE(check_usage_table(uuid_ids, columns).empty());
  columns[1] = {"api_key_id", "text", "text"};
  CHECK(check_usage_table(uuid_ids, columns).empty());

  CHECK(check_usage_table(resolved_003(), {}).starts_with("store.usage_table: no table api_key_usage"));
}

TEST_CASE("the poll's change signature is the row count and the rows' versions") {
  CHECK(change_signature_statement(resolved_004()) ==
        "SELECT count(*)::text || ':' || coalesce(sum(xmin::text::bigint), 0)::text FROM \"api_keys\"");
  ResolvedSchema r;
  r.schema = *find_preset("auth_api_key");
  CHECK(change_signature_statement(r).ends_with(" FROM \"auth\".\"api_key\""));
}

TEST_CASE("config: store.revocation and poll_interval") {
  const Config polled = parse_config(
      "store:\n  schema: custom\n  preset: user_api_key\n  revocation: poll\n  poll_interval: 250ms\n",
      "config.yaml", {});
  CHECK(polled.store.revocation == Config::Store::Revocation::poll);
  CHECK(polled.store.poll_interval == std::chrono::milliseconds(250));
  const Config notified = parse_config("store:\n  schema: custom\n  preset: user_api_key\n", "config.yaml", {});
  CHECK(notified.store.revocation == Config::Store::Revocation::notify);
  CHECK(notified.store.poll_interval == std::chrono::milliseconds(500));

  CHECK(config_error("store:\n  schema: custom\n  preset: user_api_key\n  revocation: listen\n") ==
        "config.yaml:4: store.revocation: expected notify or poll, got \"listen\"");
  CHECK(config_error("store:\n  revocation: poll\n") ==
        "config.yaml:2: store.revocation: poll is for schema: custom (keygate's own api_keys always has "
        "its NOTIFY trigger)");
  CHECK(config_error("store:\n  schema: custom\n  preset: user_api_key\n  poll_interval: 1s\n") ==
        "config.yaml:4: store.poll_interval: needs revocation: poll");
  CHECK(config_error("store:\n  schema: custom\n  preset: user_api_key\n  revocation: poll\n  poll_interval: 50ms\n") ==
        "config.yaml:5: store.poll_interval: expected 100ms to 1m, got \"50ms\"");
}
