#pragma once
// api_keys rows as keygate reads them: the column lists every repository statement selects or
// returns, and their parsing into KeyRecord / KeyDetails. Pure: no I/O.
#include <charconv>
#include <optional>
#include <string>
#include <string_view>

#include "store/key_repository.hpp"
#include "store/pg_connection.hpp"

// A timestamptz column as epoch microseconds (bigint), the form parse_time reads; a macro so
// that it joins string literals at compile time.
#define KEYGATE_MICROS(column) "(extract(epoch FROM " column ") * 1000000)::bigint"

namespace keygate::store::key_rows {

// Exactly what KeyRecord holds, in parse_record's order (times as epoch microseconds).
extern const char* const record_columns;
// record_columns, then what KeyDetails adds, in parse_details' order.
std::string all_columns();

template <typename Int>
std::optional<Int> to_int(std::string_view text) {
  Int value{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

TimePoint from_micros(std::int64_t micros);

// Each parse_* returns false on a value that cannot come from our schema.
bool parse_time(const PgResult& r, int row, int col, std::optional<TimePoint>& out);
bool parse_record(const PgResult& r, int row, KeyRecord& key);
bool parse_details(const PgResult& r, int row, KeyDetails& key);

}  // namespace keygate::store::key_rows
