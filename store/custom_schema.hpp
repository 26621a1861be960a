#pragma once
// store.schema: custom — keygate in front of a key table the operator already has, unchanged.
// This file is the pure part: how a table's columns map onto KeyRecord (CustomSchema), the
// five presets for the seed schemas, the check of that mapping against the columns
// information_schema reports, the lookup statement built from it, and the decoding of its
// rows. No I/O: store/custom_key_source.* runs the statements.
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "store/key_record.hpp"

namespace keygate::store {

// How the credential column holds a key.
enum class CredentialEncoding {
  sha256_hex,    // lower-case hex of SHA-256(key), in a text / char / varchar column
  sha256_bytea,  // SHA-256(key) as 32 bytes
  hmac_sha256,   // HMAC-SHA-256(keys.pepper, key), as hex text or bytea (the column's type says)
  bcrypt,        // a bcrypt hash ($2a$/$2b$/$2y$); prefix_column narrows the candidates
  plain,         // the key itself (allowed, with a warning at startup)
};

// What a key must look like in custom mode, where keys need not be keygate's format (no
// checksum): a length range and an alphabet.
enum class KeyAlphabet {
  base62,     // A-Z a-z 0-9
  base64url,  // base62 plus - and _ (keygate's own keys fit)
  base64,     // base62 plus + / =
  hex,        // 0-9 a-f A-F
  printable,  // any visible ASCII character (0x21-0x7e)
};

struct KeyTextRule {
  std::size_t min_length = 16;
  std::size_t max_length = 128;
  KeyAlphabet alphabet = KeyAlphabet::base64url;
  bool operator==(const KeyTextRule&) const = default;
};

// Pure and allocation-free.
bool key_text_allowed(std::string_view key, const KeyTextRule& rule);

// Where the operator's table keeps each of KeyRecord's fields. A column name is a plain SQL
// identifier ([a-z_][a-z0-9_]*); an empty name means the table has no such column, and the
// field takes the fixed value beside it (or none).
struct CustomSchema {
  std::string table;  // "api_keys" (on the search_path) or "auth.api_key"; a view works too
  std::string credential_column;
  CredentialEncoding encoding = CredentialEncoding::sha256_hex;
  std::string prefix_column;     // bcrypt: holds the key's first prefix_length characters
  std::size_t prefix_length = 0;
  std::string id_column;
  std::string owner_type_column;
  std::string owner_type = "user";  // when owner_type_column is empty
  std::string owner_id_column;
  std::string name_column;
  std::string scopes_column;       // text[] / varchar[], json or jsonb array of strings
  std::string expires_at_column;   // timestamptz or timestamp (read as UTC)
  std::string revoked_at_column;   // set: revoked
  std::string is_active_column;    // boolean; false: revoked
  std::string allowed_ips_column;  // cidr[] / inet[] / text[], json or jsonb array of strings
  std::string rate_limit_column;   // requests per window; NULL: rate_limit.default
  std::string window_column;       // seconds; when empty, window_seconds below
  std::optional<int> window_seconds;
  std::string last_used_column;    // updated by the usage writer (empty: not updated)
  std::string usage_table;         // seed 003's api_key_usage layout (empty: no usage rows)
  KeyTextRule key_text;
  bool operator==(const CustomSchema&) const = default;
};

// The five seed schemas (see the README, "Bring your own key table"), or null.
const CustomSchema* find_preset(std::string_view name);
std::vector<std::string_view> preset_names();

std::string_view name_of(CredentialEncoding encoding);  // "sha256-hex"
std::optional<CredentialEncoding> credential_encoding_named(std::string_view name);
std::string_view name_of(KeyAlphabet alphabet);
std::optional<KeyAlphabet> key_alphabet_named(std::string_view name);

// A plain SQL identifier: [a-z_][a-z0-9_]{0,62}. Only these reach a statement, always quoted.
bool is_plain_identifier(std::string_view name);
// "table" or "schema.table", each part a plain identifier.
bool is_table_name(std::string_view name);

// The mapping's own consistency (no I/O): the credential and id columns are there, bcrypt has
// its prefix column and length, a fixed window is 1..86400 s, the key text rule is sane.
// Returns one line naming the option, or empty.
std::string check_schema(const CustomSchema& schema);

// One column as information_schema.columns reports it.
struct ColumnType {
  std::string name;       // column_name
  std::string data_type;  // "text", "ARRAY", "jsonb", "timestamp with time zone", ...
  std::string udt_name;   // "_text", "_cidr", "bpchar", ...
  bool has_default = false;  // a DEFAULT or an identity: an INSERT may leave it out
};

// What the table's column types add to the mapping.
struct ResolvedSchema {
  CustomSchema schema;
  bool credential_is_bytea = false;
  // SQL type names to cast parameters to, so statements use the table's indexes:
  std::string id_type;         // "uuid", "integer", "bigint", "smallint", "text", "varchar", "bpchar"
  std::string last_used_type;  // "timestamptz" or "timestamp" (UTC); empty without the column
  // For `keygate keys` on the table (cast names as above; empty without the column):
  std::string scopes_type;      // "text[]", "varchar[]", "json", "jsonb"
  std::string owner_id_type;
  std::string expires_at_type;
  std::string revoked_at_type;
  bool id_has_default = false;
};

// Every mapped column exists in `columns` with a type keygate can read, e.g.
// "store: column api_keys.scopes is integer; expected text[], json or jsonb". Returns the
// schema with what the types decide, or the error line in `error`.
ResolvedSchema resolve_schema(const CustomSchema& schema, const std::vector<ColumnType>& columns,
                              std::string& error);

// store.usage_table has keygate's usage columns (store/usage_encoding.hpp) in types it can
// COPY into, e.g. "store.usage_table: column api_key_usage.status_code is text; expected
// integer, smallint or bigint". Empty, or that one line. `columns`: the usage table's.
// Its api_key_id must hold the key table's ids (the same type family, or text).
std::string check_usage_table(const ResolvedSchema& resolved, const std::vector<ColumnType>& columns);

// store.revocation: poll — one value that changes whenever a row of the table comes, goes or
// is updated: the row count and the sum of the rows' xmin (each UPDATE writes a new row version
// with a new transaction id). It over-reports, never under-reports: keygate's own last-used
// writes, and VACUUM FREEZE, change it too (a needless cache drop, not a missed revocation).
// One scan of the table, no column read: ~17 ms per 100,000 rows (README); a view has no xmin.
std::string change_signature_statement(const ResolvedSchema& resolved);

// The schema and table information_schema is asked about ($1, $2 of columns_query()). A table
// without a schema is looked for in current_schema().
std::optional<std::string> schema_part(std::string_view table);
std::string table_part(std::string_view table);
// column_name, data_type, udt_name, has_default ('t'/'f') of one table: $1 schema (NULL:
// current_schema()), $2 table.
const char* columns_query();

// The request path's SELECT: the rows whose credential (bcrypt: prefix) column equals $1, with
// the columns decode_custom_row() reads, in its order (NULL where the table has none). At most
// 16 rows for bcrypt (the candidates sharing a prefix), else 2 (a second row is an error: a
// credential must name one key).
std::string lookup_statement(const ResolvedSchema& resolved);
inline constexpr int custom_row_columns = 12;
inline constexpr int custom_row_credential = 11;  // the stored credential (bcrypt verifies it)
inline constexpr int max_bcrypt_candidates = 16;

// `keygate keys` on a custom table. Each returns the statement, or empty with `error` saying
// what the table lacks.
//
// INSERT of a new key, RETURNING lookup_statement()'s columns and the stored credential (a
// table's trigger may make its own key, as seed 001's does). Parameters: $1 the credential as
// stored (bcrypt: the hash), $2 the prefix (bcrypt) or NULL, $3 owner type, $4 owner id,
// $5 name, $6 scopes (in the column's format), $7 milliseconds to expiry or NULL.
std::string insert_statement(const ResolvedSchema& resolved, bool with_scopes, bool with_expiry,
                             std::string& error);
// The keys (lookup_statement()'s columns), by id; $1 owner type and $2 owner id, or NULLs for
// every key.
std::string list_statement(const ResolvedSchema& resolved);
// Sets revoked_at = now() and/or is_active = false for id $1 (as text) unless already revoked,
// RETURNING the id; needs one of the two columns.
std::string revoke_statement(const ResolvedSchema& resolved, std::string& error);

// One row of lookup_statement() in text form; column i is null when `null[i]`.
struct CustomRow {
  std::vector<std::string_view> values;
  std::vector<bool> null;
};

// A KeyRecord from one row, the fixed values of the mapping filling what the table lacks.
// Returns false (with `error` naming the column, never a value) on a row keygate cannot read:
// scopes that are not an array of strings, an allowed IP that is not an address or network,
// a rate limit out of range.
bool decode_custom_row(const ResolvedSchema& resolved, const CustomRow& row, KeyRecord& record,
                       std::string& error);

}  // namespace keygate::store
