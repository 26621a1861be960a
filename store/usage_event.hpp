#pragma once
// One usage event: what the usage log records for a keyed request (issue #5). A fixed-size
// value with the strings inline (truncated to bounded lengths), so recording one costs a copy
// into a pre-grown buffer and never an allocation of its own.
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "core/ip_network.hpp"

namespace keygate::store {

// A string of at most N bytes held inline; longer input is cut at N bytes (the writer turns a
// cut UTF-8 sequence into U+FFFD when it encodes the event).
template <std::size_t N>
struct InlineText {
  static_assert(N < 65536);
  std::array<char, N> bytes;  // left uninitialized past `size`: no per-event zeroing
  std::uint16_t size = 0;

  void assign(std::string_view text) {
    size = static_cast<std::uint16_t>(std::min(text.size(), N));
    if (size > 0) std::memcpy(bytes.data(), text.data(), size);  // an empty view may be null
  }
  std::string_view view() const { return {bytes.data(), size}; }
  bool empty() const { return size == 0; }
};

struct UsageEvent {
  // Leaves the inline text buffers unwritten (a queue slot is filled right after).
  UsageEvent() noexcept {}

  static constexpr std::size_t max_endpoint = 256;
  static constexpr std::size_t max_user_agent = 160;
  static constexpr std::size_t max_method = 16;
  // A uuid is 36 characters; custom key tables (store.schema: custom) may have integer or
  // text ids. A longer id is not cut: the event gets no key id and the writer drops it.
  static constexpr std::size_t max_key_id = 64;

  std::uint64_t sequence = 0;  // assigned by the writer: with its process id, the event id
  std::int64_t created_at_us = 0;      // request start, microseconds since the Unix epoch (UTC)
  std::uint32_t response_time_us = 0;  // saturates at ~71 minutes
  std::uint16_t status = 0;
  core::IpAddress client_ip;
  InlineText<max_key_id> key_id;  // the key record's id as text (native: a uuid)
  InlineText<max_method> method;
  InlineText<max_endpoint> endpoint;  // path without the query string
  InlineText<max_user_agent> user_agent;
};

// What the logging phase knows about one finished keyed request; views valid during the call.
struct UsageFacts {
  std::string_view key_id;
  std::string_view method;
  std::string_view endpoint;
  std::string_view user_agent;
  core::IpAddress client_ip;
  int status = 0;
  std::chrono::microseconds duration{0};
  std::chrono::system_clock::time_point finished_at;  // default: now
};

inline void fill_usage_event(UsageEvent& event, const UsageFacts& facts) {
  const auto finished = facts.finished_at == std::chrono::system_clock::time_point{}
                            ? std::chrono::system_clock::now()
                            : facts.finished_at;
  const auto started = finished - facts.duration;
  event.sequence = 0;
  event.created_at_us =
      std::chrono::duration_cast<std::chrono::microseconds>(started.time_since_epoch()).count();
  const auto us = facts.duration.count();
  event.response_time_us =
      us <= 0 ? 0u : us >= 0xffffffffLL ? 0xffffffffu : static_cast<std::uint32_t>(us);
  event.status = static_cast<std::uint16_t>(std::clamp(facts.status, 0, 999));
  event.client_ip = facts.client_ip;
  event.key_id.assign(facts.key_id.size() <= UsageEvent::max_key_id ? facts.key_id : std::string_view());
  event.method.assign(facts.method);
  event.endpoint.assign(facts.endpoint);
  event.user_agent.assign(facts.user_agent);
}

}  // namespace keygate::store
