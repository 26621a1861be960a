#include "store/usage_custom.hpp"

#include <algorithm>
#include <array>
#include <optional>
#include <vector>

#include "store/custom_schema.hpp"
#include "store/usage_encoding.hpp"

namespace keygate::store {

namespace {

constexpr std::array<std::string_view, 7> id_types{"uuid",  "integer", "bigint", "smallint",
                                                   "text", "varchar", "bpchar"};

std::string quoted(std::string_view name) { return "\"" + std::string(name) + "\""; }

}  // namespace

std::string check_custom_usage_target(const CustomUsageTarget& t) {
  if (!t.last_used_column.empty() || !t.usage_table.empty()) {
    if (!is_table_name(t.key_table)) return "usage: custom key table is not a plain table name";
  }
  if (!t.last_used_column.empty()) {
    if (!is_plain_identifier(t.id_column)) return "usage: custom id column is not a plain identifier";
    if (std::find(id_types.begin(), id_types.end(), t.id_type) == id_types.end()) {
      return "usage: custom id type '" + t.id_type + "' is not one keygate can cast to";
    }
    if (!is_plain_identifier(t.last_used_column)) {
      return "usage: custom last-used column is not a plain identifier";
    }
    if (t.last_used_type != "timestamptz" && t.last_used_type != "timestamp") {
      return "usage: custom last-used type '" + t.last_used_type + "' is not timestamptz or timestamp";
    }
  }
  if (!t.usage_table.empty() && !is_table_name(t.usage_table)) {
    return "usage: custom usage table is not a plain table name";
  }
  return {};
}

std::string quoted_custom_table(std::string_view table) {
  const std::optional<std::string> schema = schema_part(table);
  return (schema ? quoted(*schema) + "." : std::string()) + quoted(table_part(table));
}

std::string custom_usage_copy_sql(const CustomUsageTarget& t) {
  return "COPY " + quoted_custom_table(t.usage_table) + " (" + std::string(custom_usage_columns) +
         ") FROM STDIN";
}

std::string custom_last_used_sql(const CustomUsageTarget& t) {
  const std::string column = quoted(t.last_used_column);
  const std::string used_at = t.last_used_type == "timestamp" ? "(v.used_at AT TIME ZONE 'UTC')" : "v.used_at";
  return "UPDATE " + quoted_custom_table(t.key_table) + " AS k SET " + column + " = " + used_at +
         " FROM unnest($1::" + t.id_type + "[], $2::timestamptz[]) AS v(id, used_at) WHERE k." +
         quoted(t.id_column) + " = v.id AND (k." + column + " IS NULL OR k." + column + " < " +
         used_at + ")";
}

UsageBatch make_custom_usage_batch(std::span<const UsageEvent> events, std::size_t& invalid) {
  UsageBatch batch;
  invalid = 0;
  batch.data.reserve(events.size() * 160);
  batch.line_ends.reserve(events.size());
  for (const UsageEvent& e : events) {
    if (!append_custom_usage_line(batch.data, e)) {
      ++invalid;
      continue;
    }
    batch.line_ends.push_back(batch.data.size());  // no days: the custom target has no partitions
  }
  return batch;
}

bool is_custom_usage_line(std::string_view line) {
  return line.find('\0') == std::string_view::npos &&
         static_cast<std::size_t>(std::count(line.begin(), line.end(), '\t')) == custom_usage_fields - 1;
}

std::size_t keep_custom_usage_lines(UsageBatch& batch) {
  std::string kept;
  std::vector<std::size_t> ends;
  std::size_t removed = 0, at = 0;
  for (const std::size_t end : batch.line_ends) {
    const std::string_view line = std::string_view(batch.data).substr(at, end - at);
    if (is_custom_usage_line(line.substr(0, line.size() - 1))) {
      kept += line;
      ends.push_back(kept.size());
    } else {
      ++removed;
    }
    at = end;
  }
  if (removed > 0) {
    batch.data = std::move(kept);
    batch.line_ends = std::move(ends);
  }
  return removed;
}

}  // namespace keygate::store
