#include "store/usage_batch.hpp"

#include <unordered_set>

#include "core/text.hpp"
#include "store/usage_encoding.hpp"
#include "store/usage_partitions.hpp"

namespace keygate::store {

void UsageBatch::stage(std::uint64_t process_id) {
  for (const UsageEvent& e : events) {
    if (append_usage_line(data, e, process_id)) line_ends.push_back(data.size());
  }
  events.clear();
  events.shrink_to_fit();
}

UsageBatch make_usage_batch(std::span<const UsageEvent> events, std::size_t& invalid) {
  UsageBatch batch;
  batch.events.reserve(events.size());
  invalid = 0;
  for (const UsageEvent& e : events) {
    if (!parse_usage_key_id(e.key_id.view())) {
      ++invalid;
      continue;
    }
    batch.events.push_back(e);
    batch.days.insert(usage_day_of(e.created_at_us));
  }
  return batch;
}

UsageBatch usage_batch_from_spill(std::string lines, std::uint64_t spill_end) {
  UsageBatch batch;
  batch.from_spill = true;
  batch.spill_end = spill_end;
  batch.data = std::move(lines);
  for (std::size_t at = 0; at < batch.data.size();) {
    const std::size_t end = batch.data.find('\n', at) + 1;
    batch.line_ends.push_back(end);
    if (auto day = usage_line_day(std::string_view(batch.data).substr(at, end - 1 - at))) {
      batch.days.insert(*day);
    }
    at = end;
  }
  return batch;
}

std::vector<std::string> usage_batch_key_ids(const UsageBatch& batch) {
  std::vector<std::string> keys;
  std::unordered_set<std::string> seen;
  for (const UsageEvent& e : batch.events) {
    std::string id = core::to_lower_ascii(e.key_id.view());
    if (seen.insert(id).second) keys.push_back(std::move(id));
  }
  return keys;
}

bool is_usage_row_error(std::string_view sqlstate) {
  return sqlstate.size() == 5 && (sqlstate.starts_with("22") || sqlstate.starts_with("23")) &&
         !is_missing_partition(sqlstate);
}

bool is_missing_partition(std::string_view sqlstate) { return sqlstate == "23514"; }

UsageRefusalStep next_refusal_step(UsageBatch& batch) {
  if (++batch.query_failures < 2) return UsageRefusalStep::retry_as_is;
  return batch.lines() == 1 ? UsageRefusalStep::drop_line : UsageRefusalStep::halve;
}

std::pair<UsageBatch, UsageBatch> halve_usage_batch(const UsageBatch& batch) {
  UsageBatch first, second;
  const std::size_t half = batch.lines() / 2;
  const std::size_t cut = batch.line_ends[half - 1];
  first.data = batch.data.substr(0, cut);
  second.data = batch.data.substr(cut);
  for (std::size_t i = 0; i < batch.lines(); ++i) {
    UsageBatch& to = i < half ? first : second;
    to.line_ends.push_back(batch.line_ends[i] - (i < half ? 0 : cut));
  }
  first.days = second.days = batch.days;
  first.from_spill = second.from_spill = batch.from_spill;
  second.spill_end = batch.spill_end;
  first.query_failures = second.query_failures = 1;
  return {std::move(first), std::move(second)};
}

}  // namespace keygate::store
