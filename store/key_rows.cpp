// api_keys rows as keygate reads them: the column lists and their parsing (see key_rows.hpp).
#include "store/key_rows.hpp"

#include <algorithm>

#include "core/ip_network.hpp"
#include "store/pg_text.hpp"

namespace keygate::store::key_rows {

const char* const record_columns =
    "id::text, owner_type, owner_id, name, key_hash, scopes, allowed_ips, rate_limit, "
    "window_seconds, quota, quota_period_seconds, is_active, " KEYGATE_MICROS("expires_at") ", "
    KEYGATE_MICROS("revoked_at");

namespace {

constexpr int record_column_count = 14;
// After record_columns, in parse_details' order.
constexpr const char* detail_columns =
    "key_prefix, description, metadata::text, " KEYGATE_MICROS("created_at") ", "
    KEYGATE_MICROS("updated_at") ", " KEYGATE_MICROS("last_used_at") ", created_by, "
    KEYGATE_MICROS("leaked_at");

}  // namespace

std::string all_columns() { return std::string(record_columns) + ", " + detail_columns; }

TimePoint from_micros(std::int64_t micros) {
  return TimePoint(std::chrono::duration_cast<Clock::duration>(std::chrono::microseconds(micros)));
}

bool parse_time(const PgResult& r, int row, int col, std::optional<TimePoint>& out) {
  out.reset();
  if (r.is_null(row, col)) return true;
  auto micros = to_int<std::int64_t>(r.get(row, col));
  if (!micros) return false;
  out = from_micros(*micros);
  return true;
}

namespace {

template <typename Int>
bool parse_optional_int(const PgResult& r, int row, int col, std::optional<Int>& out) {
  out.reset();
  if (r.is_null(row, col)) return true;
  out = to_int<Int>(r.get(row, col));
  return out.has_value();
}

std::optional<std::string> optional_text(const PgResult& r, int row, int col) {
  if (r.is_null(row, col)) return std::nullopt;
  return std::string(r.get(row, col));
}

}  // namespace

bool parse_record(const PgResult& r, int row, KeyRecord& key) {
  key.id = std::string(r.get(row, 0));
  key.owner_type = std::string(r.get(row, 1));
  key.owner_id = std::string(r.get(row, 2));
  key.name = std::string(r.get(row, 3));
  auto hash = parse_pg_bytea(r.get(row, 4));
  if (!hash || hash->size() != key.key_hash.size()) return false;
  std::copy(hash->begin(), hash->end(), key.key_hash.begin());

  auto scopes = parse_pg_array(r.get(row, 5));
  if (!scopes) return false;
  key.scopes.clear();
  for (auto& scope : *scopes) {
    if (scope) key.scopes.push_back(std::move(*scope));
  }
  auto ips = parse_pg_array(r.get(row, 6));
  if (!ips) return false;
  key.allowed_ips.clear();
  for (const auto& ip : *ips) {
    if (!ip) continue;
    auto network = core::IpNetwork::parse(*ip);
    if (!network) return false;
    key.allowed_ips.push_back(*network);
  }
  if (!parse_optional_int(r, row, 7, key.rate_limit) ||
      !parse_optional_int(r, row, 8, key.window_seconds) ||
      !parse_optional_int(r, row, 9, key.quota) ||
      !parse_optional_int(r, row, 10, key.quota_period_seconds)) {
    return false;
  }
  key.is_active = r.get(row, 11) == "t";
  return parse_time(r, row, 12, key.expires_at) && parse_time(r, row, 13, key.revoked_at);
}

bool parse_details(const PgResult& r, int row, KeyDetails& key) {
  if (r.columns() < record_column_count + 8 || !parse_record(r, row, key.record)) return false;
  constexpr int base = record_column_count;
  key.key_prefix = std::string(r.get(row, base));
  key.description = optional_text(r, row, base + 1);
  key.metadata_json = std::string(r.get(row, base + 2));
  std::optional<TimePoint> created, updated;
  if (!parse_time(r, row, base + 3, created) || !parse_time(r, row, base + 4, updated) ||
      !parse_time(r, row, base + 5, key.last_used_at) || !created || !updated) {
    return false;
  }
  key.created_at = *created;
  key.updated_at = *updated;
  key.created_by = optional_text(r, row, base + 6);
  return parse_time(r, row, base + 7, key.leaked_at);
}

}  // namespace keygate::store::key_rows
