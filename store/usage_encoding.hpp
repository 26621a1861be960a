#pragma once
// The usage log's row encodings (pure, no I/O): an event's id, and one event as a row of
// api_key_usage in PostgreSQL's two COPY formats. A direct batch sends the binary form straight
// into api_key_usage; the staging table, the spill file and every replay use the text line.
// Both store the same characters: a text field is cleaned first (other control characters than
// tab, newline and CR as '?', anything that is not valid UTF-8 as U+FFFD, a sequence cut by
// InlineText's bound included), so PostgreSQL never refuses a batch over one odd byte. An empty
// text field is NULL in both.
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "store/usage_event.hpp"

namespace keygate::store {

// The columns of a text line (the staging table's), in the encoder's order. It has no
// response_time_ms: the staging INSERT rounds it from response_time_us, as the binary row does.
inline constexpr std::string_view usage_line_columns =
    "event_id, api_key_id, endpoint, method, status_code, ip_address, user_agent, "
    "response_time_us, created_at";
// The columns of api_key_usage a usage row fills: a binary row's, in the encoder's order.
inline constexpr std::string_view usage_row_columns =
    "event_id, api_key_id, endpoint, method, status_code, ip_address, user_agent, "
    "response_time_ms, response_time_us, created_at";

// A random 64-bit id for this process's events (never 0).
std::uint64_t new_usage_process_id();
// "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" of (process id, sequence): with created_at, the
// primary key of api_key_usage, so a batch written twice adds no row twice.
std::string usage_event_id(std::uint64_t process_id, std::uint64_t sequence);

// The 16 bytes of a key id in uuid text form (8-4-4-4-12 hex digits, either case); nullopt for
// anything else. An event whose key id is not a uuid cannot be stored and is dropped.
std::optional<std::array<std::uint8_t, 16>> parse_usage_key_id(std::string_view text);

// Appends one COPY text line (ending in '\n') for usage_line_columns. False (nothing appended)
// when the event's key id is not a uuid. created_at is RFC 3339 UTC with microseconds.
bool append_usage_line(std::string& out, const UsageEvent& event, std::uint64_t process_id);

// A binary COPY's data is the header, the rows, then the trailer.
void append_usage_binary_header(std::string& out);
void append_usage_binary_trailer(std::string& out);
// One row for usage_row_columns: the values of the text line, with response_time_ms rounded
// from response_time_us (and response_time_us capped at int4's maximum, as in the text line).
// False (nothing appended) when the key id is not a uuid.
bool append_usage_binary_row(std::string& out, const UsageEvent& event, std::uint64_t process_id);

// ---- the custom target (store.schema: custom; usage_custom.hpp) ------------------------------

// The columns of the operator's usage table (seed 003's api_key_usage) a custom line fills, in
// the encoder's order. No event id: that table has none.
inline constexpr std::string_view custom_usage_columns =
    "api_key_id, endpoint, method, status_code, ip_address, user_agent, response_time_ms, "
    "created_at";
inline constexpr std::size_t custom_usage_fields = 8;

// Appends one COPY text line (ending in '\n') for custom_usage_columns: the key id as text
// (PostgreSQL converts it to the column's type), the text fields cleaned as above,
// response_time_ms rounded as in the binary row, created_at RFC 3339 UTC. False (nothing
// appended) when the event has no key id.
bool append_custom_usage_line(std::string& out, const UsageEvent& event);

}  // namespace keygate::store
