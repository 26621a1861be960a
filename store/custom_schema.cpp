#include "store/custom_schema.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <utility>

#include "core/ip_network.hpp"
#include "core/text.hpp"
#include "store/usage_encoding.hpp"

namespace keygate::store {

namespace {

constexpr std::array<std::pair<CredentialEncoding, std::string_view>, 5> encoding_names{{
    {CredentialEncoding::sha256_hex, "sha256-hex"},
    {CredentialEncoding::sha256_bytea, "sha256-bytea"},
    {CredentialEncoding::hmac_sha256, "hmac-sha256"},
    {CredentialEncoding::bcrypt, "bcrypt"},
    {CredentialEncoding::plain, "plain"},
}};

constexpr std::array<std::pair<KeyAlphabet, std::string_view>, 5> alphabet_names{{
    {KeyAlphabet::base62, "base62"},
    {KeyAlphabet::base64url, "base64url"},
    {KeyAlphabet::base64, "base64"},
    {KeyAlphabet::hex, "hex"},
    {KeyAlphabet::printable, "printable"},
}};

bool in_alphabet(char c, KeyAlphabet alphabet) {
  const bool alphanumeric = core::is_ascii_alpha(c) || core::is_ascii_digit(c);
  switch (alphabet) {
    case KeyAlphabet::base62: return alphanumeric;
    case KeyAlphabet::base64url: return alphanumeric || c == '-' || c == '_';
    case KeyAlphabet::base64: return alphanumeric || c == '+' || c == '/' || c == '=';
    case KeyAlphabet::hex:
      return core::is_ascii_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    case KeyAlphabet::printable: return c > 0x20 && c < 0x7f;
  }
  return false;
}

// The presets: each seed's table exactly as its project creates it (see ../shared/seeds and
// the README). Keys there are the project's own, so the text rule is wide.
std::vector<std::pair<std::string_view, CustomSchema>> make_presets() {
  std::vector<std::pair<std::string_view, CustomSchema>> presets;

  CustomSchema supabase;  // 000: the key itself in `key`, permissions as jsonb
  supabase.table = "api_keys";
  supabase.credential_column = "key";
  supabase.encoding = CredentialEncoding::plain;
  supabase.id_column = "id";
  supabase.owner_id_column = "user_id";
  supabase.name_column = "name";
  supabase.scopes_column = "permissions";
  supabase.expires_at_column = "expires_at";
  supabase.last_used_column = "last_used";
  supabase.key_text.alphabet = KeyAlphabet::printable;
  presets.emplace_back("supabase_api_keys", supabase);

  CustomSchema auth;  // 001: a trigger fills `token`; revoked_at; no scopes
  auth.table = "auth.api_key";
  auth.credential_column = "token";
  auth.encoding = CredentialEncoding::plain;
  auth.id_column = "jti";
  auth.owner_id_column = "user_id";
  auth.name_column = "description";
  auth.expires_at_column = "expires_at";
  auth.revoked_at_column = "revoked_at";
  auth.key_text.alphabet = KeyAlphabet::printable;
  presets.emplace_back("auth_api_key", auth);

  CustomSchema user;  // 002: key_id holds SHA-256(key) in hex; is_active; no scopes, no expiry
  user.table = "api.user_api_key";
  user.credential_column = "key_id";
  user.encoding = CredentialEncoding::sha256_hex;
  user.id_column = "api_key_id";
  user.owner_id_column = "user_id";
  user.name_column = "key_name";
  user.is_active_column = "is_active";
  user.last_used_column = "last_used";
  presets.emplace_back("user_api_key", user);

  CustomSchema bcrypt;  // 003: bcrypt in key_hash, the first 12 characters in key_prefix
  bcrypt.table = "api_keys";
  bcrypt.credential_column = "key_hash";
  bcrypt.encoding = CredentialEncoding::bcrypt;
  bcrypt.prefix_column = "key_prefix";
  bcrypt.prefix_length = 12;
  bcrypt.id_column = "id";
  bcrypt.owner_id_column = "user_id";
  bcrypt.name_column = "name";
  bcrypt.scopes_column = "scopes";
  bcrypt.expires_at_column = "expires_at";
  bcrypt.revoked_at_column = "revoked_at";
  bcrypt.is_active_column = "is_active";
  bcrypt.last_used_column = "last_used_at";
  bcrypt.usage_table = "api_key_usage";
  presets.emplace_back("api_keys_bcrypt", bcrypt);

  CustomSchema owner;  // 004: polymorphic owner, abilities, allowed IPs, its own rate limit
  owner.table = "api_keys";
  owner.credential_column = "key_hash";
  owner.encoding = CredentialEncoding::sha256_hex;
  owner.id_column = "id";
  owner.owner_type_column = "owner_type";
  owner.owner_id_column = "owner_id";
  owner.name_column = "name";
  owner.scopes_column = "abilities";
  owner.expires_at_column = "expires_at";
  owner.revoked_at_column = "revoked_at";
  owner.is_active_column = "is_active";
  owner.allowed_ips_column = "allowed_ips";
  owner.rate_limit_column = "rate_limit";
  owner.window_column = "window_seconds";
  owner.last_used_column = "last_used_at";
  presets.emplace_back("owner_abilities", owner);
  return presets;
}

const std::vector<std::pair<std::string_view, CustomSchema>>& presets() {
  static const auto all = make_presets();
  return all;
}

std::string quote_identifier(std::string_view name) { return "\"" + std::string(name) + "\""; }

// The mapping's own fixed values (owner_type) in a statement; doubled quotes, as SQL has it.
std::string quote_literal(std::string_view text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

std::string quoted_table(std::string_view table) {
  const std::optional<std::string> schema = schema_part(table);
  return (schema ? quote_identifier(*schema) + "." : std::string()) +
         quote_identifier(table_part(table));
}

// The column types each field accepts.
enum class Kind { text, identifier, bytea, string_list, network_list, timestamp, boolean, integer, address };

bool is_text_type(const ColumnType& c) {
  return c.data_type == "text" || c.data_type == "character varying" || c.data_type == "character";
}

bool accepts(Kind kind, const ColumnType& c) {
  const std::string& t = c.data_type;
  switch (kind) {
    case Kind::text: return is_text_type(c);
    case Kind::identifier:
      return is_text_type(c) || t == "uuid" || t == "integer" || t == "bigint" || t == "smallint";
    case Kind::bytea: return t == "bytea";
    case Kind::string_list:
      return t == "json" || t == "jsonb" ||
             (t == "ARRAY" && (c.udt_name == "_text" || c.udt_name == "_varchar"));
    case Kind::network_list:
      return t == "json" || t == "jsonb" ||
             (t == "ARRAY" && (c.udt_name == "_cidr" || c.udt_name == "_inet" ||
                               c.udt_name == "_text" || c.udt_name == "_varchar"));
    case Kind::timestamp: return t == "timestamp with time zone" || t == "timestamp without time zone";
    case Kind::boolean: return t == "boolean";
    case Kind::integer: return t == "integer" || t == "smallint" || t == "bigint";
    case Kind::address: return t == "inet" || is_text_type(c);
  }
  return false;
}

std::string_view expected(Kind kind) {
  switch (kind) {
    case Kind::text: return "text, varchar or char";
    case Kind::identifier: return "uuid, an integer type or text";
    case Kind::bytea: return "bytea";
    case Kind::string_list: return "text[], json or jsonb (an array of strings)";
    case Kind::network_list: return "cidr[], inet[], text[], json or jsonb (an array of strings)";
    case Kind::timestamp: return "timestamp with or without time zone";
    case Kind::boolean: return "boolean";
    case Kind::integer: return "integer, smallint or bigint";
    case Kind::address: return "inet or text";
  }
  return "";
}

std::string type_name(const ColumnType& c) {
  if (c.data_type == "ARRAY") return c.udt_name.substr(c.udt_name.starts_with('_') ? 1 : 0) + "[]";
  return c.data_type;
}

// The name a parameter is cast to for this column's type.
std::string cast_name(const ColumnType& c) {
  if (c.data_type == "ARRAY") return c.udt_name.substr(c.udt_name.starts_with('_') ? 1 : 0) + "[]";
  if (c.data_type == "character varying") return "varchar";
  if (c.data_type == "character") return "bpchar";
  if (c.data_type == "timestamp with time zone") return "timestamptz";
  if (c.data_type == "timestamp without time zone") return "timestamp";
  return c.data_type;
}

std::string micros(const std::string& column) {
  return "(extract(epoch FROM " + quote_identifier(column) + ") * 1000000)::bigint";
}

template <typename Int>
std::optional<Int> to_int(std::string_view text) {
  Int value{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// A JSON array of strings (null: empty). False for anything else.
bool parse_string_array(std::string_view json, std::vector<std::string>& out) {
  out.clear();
  boost::system::error_code ec;
  const boost::json::value value = boost::json::parse(json, ec);
  if (ec) return false;
  if (value.is_null()) return true;
  if (!value.is_array()) return false;
  for (const boost::json::value& item : value.get_array()) {
    if (!item.is_string()) return false;
    out.emplace_back(item.get_string());
  }
  return true;
}

}  // namespace

bool key_text_allowed(std::string_view key, const KeyTextRule& rule) {
  if (key.size() < rule.min_length || key.size() > rule.max_length) return false;
  return std::all_of(key.begin(), key.end(), [&](char c) { return in_alphabet(c, rule.alphabet); });
}

const CustomSchema* find_preset(std::string_view name) {
  for (const auto& [preset_name, schema] : presets()) {
    if (preset_name == name) return &schema;
  }
  return nullptr;
}

std::vector<std::string_view> preset_names() {
  std::vector<std::string_view> names;
  for (const auto& preset : presets()) names.push_back(preset.first);
  return names;
}

namespace {

template <typename T, std::size_t N>
std::string_view name_in(const std::array<std::pair<T, std::string_view>, N>& names, T wanted) {
  for (const auto& [value, name] : names) {
    if (value == wanted) return name;
  }
  return "";
}

template <typename T, std::size_t N>
std::optional<T> value_in(const std::array<std::pair<T, std::string_view>, N>& names, std::string_view wanted) {
  for (const auto& [value, name] : names) {
    if (name == wanted) return value;
  }
  return std::nullopt;
}

}  // namespace

std::string_view name_of(CredentialEncoding encoding) { return name_in(encoding_names, encoding); }
std::optional<CredentialEncoding> credential_encoding_named(std::string_view name) {
  return value_in(encoding_names, name);
}
std::string_view name_of(KeyAlphabet alphabet) { return name_in(alphabet_names, alphabet); }
std::optional<KeyAlphabet> key_alphabet_named(std::string_view name) { return value_in(alphabet_names, name); }

bool is_plain_identifier(std::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  if (!(name[0] == '_' || (name[0] >= 'a' && name[0] <= 'z'))) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return c == '_' || (c >= 'a' && c <= 'z') || core::is_ascii_digit(c);
  });
}

bool is_table_name(std::string_view name) {
  const std::size_t dot = name.find('.');
  if (dot == std::string_view::npos) return is_plain_identifier(name);
  return is_plain_identifier(name.substr(0, dot)) && is_plain_identifier(name.substr(dot + 1));
}

std::optional<std::string> schema_part(std::string_view table) {
  const std::size_t dot = table.find('.');
  if (dot == std::string_view::npos) return std::nullopt;
  return std::string(table.substr(0, dot));
}

std::string table_part(std::string_view table) {
  const std::size_t dot = table.find('.');
  return std::string(dot == std::string_view::npos ? table : table.substr(dot + 1));
}

std::string check_schema(const CustomSchema& schema) {
  if (!is_table_name(schema.table)) return "store.table: expected a table name like api_keys or auth.api_key";
  if (schema.credential_column.empty()) return "store.credential.column: the column that holds the credential is required";
  if (schema.id_column.empty()) return "store.columns.id: the column that identifies a key is required";
  if (schema.encoding == CredentialEncoding::bcrypt) {
    if (schema.prefix_column.empty() || schema.prefix_length == 0) {
      return "store.credential: bcrypt needs prefix_column and prefix_length (a bcrypt per "
             "candidate row is too slow to scan the table)";
    }
    if (schema.prefix_length > schema.key_text.min_length) {
      return "store.credential.prefix_length: longer than store.key_format.min_length";
    }
  } else if (!schema.prefix_column.empty()) {
    return "store.credential.prefix_column: only bcrypt narrows candidates by a prefix";
  }
  if (schema.window_seconds && (*schema.window_seconds < 1 || *schema.window_seconds > 86400)) {
    return "store.window: expected 1s to 24h";
  }
  if (schema.key_text.min_length < 8 || schema.key_text.min_length > schema.key_text.max_length ||
      schema.key_text.max_length > 512) {
    return "store.key_format: expected 8 <= min_length <= max_length <= 512";
  }
  return {};
}

ResolvedSchema resolve_schema(const CustomSchema& schema, const std::vector<ColumnType>& columns,
                              std::string& error) {
  ResolvedSchema resolved;
  resolved.schema = schema;
  error.clear();
  if (columns.empty()) {
    error = "store.table: no table or view " + schema.table +
            " that this role can read (check the name, search_path and grants)";
    return resolved;
  }
  const std::string table = table_part(schema.table);
  const std::pair<const std::string*, Kind> mapped[] = {
      {&schema.credential_column,
       schema.encoding == CredentialEncoding::sha256_bytea ? Kind::bytea : Kind::text},
      {&schema.prefix_column, Kind::text},
      {&schema.id_column, Kind::identifier},
      {&schema.owner_type_column, Kind::text},
      {&schema.owner_id_column, Kind::identifier},
      {&schema.name_column, Kind::text},
      {&schema.scopes_column, Kind::string_list},
      {&schema.expires_at_column, Kind::timestamp},
      {&schema.revoked_at_column, Kind::timestamp},
      {&schema.is_active_column, Kind::boolean},
      {&schema.allowed_ips_column, Kind::network_list},
      {&schema.rate_limit_column, Kind::integer},
      {&schema.window_column, Kind::integer},
      {&schema.last_used_column, Kind::timestamp},
  };
  for (const auto& [column, kind] : mapped) {
    if (column->empty()) continue;
    const std::string& name = *column;  // clang 14: a lambda may not capture a structured binding
    const auto found = std::find_if(columns.begin(), columns.end(),
                                    [&name](const ColumnType& c) { return c.name == name; });
    if (found == columns.end()) {
      error = "store: table " + schema.table + " has no column " + *column;
      return resolved;
    }
    Kind wanted = kind;
    // HMAC-SHA-256 may be stored as hex text or as bytes; the column says which.
    if (column == &schema.credential_column && schema.encoding == CredentialEncoding::hmac_sha256 &&
        found->data_type == "bytea") {
      wanted = Kind::bytea;
      resolved.credential_is_bytea = true;
    }
    if (column == &schema.credential_column && schema.encoding == CredentialEncoding::sha256_bytea) {
      resolved.credential_is_bytea = true;
    }
    if (column == &schema.id_column) resolved.id_type = cast_name(*found);
    if (column == &schema.last_used_column) resolved.last_used_type = cast_name(*found);
    if (column == &schema.scopes_column) resolved.scopes_type = cast_name(*found);
    if (column == &schema.owner_id_column) resolved.owner_id_type = cast_name(*found);
    if (column == &schema.expires_at_column) resolved.expires_at_type = cast_name(*found);
    if (column == &schema.revoked_at_column) resolved.revoked_at_type = cast_name(*found);
    if (column == &schema.id_column) resolved.id_has_default = found->has_default;
    if (!accepts(wanted, *found)) {
      error = "store: column " + table + "." + *column + " is " + type_name(*found) +
              "; expected " + std::string(expected(wanted));
      if (column == &schema.credential_column) {
        error += " for encoding " + std::string(name_of(schema.encoding));
      }
      return resolved;
    }
  }
  return resolved;
}

namespace {

// A column that can hold the ids of a key table whose id column is cast as `id_type`.
bool holds_ids_of(const std::string& id_type, const ColumnType& column) {
  const std::string type = cast_name(column);
  const auto is_integer = [](std::string_view t) { return t == "integer" || t == "bigint" || t == "smallint"; };
  const auto is_text = [](std::string_view t) { return t == "text" || t == "varchar" || t == "bpchar"; };
  if (is_text(type)) return true;  // every id has a text form
  if (is_integer(id_type)) return is_integer(type);
  return type == id_type;
}

}  // namespace

std::string check_usage_table(const ResolvedSchema& resolved, const std::vector<ColumnType>& columns) {
  const CustomSchema& schema = resolved.schema;
  const std::string where = "store.usage_table: ";
  if (columns.empty()) {
    return where + "no table " + schema.usage_table + " that this role can read (check the name, search_path and grants)";
  }
  // keygate's usage columns (custom_usage_columns), each with the types COPY text can fill.
  const std::pair<std::string_view, Kind> wanted[] = {
      {"api_key_id", Kind::identifier}, {"endpoint", Kind::text},       {"method", Kind::text},
      {"status_code", Kind::integer},   {"ip_address", Kind::address},  {"user_agent", Kind::text},
      {"response_time_ms", Kind::integer}, {"created_at", Kind::timestamp},
  };
  const std::string table = table_part(schema.usage_table);
  for (const auto& [name, kind] : wanted) {
    const std::string_view column = name;  // clang 14: a lambda may not capture a structured binding
    const auto found = std::find_if(columns.begin(), columns.end(),
                                    [column](const ColumnType& c) { return c.name == column; });
    if (found == columns.end()) {
      return where + "table " + schema.usage_table + " has no column " + std::string(column) +
             " (keygate writes " + std::string(custom_usage_columns) + ")";
    }
    if (!accepts(kind, *found)) {
      return where + "column " + table + "." + std::string(column) + " is " + type_name(*found) +
             "; expected " + std::string(expected(kind));
    }
    if (column == "api_key_id" && !holds_ids_of(resolved.id_type, *found)) {
      return where + "column " + table + ".api_key_id is " + type_name(*found) + "; the key ids (" +
             schema.table + "." + schema.id_column + ") are " + resolved.id_type;
    }
  }
  return {};
}

std::string change_signature_statement(const ResolvedSchema& resolved) {
  // xid has no cast to bigint; through text it is the 32-bit counter, so a sum over even a
  // billion rows fits.
  return "SELECT count(*)::text || ':' || coalesce(sum(xmin::text::bigint), 0)::text FROM " +
         quoted_table(resolved.schema.table);
}

const char* columns_query() {
  return "SELECT column_name::text, data_type::text, udt_name::text, "
         "(column_default IS NOT NULL OR is_identity = 'YES' OR is_generated = 'ALWAYS')::text "
         "FROM information_schema.columns "
         "WHERE table_schema = coalesce($1::text, current_schema()) AND table_name = $2::text "
         "ORDER BY ordinal_position";
}

namespace {

// lookup_statement()'s columns, in decode_custom_row()'s order, with the stored credential last
// when `credential` (else NULL).
std::string select_list(const ResolvedSchema& resolved, bool credential) {
  const CustomSchema& s = resolved.schema;
  auto column_or_null = [](const std::string& column, const std::string& expression) {
    return column.empty() ? std::string("NULL") : expression;
  };
  auto as_text = [&](const std::string& column) {
    return column_or_null(column, quote_identifier(column) + "::text");
  };
  auto as_json = [&](const std::string& column) {
    return column_or_null(column, "to_json(" + quote_identifier(column) + ")::text");
  };
  return as_text(s.id_column) + ", " + as_text(s.owner_type_column) + ", " +
                    as_text(s.owner_id_column) + ", " + as_text(s.name_column) + ", " +
                    as_json(s.scopes_column) + ", " + as_json(s.allowed_ips_column) + ", " +
                    as_text(s.rate_limit_column) + ", " + as_text(s.window_column) + ", " +
                    column_or_null(s.is_active_column, quote_identifier(s.is_active_column)) + ", " +
                    column_or_null(s.expires_at_column, micros(s.expires_at_column)) + ", " +
                    column_or_null(s.revoked_at_column, micros(s.revoked_at_column)) + ", " +
                    (credential ? as_text(s.credential_column) : std::string("NULL"));
}

// now() in the column's own type: a timestamp without time zone holds UTC.
std::string now_for(const std::string& type) {
  return type == "timestamp" ? "(now() AT TIME ZONE 'UTC')" : "now()";
}

}  // namespace

std::string lookup_statement(const ResolvedSchema& resolved) {
  const CustomSchema& s = resolved.schema;
  const bool bcrypt = s.encoding == CredentialEncoding::bcrypt;
  std::string sql = "SELECT " + select_list(resolved, bcrypt) + " FROM " + quoted_table(s.table) + " WHERE ";
  const std::string& matched = bcrypt ? s.prefix_column : s.credential_column;
  // An untyped $1 takes the column's own type (char(64) compares as char), so its index serves.
  sql += quote_identifier(matched) + (resolved.credential_is_bytea ? " = $1::bytea" : " = $1");
  sql += " LIMIT " + std::to_string(bcrypt ? max_bcrypt_candidates : 2);
  return sql;
}

bool decode_custom_row(const ResolvedSchema& resolved, const CustomRow& row, KeyRecord& record,
                       std::string& error) {
  const CustomSchema& s = resolved.schema;
  if (row.values.size() < static_cast<std::size_t>(custom_row_columns) ||
      row.null.size() < static_cast<std::size_t>(custom_row_columns)) {
    error = "unexpected row shape";
    return false;
  }
  auto value = [&](int i) -> std::optional<std::string_view> {
    if (row.null[static_cast<std::size_t>(i)]) return std::nullopt;
    return row.values[static_cast<std::size_t>(i)];
  };
  auto fail = [&](const std::string& column, std::string_view why) {
    error = "column " + table_part(s.table) + "." + column + ": " + std::string(why);
    return false;
  };

  const auto id = value(0);
  if (!id || id->empty()) return fail(s.id_column, "the key's id is null or empty");
  record.id = std::string(*id);
  record.owner_type = value(1) ? std::string(*value(1)) : s.owner_type;
  record.owner_id = value(2) ? std::string(*value(2)) : std::string();
  record.name = value(3) ? std::string(*value(3)) : std::string();

  record.scopes.clear();
  if (const auto scopes = value(4); scopes && !parse_string_array(*scopes, record.scopes)) {
    return fail(s.scopes_column, "not an array of strings");
  }
  record.allowed_ips.clear();
  if (const auto ips = value(5)) {
    std::vector<std::string> texts;
    if (!parse_string_array(*ips, texts)) return fail(s.allowed_ips_column, "not an array of strings");
    for (const std::string& text : texts) {
      const auto network = core::IpNetwork::parse(text);
      if (!network) return fail(s.allowed_ips_column, "an element is not an IP address or network");
      record.allowed_ips.push_back(*network);
    }
  }

  record.rate_limit.reset();
  record.window_seconds.reset();
  if (const auto limit = value(6)) {
    const auto requests = to_int<int>(*limit);
    if (!requests || *requests < 1) return fail(s.rate_limit_column, "not a positive number of requests");
    record.rate_limit = *requests;
    if (const auto window = value(7)) {
      const auto seconds = to_int<int>(*window);
      if (!seconds || *seconds < 1 || *seconds > 86400) return fail(s.window_column, "not 1 to 86400 seconds");
      record.window_seconds = *seconds;
    } else {
      record.window_seconds = s.window_seconds.value_or(60);
    }
  }
  record.quota.reset();
  record.quota_period_seconds.reset();

  record.is_active = !value(8) || *value(8) == "t";
  auto read_time = [&](int i, const std::string& column, std::optional<TimePoint>& out) {
    out.reset();
    const auto text = value(i);
    if (!text) return true;
    const auto micros_since_epoch = to_int<std::int64_t>(*text);
    // Beyond what system_clock holds (year 2262 in nanoseconds): refused, not wrapped.
    constexpr std::int64_t limit = std::chrono::duration_cast<std::chrono::microseconds>(
                                       Clock::duration::max()).count() / 2;
    if (!micros_since_epoch || *micros_since_epoch > limit || *micros_since_epoch < -limit) {
      return fail(column, "a time keygate cannot represent");
    }
    out = TimePoint(std::chrono::duration_cast<Clock::duration>(std::chrono::microseconds(*micros_since_epoch)));
    return true;
  };
  return read_time(9, s.expires_at_column, record.expires_at) &&
         read_time(10, s.revoked_at_column, record.revoked_at);
}

}  // namespace keygate::store

namespace keygate::store {

std::string insert_statement(const ResolvedSchema& resolved, bool with_scopes, bool with_expiry,
                             std::string& error) {
  const CustomSchema& s = resolved.schema;
  error.clear();
  if (!resolved.id_has_default && resolved.id_type != "uuid") {
    error = "the id column " + s.id_column + " has no default, so keygate cannot make an id for a new row";
    return {};
  }
  if (with_scopes && s.scopes_column.empty()) {
    error = "the table has no scopes column (store.columns.scopes)";
    return {};
  }
  if (with_expiry && s.expires_at_column.empty()) {
    error = "the table has no expiry column (store.columns.expires_at)";
    return {};
  }
  std::vector<std::pair<std::string, std::string>> values;  // column, expression
  // Parameters are cast to text, then to the column's type by the INSERT's assignment (text
  // to uuid, bigint, jsonb or text[] is each type's input function).
  values.emplace_back(s.credential_column, resolved.credential_is_bytea ? "$1::bytea" : "$1::text");
  if (!s.prefix_column.empty()) values.emplace_back(s.prefix_column, "$2::text");
  if (!s.owner_type_column.empty()) values.emplace_back(s.owner_type_column, "$3::text");
  if (!s.owner_id_column.empty()) values.emplace_back(s.owner_id_column, "$4::text::" + resolved.owner_id_type);
  if (!s.name_column.empty()) values.emplace_back(s.name_column, "$5::text");
  if (with_scopes) values.emplace_back(s.scopes_column, "$6::text::" + resolved.scopes_type);
  if (with_expiry) {
    values.emplace_back(s.expires_at_column,
                        now_for(resolved.expires_at_type) + " + $7::bigint * interval '1 millisecond'");
  }
  if (!resolved.id_has_default) values.emplace_back(s.id_column, "gen_random_uuid()");
  std::string columns, expressions;
  for (const auto& [column, expression] : values) {
    columns += (columns.empty() ? "" : ", ") + quote_identifier(column);
    expressions += (expressions.empty() ? "" : ", ") + expression;
  }
  // A parameter no column takes is still typed, or PostgreSQL refuses the statement.
  std::string unused;
  for (int n = 2; n <= 7; ++n) {
    const std::string p = "$" + std::to_string(n);
    if (expressions.find(p + "::") == std::string::npos) unused += ", " + p + "::text";
  }
  std::string sql = "INSERT INTO " + quoted_table(s.table) + " (" + columns + ") SELECT " + expressions;
  if (!unused.empty()) sql += " WHERE num_nulls(NULL" + unused + ") >= 0";  // always true
  return sql + " RETURNING " + select_list(resolved, true);
}

std::string list_statement(const ResolvedSchema& resolved) {
  const CustomSchema& s = resolved.schema;
  const std::string type_matches = s.owner_type_column.empty()
                                       ? "$1::text = " + quote_literal(s.owner_type)
                                       : quote_identifier(s.owner_type_column) + "::text = $1::text";
  const std::string id_matches = s.owner_id_column.empty()
                                     ? std::string("$2::text IS NULL")
                                     : quote_identifier(s.owner_id_column) + "::text = $2::text";
  return "SELECT " + select_list(resolved, false) + " FROM " + quoted_table(s.table) + " WHERE ($1::text IS NULL OR (" +
         type_matches + " AND " + id_matches + ")) ORDER BY " + quote_identifier(s.id_column);
}

std::string revoke_statement(const ResolvedSchema& resolved, std::string& error) {
  const CustomSchema& s = resolved.schema;
  error.clear();
  if (s.revoked_at_column.empty() && s.is_active_column.empty()) {
    error = "the table has neither a revoked_at nor an is_active column; delete the row to revoke the key";
    return {};
  }
  std::string set, still_valid;
  if (!s.revoked_at_column.empty()) {
    set = quote_identifier(s.revoked_at_column) + " = " + now_for(resolved.revoked_at_type);
    still_valid = quote_identifier(s.revoked_at_column) + " IS NULL";
  }
  if (!s.is_active_column.empty()) {
    set += (set.empty() ? "" : ", ") + quote_identifier(s.is_active_column) + " = false";
    still_valid += (still_valid.empty() ? "" : " OR ") + quote_identifier(s.is_active_column);
  }
  return "UPDATE " + quoted_table(s.table) + " SET " + set + " WHERE " + quote_identifier(s.id_column) +
         "::text = $1::text AND (" + still_valid + ") RETURNING " + quote_identifier(s.id_column) + "::text";
}

}  // namespace keygate::store
