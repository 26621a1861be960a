#include "store/usage_writer.hpp"


#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/object.hpp>

#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <exception>
#include <random>
#include <unordered_set>

#include "core/hex.hpp"
#include "core/log.hpp"
#include "store/metrics.hpp"

namespace keygate::store {

namespace asio = boost::asio;
using SteadyClock = std::chrono::steady_clock;
using SteadyTime = SteadyClock::time_point;
using std::chrono::milliseconds;

struct UsageWriter::Batch {
  // A batch from memory that was never sent holds its events, sent with one binary COPY
  // straight into api_key_usage (write_front says why that is safe). Once that could have
  // written anything, and for a batch read from the spill file, it holds COPY text lines for
  // the staging table and ON CONFLICT DO NOTHING.
  std::vector<UsageEvent> events;      // direct batch: the events (key ids checked), in order
  std::string data;                    // staged batch: COPY text lines
  std::vector<std::size_t> line_ends;  // staged batch: offset just past each line's '\n'
  std::set<std::int32_t> days;         // UTC days of the events' created_at
  bool from_spill = false;
  std::uint64_t spill_end = 0;  // from_spill and nonzero: consumed() up to here once stored
  int query_failures = 0;

  bool direct() const { return !events.empty(); }
  std::size_t lines() const { return events.size() + line_ends.size(); }
  // Turns a direct batch into a staged one (same events, as COPY text lines).
  void stage(std::uint64_t process_id) {
    for (const UsageEvent& e : events) {
      if (append_usage_line(data, e, process_id)) line_ends.push_back(data.size());
    }
    events.clear();
    events.shrink_to_fit();
  }
};

namespace {

constexpr std::int64_t partition_lock_key = 0x6b67757361676531;  // "kgusage1"
constexpr std::size_t spill_read_max_bytes = 8 * 1024 * 1024;
constexpr std::string_view staging_columns =
    "event_id, api_key_id, endpoint, method, status_code, ip_address, user_agent, "
    "response_time_us, created_at";
// The columns of a direct batch's binary COPY, in append_usage_binary_row's order.
constexpr std::string_view direct_columns =
    "event_id, api_key_id, endpoint, method, status_code, ip_address, user_agent, "
    "response_time_ms, response_time_us, created_at";

void log_event(std::string_view level, std::string_view msg, std::string_view detail = {}) {
  if (detail.empty()) {
    core::log(level, msg);
  } else {
    core::log(level, msg, {{"detail", detail}});
  }
}

// ---- days and timestamps (proleptic Gregorian, UTC) -----------------------------------------

// Howard Hinnant's days_from_civil / civil_from_days.
std::int32_t days_from_civil(int y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int>(doe) - 719468;
}

struct Civil {
  int y;
  unsigned m, d;
};

Civil civil_from_days(std::int32_t z) {
  z += 719468;
  const int era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int y = static_cast<int>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  return {y + (m <= 2), m, d};
}

void append_digits(std::string& out, std::int64_t value, int width) {
  char buffer[24];
  int n = 0;
  std::uint64_t v = static_cast<std::uint64_t>(value < 0 ? 0 : value);
  do {
    buffer[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  for (int i = n; i < width; ++i) out.push_back('0');
  while (n > 0) out.push_back(buffer[--n]);
}

std::int32_t today_utc() {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::system_clock::now().time_since_epoch());
  return usage_day_of(us.count());
}

// ---- COPY text ------------------------------------------------------------------------------

// Appends `text` cleaned: other control characters than tab, newline and CR as '?', and
// anything that is not valid UTF-8 as U+FFFD (a cut sequence at the end of a truncated field
// included), so PostgreSQL never rejects a batch over one odd byte. With `copy_escape`, as one
// COPY text field: backslash, tab, newline and CR escaped. The binary and the text encodings
// of an event thus store the same characters.
void append_clean_text(std::string& out, std::string_view text, bool copy_escape) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t n = text.size();
  for (std::size_t i = 0; i < n;) {
    // A run of printable ASCII (the usual case) in one append.
    std::size_t run = i;
    while (run < n && p[run] >= 0x20 && p[run] < 0x7f && !(copy_escape && p[run] == '\\')) ++run;
    if (run > i) {
      out.append(text.substr(i, run - i));
      i = run;
      continue;
    }
    const unsigned char c = p[i];
    if (c < 0x80) {
      if (copy_escape && (c == '\\' || c == '\t' || c == '\n' || c == '\r')) {
        out.push_back('\\');
        out.push_back(c == '\\' ? '\\' : c == '\t' ? 't' : c == '\n' ? 'n' : 'r');
      } else if (c == '\t' || c == '\n' || c == '\r') {
        out.push_back(static_cast<char>(c));
      } else {
        out.push_back(c < 0x20 || c == 0x7f ? '?' : static_cast<char>(c));
      }
      ++i;
      continue;
    }
    std::size_t len = 0;
    std::uint32_t cp = 0;
    if (c >= 0xc2 && c <= 0xdf) len = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef) len = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4) len = 4, cp = c & 0x07;
    bool valid = len != 0 && i + len <= n;
    for (std::size_t k = 1; valid && k < len; ++k) {
      if ((p[i + k] & 0xc0) != 0x80) valid = false;
      else cp = (cp << 6) | (p[i + k] & 0x3f);
    }
    // Overlong forms, surrogates and values past U+10FFFF are invalid too.
    if (valid && ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
                  (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))) {
      valid = false;
    }
    if (valid) {
      out.append(text.substr(i, len));
      i += len;
    } else {
      out += "\xef\xbf\xbd";
      ++i;
    }
  }
}

// One COPY text field; an empty text is NULL.
void append_copy_text(std::string& out, std::string_view text) {
  if (text.empty()) {
    out += "\\N";
    return;
  }
  append_clean_text(out, text, true);
}

// ---- COPY binary (PostgreSQL's documented format: network byte order throughout) -------------

void put_u8(std::string& out, std::uint8_t v) { out.push_back(static_cast<char>(v)); }
void put_u16(std::string& out, std::uint16_t v) {
  put_u8(out, static_cast<std::uint8_t>(v >> 8));
  put_u8(out, static_cast<std::uint8_t>(v));
}
void put_u32(std::string& out, std::uint32_t v) {
  put_u16(out, static_cast<std::uint16_t>(v >> 16));
  put_u16(out, static_cast<std::uint16_t>(v));
}
void put_u64(std::string& out, std::uint64_t v) {
  put_u32(out, static_cast<std::uint32_t>(v >> 32));
  put_u32(out, static_cast<std::uint32_t>(v));
}
void put_int4_field(std::string& out, std::int32_t v) {
  put_u32(out, 4);
  put_u32(out, static_cast<std::uint32_t>(v));
}
// A text field (length, then the cleaned bytes); an empty text is NULL, as in the text form.
void put_text_field(std::string& out, std::string_view text) {
  if (text.empty()) {
    put_u32(out, 0xffffffffu);  // -1: NULL
    return;
  }
  const std::size_t at = out.size();
  put_u32(out, 0);
  append_clean_text(out, text, false);
  const auto len = static_cast<std::uint32_t>(out.size() - at - 4);
  for (int k = 0; k < 4; ++k) out[at + k] = static_cast<char>(len >> (24 - 8 * k));
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return c - 'A' + 10;  // checked by is_uuid_text
}

std::string lower_ascii(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool is_uuid_text(std::string_view s) {
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < 36; ++i) {
    const char c = s[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
      return false;
    }
  }
  return true;
}

bool is_data_error(const std::string& sqlstate) {
  // Class 22 (data exception) and 23 (integrity constraint) are about rows in the batch; a
  // missing partition (23514) is handled apart. Anything else (schema missing, resources,
  // cancelled) is not the rows' fault: keep them and retry.
  return sqlstate.size() == 5 && (sqlstate.starts_with("22") || sqlstate.starts_with("23")) &&
         sqlstate != "23514";
}

}  // namespace

// ---- encoding -------------------------------------------------------------------------------

std::uint64_t new_usage_process_id() {
  std::uint64_t id = 0;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&id), sizeof id) != 1) {
    std::random_device random;
    id = (static_cast<std::uint64_t>(random()) << 32) ^ random();
  }
  return id == 0 ? 1 : id;
}

std::string usage_event_id(std::uint64_t process_id, std::uint64_t sequence) {
  std::array<std::uint8_t, 16> bytes;  // both words, most significant byte first
  for (int i = 0; i < 8; ++i) {
    bytes[i] = static_cast<std::uint8_t>(process_id >> (56 - 8 * i));
    bytes[8 + i] = static_cast<std::uint8_t>(sequence >> (56 - 8 * i));
  }
  return core::format_uuid(bytes);
}

std::int32_t usage_day_of(std::int64_t unix_us) {
  constexpr std::int64_t us_per_day = 86400LL * 1000000LL;
  std::int64_t day = unix_us / us_per_day;
  if (unix_us % us_per_day < 0) --day;
  return static_cast<std::int32_t>(day);
}

std::string usage_day_text(std::int32_t day) {
  const Civil c = civil_from_days(day);
  std::string out;
  append_digits(out, c.y, 4);
  out.push_back('-');
  append_digits(out, c.m, 2);
  out.push_back('-');
  append_digits(out, c.d, 2);
  return out;
}

std::string usage_partition_name(std::int32_t day) {
  const Civil c = civil_from_days(day);
  std::string out = "api_key_usage_p";
  append_digits(out, c.y, 4);
  append_digits(out, c.m, 2);
  append_digits(out, c.d, 2);
  return out;
}

void append_utc_timestamp(std::string& out, std::int64_t unix_us) {
  // "YYYY-MM-DD HH:MM:SS.ffffff+00"
  constexpr std::int64_t us_per_day = 86400LL * 1000000LL;
  const std::int32_t day = usage_day_of(unix_us);
  const std::int64_t in_day = unix_us - static_cast<std::int64_t>(day) * us_per_day;
  out += usage_day_text(day);
  out.push_back(' ');
  append_digits(out, in_day / 3600000000LL, 2);
  out.push_back(':');
  append_digits(out, in_day / 60000000LL % 60, 2);
  out.push_back(':');
  append_digits(out, in_day / 1000000LL % 60, 2);
  out.push_back('.');
  append_digits(out, in_day % 1000000LL, 6);
  out += "+00";
}

bool append_usage_line(std::string& out, const UsageEvent& e, std::uint64_t process_id) {
  if (!is_uuid_text(e.key_id.view())) return false;
  out += usage_event_id(process_id, e.sequence);
  out.push_back('\t');
  out.append(e.key_id.view());
  out.push_back('\t');
  append_copy_text(out, e.endpoint.view());
  out.push_back('\t');
  append_copy_text(out, e.method.view());
  out.push_back('\t');
  append_digits(out, e.status, 1);
  out.push_back('\t');
  out += e.client_ip.to_string();
  out.push_back('\t');
  append_copy_text(out, e.user_agent.view());
  out.push_back('\t');
  append_digits(out, std::min<std::uint32_t>(e.response_time_us, 0x7fffffff), 1);
  out.push_back('\t');
  append_utc_timestamp(out, e.created_at_us);
  out.push_back('\n');
  return true;
}

void append_usage_binary_header(std::string& out) {
  out.append("PGCOPY\n\xff\r\n\0", 11);
  put_u32(out, 0);  // flags: no OIDs
  put_u32(out, 0);  // no header extension
}

void append_usage_binary_trailer(std::string& out) { put_u16(out, 0xffff); }

bool append_usage_binary_row(std::string& out, const UsageEvent& e, std::uint64_t process_id) {
  const std::string_view key = e.key_id.view();
  if (!is_uuid_text(key)) return false;
  put_u16(out, 10);  // fields, in direct_columns' order
  put_u32(out, 16);  // event_id: the bytes usage_event_id() spells
  put_u64(out, process_id);
  put_u64(out, e.sequence);
  put_u32(out, 16);  // api_key_id
  for (std::size_t i = 0; i < key.size(); ++i) {
    if (key[i] == '-') continue;
    put_u8(out, static_cast<std::uint8_t>(hex_value(key[i]) << 4 | hex_value(key[i + 1])));
    ++i;
  }
  put_text_field(out, e.endpoint.view());
  put_text_field(out, e.method.view());
  put_int4_field(out, e.status);
  // inet: family (PGSQL_AF_INET 2, PGSQL_AF_INET6 3), bits, is_cidr, length, address bytes.
  const bool v4 = e.client_ip.is_v4;
  put_u32(out, v4 ? 8 : 20);
  put_u8(out, v4 ? 2 : 3);
  put_u8(out, v4 ? 32 : 128);
  put_u8(out, 0);
  put_u8(out, v4 ? 4 : 16);
  out.append(reinterpret_cast<const char*>(e.client_ip.bytes.data()) + (v4 ? 12 : 0), v4 ? 4 : 16);
  put_text_field(out, e.user_agent.view());
  // As the staging INSERT computes them from the text form (without its int4 overflow).
  const std::uint32_t us = std::min<std::uint32_t>(e.response_time_us, 0x7fffffff);
  put_int4_field(out, static_cast<std::int32_t>((std::uint64_t{us} + 500) / 1000));
  put_int4_field(out, static_cast<std::int32_t>(us));
  // timestamptz: microseconds since 2000-01-01 00:00:00 UTC.
  put_u32(out, 8);
  put_u64(out, static_cast<std::uint64_t>(e.created_at_us - 946684800000000LL));
  return true;
}

std::optional<std::int32_t> usage_line_day(std::string_view line) {
  const auto tab = line.rfind('\t');
  if (tab == std::string_view::npos) return std::nullopt;
  const std::string_view ts = line.substr(tab + 1);
  if (ts.size() < 10 || ts[4] != '-' || ts[7] != '-') return std::nullopt;
  auto number = [&](std::size_t at, std::size_t len) -> int {
    int v = 0;
    for (std::size_t i = at; i < at + len; ++i) {
      if (ts[i] < '0' || ts[i] > '9') return -1;
      v = v * 10 + (ts[i] - '0');
    }
    return v;
  };
  const int y = number(0, 4), m = number(5, 2), d = number(8, 2);
  if (y < 0 || m < 1 || m > 12 || d < 1 || d > 31) return std::nullopt;
  return days_from_civil(y, static_cast<unsigned>(m), static_cast<unsigned>(d));
}

// ---- the writer -----------------------------------------------------------------------------

UsageWriter::UsageWriter(UsageWriterOptions options, UsageQueue& queue)
    : options_(std::move(options)),
      queue_(queue),
      collect_timer_(io_),
      flush_timer_(io_),
      process_id_(new_usage_process_id()),
      spill_(options_.spill_path) {
  options_.batch_size = std::max<std::size_t>(1, options_.batch_size);
  options_.queue_size = std::max<std::size_t>(1, options_.queue_size);
  backoff_ = options_.retry_min;
  // A shard at a batch's share wakes the collector at once instead of at its next tick.
  queue_.set_wake(
      [this] {
        if (wake_posted_.exchange(true, std::memory_order_acq_rel)) return;
        asio::post(io_, [this] {
          wake_posted_.store(false, std::memory_order_release);
          collect_timer_.cancel();
        });
      },
      std::max<std::size_t>(1, options_.batch_size / queue_.shards()));
}

UsageWriter::~UsageWriter() {
  if (started_ && !stopped_) stop_and_drain(milliseconds(0));
  queue_.set_wake({}, 0);
}

void UsageWriter::start() {
  if (started_) return;
  started_ = true;
  if (!options_.spill_path.empty()) {
    if (std::string error = spill_.open(); !error.empty()) {
      log_event("error", "usage: no spill file; events past the in-memory bound will be dropped",
                error);
    } else if (spill_.torn_bytes() > 0) {
      log_event("warn", "usage: cut a torn last line from the spill file", spill_.path());
    }
  }
  last_used_flushed_ = SteadyClock::now();
  auto rethrow = [](std::exception_ptr e) {
    if (e) std::rethrow_exception(e);  // a bug: let it end the process loudly
  };
  asio::co_spawn(io_, collect_loop(), rethrow);
  asio::co_spawn(io_, flush_loop(), rethrow);
  thread_ = std::thread([this] { io_.run(); });
}

UsageDrainResult UsageWriter::stop_and_drain(milliseconds timeout) {
  if (stopped_) return drain_result_;
  if (!started_) start();
  stopped_ = true;
  const SteadyTime deadline = SteadyClock::now() + timeout;
  asio::post(io_, [this, deadline] {
    stopping_ = true;
    drain_deadline_ = deadline;
    collect_timer_.cancel();
    flush_timer_.cancel();
  });
  if (thread_.joinable()) thread_.join();
  return drain_result_;
}

milliseconds UsageWriter::remaining(SteadyTime deadline, milliseconds cap) const {
  const auto left = std::chrono::duration_cast<milliseconds>(deadline - SteadyClock::now());
  return std::clamp(left, milliseconds(1), cap);
}

asio::awaitable<void> UsageWriter::sleep_until(SteadyTime when) {
  flush_timer_.expires_at(when);
  co_await flush_timer_.async_wait(asio::as_tuple(asio::use_awaitable));
}

// ---- collecting -----------------------------------------------------------------------------

asio::awaitable<void> UsageWriter::collect_loop() {
  const milliseconds tick = std::clamp(options_.flush_interval / 4, milliseconds(5), milliseconds(100));
  while (!stopping_) {
    collect();
    collect_timer_.expires_after(tick);
    co_await collect_timer_.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

void UsageWriter::collect() {
  const std::size_t before = backlog_.size();
  const UsageQueue::Taken taken = queue_.take_all(backlog_);
  Metrics& m = metrics();
  if (taken.recorded > 0) m.usage_queued.fetch_add(taken.recorded, std::memory_order_relaxed);
  if (taken.dropped > 0) m.usage_dropped.fetch_add(taken.dropped, std::memory_order_relaxed);
  for (std::size_t i = before; i < backlog_.size(); ++i) {
    UsageEvent& e = backlog_[i];
    e.sequence = next_sequence_++;
    if (auto it = last_used_.find(e.key_id.view()); it != last_used_.end()) {
      it->second = std::max(it->second, e.created_at_us);
    } else {
      last_used_.emplace(std::string(e.key_id.view()), e.created_at_us);
    }
  }
  if (backlog_size() > options_.queue_size) spill_overflow();
  update_depth();
  if (backlog_size() >= options_.batch_size) flush_timer_.cancel();
}

void UsageWriter::spill_overflow() {
  const std::size_t n = backlog_size() - options_.queue_size;
  std::string lines;
  std::size_t encoded = 0, invalid = 0;
  for (std::size_t i = backlog_head_; i < backlog_head_ + n; ++i) {
    if (append_usage_line(lines, backlog_[i], process_id_)) ++encoded;
    else ++invalid;
  }
  backlog_head_ += n;
  compact_backlog();
  Metrics& m = metrics();
  if (invalid > 0) m.usage_dropped.fetch_add(invalid, std::memory_order_relaxed);
  std::string error = spill_.is_open() ? spill_.append(lines) : "no spill file";
  if (error.empty()) {
    m.usage_spilled.fetch_add(encoded, std::memory_order_relaxed);
    if (stopping_) drain_result_.spilled += encoded;
  } else {
    m.usage_dropped.fetch_add(encoded, std::memory_order_relaxed);
    if (stopping_) drain_result_.dropped += encoded;
    log_event("error", "usage: in-memory bound reached and the spill file failed; events dropped",
              error);
  }
}

void UsageWriter::compact_backlog() {
  if (backlog_head_ == backlog_.size()) {
    backlog_.clear();
    backlog_head_ = 0;
  } else if (backlog_head_ > 4096 && backlog_head_ * 2 > backlog_.size()) {
    backlog_.erase(backlog_.begin(), backlog_.begin() + static_cast<std::ptrdiff_t>(backlog_head_));
    backlog_head_ = 0;
  }
}

void UsageWriter::update_depth() {
  std::size_t flying = 0;
  for (const Batch& b : in_flight_) flying += b.from_spill ? 0 : b.lines();
  metrics().usage_queue_depth.store(static_cast<std::int64_t>(backlog_size() + flying),
                                    std::memory_order_relaxed);
}

UsageWriter::Batch UsageWriter::take_batch() {
  Batch batch;
  const std::size_t n = std::min(options_.batch_size, backlog_size());
  batch.events.reserve(n);
  std::size_t invalid = 0;
  for (std::size_t i = backlog_head_; i < backlog_head_ + n; ++i) {
    const UsageEvent& e = backlog_[i];
    if (!is_uuid_text(e.key_id.view())) {
      ++invalid;
      continue;
    }
    batch.events.push_back(e);
    batch.days.insert(usage_day_of(e.created_at_us));
  }
  backlog_head_ += n;
  compact_backlog();
  if (invalid > 0) {
    metrics().usage_dropped.fetch_add(invalid, std::memory_order_relaxed);
    log_event("error", "usage: events with a key id that is not a uuid were dropped",
              std::to_string(invalid));
  }
  return batch;
}

std::optional<UsageWriter::Batch> UsageWriter::read_spill_batch() {
  std::string error;
  std::optional<UsageSpill::Chunk> chunk = spill_.read(options_.batch_size, spill_read_max_bytes, error);
  if (!chunk) {
    log_event("error", "usage: cannot replay the spill file; leaving it as it is", error);
    spill_.close();  // nothing pending any more: no busy loop over a file that cannot be read
    return std::nullopt;
  }
  Batch batch;
  batch.from_spill = true;
  batch.spill_end = chunk->end;
  batch.data = std::move(chunk->data);
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

// ---- writing --------------------------------------------------------------------------------

asio::awaitable<void> UsageWriter::flush_loop() {
  SteadyTime next_flush = SteadyClock::now() + options_.flush_interval;
  for (;;) {
    collect();
    if (stopping_) break;
    const SteadyTime now = SteadyClock::now();
    const bool time_due = now >= next_flush;
    const bool last_used_due =
        !last_used_.empty() && now - last_used_flushed_ >= options_.last_used_interval;
    const bool maintenance_due = maintained_day_ != today_utc() && now >= next_maintenance_try_;
    const bool work = !in_flight_.empty() || backlog_size() >= options_.batch_size ||
                      (time_due && backlog_size() > 0) || spill_.pending() || last_used_due ||
                      maintenance_due;
    if (!work) {
      if (time_due) next_flush = now + options_.flush_interval;
      co_await sleep_until(std::min(next_flush, last_used_.empty()
                                                    ? next_flush
                                                    : last_used_flushed_ + options_.last_used_interval));
      continue;
    }
    if (!co_await ensure_ready(now + options_.connect_timeout + options_.query_timeout)) {
      co_await sleep_until(SteadyClock::now() + backoff_);
      backoff_ = std::min(backoff_ * 2, options_.retry_max);
      continue;
    }
    if (in_flight_.empty()) {
      // Memory first when a batch is full or due (it is the bounded resource), else replay.
      if (backlog_size() > 0 && (backlog_size() >= options_.batch_size || time_due || !spill_.pending())) {
        in_flight_.push_back(take_batch());
      } else if (spill_.pending()) {
        if (auto batch = read_spill_batch()) in_flight_.push_back(std::move(*batch));
      }
    }
    if (!in_flight_.empty()) {
      const WriteOutcome outcome = co_await write_front(SteadyClock::now() + options_.query_timeout);
      if (outcome == WriteOutcome::retry) {
        co_await sleep_until(SteadyClock::now() + backoff_);
        backoff_ = std::min(backoff_ * 2, options_.retry_max);
        continue;
      }
    }
    if (backlog_size() == 0 && in_flight_.empty()) next_flush = SteadyClock::now() + options_.flush_interval;
    if (last_used_due) co_await flush_last_used(SteadyClock::now() + options_.query_timeout);
    update_depth();
  }
  co_await drain();
}

asio::awaitable<bool> UsageWriter::ensure_ready(SteadyTime deadline) {
  if (!connection_ || !connection_->connected()) {
    if (!connection_) connection_ = std::make_unique<PgConnection>(co_await asio::this_coro::executor);
    PgResult connected = co_await connection_->connect(options_.dsn, remaining(deadline, options_.connect_timeout));
    if (!connected.ok()) {
      note_failure(connected.error());
      co_return false;
    }
    std::string staging = "CREATE TEMP TABLE IF NOT EXISTS keygate_usage_staging ("
                          "event_id uuid, api_key_id uuid, endpoint text, method text, "
                          "status_code integer, ip_address inet, user_agent text, "
                          "response_time_us integer, created_at timestamptz) ON COMMIT DELETE ROWS";
    PgResult created = co_await connection_->execute(std::move(staging), remaining(deadline, options_.query_timeout));
    if (!created.ok()) {
      note_failure(created.error());
      drop_connection();
      co_return false;
    }
    known_days_.clear();
    next_maintenance_try_ = {};
    maintained_day_ = -1;
  }
  if (maintained_day_ != today_utc() && SteadyClock::now() >= next_maintenance_try_) {
    if (!co_await maintain_partitions(deadline)) {
      if (!connection_->connected()) co_return false;
      next_maintenance_try_ = SteadyClock::now() + std::chrono::minutes(1);
    }
  }
  co_return true;
}

asio::awaitable<bool> UsageWriter::maintain_partitions(SteadyTime deadline) {
  const std::int32_t today = today_utc();
  std::set<std::int32_t> wanted;
  for (std::int32_t d = today - 1; d <= today + static_cast<std::int32_t>(options_.partitions_ahead_days); ++d) {
    wanted.insert(d);
  }
  known_days_.clear();  // re-read what exists
  if (!co_await ensure_partitions(wanted, deadline)) co_return false;
  if (options_.retention_days > 0) {
    const std::int32_t cutoff = today - static_cast<std::int32_t>(options_.retention_days);
    std::string drop;
    for (std::int32_t day : known_days_) {
      if (day >= cutoff) break;
      drop += drop.empty() ? "" : ", ";
      drop += usage_partition_name(day);
    }
    if (!drop.empty()) {
      std::string sql = "SELECT pg_advisory_xact_lock(" + std::to_string(partition_lock_key) +
                        "); DROP TABLE IF EXISTS " + drop;
      PgResult dropped = co_await connection_->execute(std::move(sql), remaining(deadline, options_.query_timeout));
      if (!dropped.ok()) {
        log_event("error", "usage: could not drop partitions past retention", dropped.error());
        co_return false;
      }
      log_event("info", "usage: dropped partitions past retention", drop);
      std::erase_if(known_days_, [cutoff](std::int32_t day) { return day < cutoff; });
    }
  }
  maintained_day_ = today;
  co_return true;
}

asio::awaitable<bool> UsageWriter::ensure_partitions(const std::set<std::int32_t>& days,
                                                     SteadyTime deadline) {
  if (known_days_.empty()) {
    std::string list =
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'api_key_usage'::regclass";
    PgResult existing = co_await connection_->execute(std::move(list), remaining(deadline, options_.query_timeout));
    if (!existing.ok()) {
      note_failure(existing.error());
      co_return false;
    }
    for (int r = 0; r < existing.rows(); ++r) {
      const std::string_view name = existing.get(r, 0);
      if (name.size() != 23 || !name.starts_with("api_key_usage_p")) continue;
      std::string text(name.substr(15, 4));
      text += "-" + std::string(name.substr(19, 2)) + "-" + std::string(name.substr(21, 2));
      if (auto day = usage_line_day("\t" + text)) known_days_.insert(*day);
    }
  }
  std::string sql;
  std::vector<std::int32_t> created;
  for (std::int32_t day : days) {
    if (known_days_.contains(day)) continue;
    if (sql.empty()) sql = "SELECT pg_advisory_xact_lock(" + std::to_string(partition_lock_key) + ");";
    sql += " CREATE TABLE IF NOT EXISTS " + usage_partition_name(day) +
           " PARTITION OF api_key_usage FOR VALUES FROM ('" + usage_day_text(day) +
           " 00:00:00+00') TO ('" + usage_day_text(day + 1) + " 00:00:00+00');";
    created.push_back(day);
  }
  if (sql.empty()) co_return true;
  PgResult result = co_await connection_->execute(std::move(sql), remaining(deadline, options_.query_timeout));
  if (!result.ok()) {
    note_failure(result.error());
    co_return false;
  }
  known_days_.insert(created.begin(), created.end());
  co_return true;
}

asio::awaitable<UsageWriter::WriteOutcome> UsageWriter::write_front(SteadyTime deadline) {
  Batch& batch = in_flight_.front();
  Metrics& m = metrics();
  auto stored = [&](std::uint64_t inserted) {
    m.usage_written.fetch_add(inserted, std::memory_order_relaxed);
    if (batch.from_spill) {
      m.usage_replayed.fetch_add(batch.lines(), std::memory_order_relaxed);
      if (batch.spill_end != 0) {
        if (std::string error = spill_.consumed(batch.spill_end); !error.empty()) {
          log_event("error", "usage: spill file", error);
        }
      }
    }
    if (stopping_) drain_result_.written += inserted;
    in_flight_.pop_front();
    note_success();
    return WriteOutcome::stored;
  };
  if (batch.lines() == 0) co_return stored(0);

  std::set<std::int32_t> missing;
  for (std::int32_t day : batch.days) {
    if (!known_days_.contains(day)) missing.insert(day);
  }
  if (!missing.empty() && !co_await ensure_partitions(missing, deadline)) {
    if (!connection_->connected()) drop_connection();
    co_return WriteOutcome::retry;
  }

  PgConnection& c = *connection_;
  if (batch.direct()) {
    // The fast path, for a batch never sent before: in one transaction, lock its keys, then one
    // binary COPY straight into api_key_usage. It needs no staging table: if anything fails
    // before the COMMIT is sent, nothing of the batch is committed (PostgreSQL rolls back a
    // refused statement's transaction, and a broken connection's), so the batch may go again
    // as it is. Only when the COMMIT was sent and no answer came (the connection broke or
    // timed out) is the outcome unknown; from then on the batch takes the staging path below,
    // whose ON CONFLICT DO NOTHING on the event ids makes a second write of a committed row a
    // no-op, like every replay from the spill file. (A direct retry could not double a row
    // either, the event id being the primary key: it would be refused, costing a COPY.) This
    // spares PostgreSQL the staging table's COPY and the INSERT..SELECT's second pass over
    // each row (issue #5: PostgreSQL's CPU per usage row).
    //
    // The keys: api_key_usage has no foreign key to api_keys (its per-row check was half of
    // PostgreSQL's CPU per row; migration 0004). Instead each key of the batch is locked once
    // (FOR KEY SHARE, as the foreign key's check did per row), so a concurrent DELETE waits
    // for this COMMIT and its trigger then deletes these rows too, and the rows of a key that
    // is already gone are left out, as the staging path's EXISTS does.
    std::vector<std::string> keys;
    {
      std::unordered_set<std::string> seen;
      for (const UsageEvent& e : batch.events) {
        std::string id = lower_ascii(e.key_id.view());
        if (seen.insert(id).second) keys.push_back(std::move(id));
      }
    }
    bool commit_sent = false;
    std::uint64_t copied_rows = 0;
    PgResult step = co_await c.execute("BEGIN", remaining(deadline, options_.query_timeout));
    if (step.ok()) {
      PgParams params;
      params.emplace_back(format_pg_array(keys));
      step = co_await c.query("SELECT id FROM api_keys WHERE id = ANY($1::uuid[]) FOR KEY SHARE",
                              std::move(params), remaining(deadline, options_.query_timeout));
    }
    if (step.ok()) {
      std::unordered_set<std::string> existing;
      for (int r = 0; r < step.rows(); ++r) existing.emplace(step.get(r, 0));
      std::string data;
      data.reserve(batch.events.size() * 256 + 32);
      append_usage_binary_header(data);
      std::size_t rows = 0;
      for (const UsageEvent& e : batch.events) {
        if (existing.size() != keys.size() && !existing.contains(lower_ascii(e.key_id.view()))) continue;
        append_usage_binary_row(data, e, process_id_);
        ++rows;
      }
      append_usage_binary_trailer(data);
      if (rows > 0) {
        std::string copy = "COPY api_key_usage (" + std::string(direct_columns) + ") FROM STDIN (FORMAT binary)";
        step = co_await c.copy_in(std::move(copy), std::move(data), remaining(deadline, options_.query_timeout));
        copied_rows = step.ok() ? step.affected_rows() : 0;
      }
    }
    if (step.ok()) {
      commit_sent = true;
      step = co_await c.execute("COMMIT", remaining(deadline, options_.query_timeout));
    }
    if (step.ok()) co_return stored(copied_rows);
    if (step.status() != PgStatus::query_error) {
      drop_connection();
      if (commit_sent) batch.stage(process_id_);  // the outcome is unknown
      note_failure(step.error());
      co_return WriteOutcome::retry;
    }
    // Refused, so nothing was committed: leave the connection clean, then decide.
    if (c.connected()) {
      PgResult rolled_back = co_await c.execute("ROLLBACK", remaining(deadline, options_.query_timeout));
      if (!rolled_back.ok()) drop_connection();
    }
    if (!is_data_error(step.sqlstate())) {
      if (step.sqlstate() == "23514") known_days_.clear();  // no partition for a row: look again
      note_failure(step.error());
      co_return WriteOutcome::retry;
    }
    // A row PostgreSQL refuses: the staging path isolates it.
    batch.stage(process_id_);
    co_return WriteOutcome::split;
  }

  PgResult result = co_await c.execute("BEGIN", remaining(deadline, options_.query_timeout));
  if (result.ok()) {
    std::string copy = "COPY keygate_usage_staging (" + std::string(staging_columns) + ") FROM STDIN";
    result = co_await c.copy_in(std::move(copy), batch.data, remaining(deadline, options_.query_timeout));
  }
  std::uint64_t inserted = 0;
  if (result.ok()) {
    // Locks the batch's keys first, as the direct path does (see there).
    std::string insert =
        "SELECT 1 FROM api_keys k WHERE k.id IN (SELECT api_key_id FROM keygate_usage_staging) "
        "FOR KEY SHARE OF k; "
        "INSERT INTO api_key_usage (event_id, api_key_id, endpoint, method, status_code, "
        "ip_address, user_agent, response_time_ms, response_time_us, created_at) "
        "SELECT s.event_id, s.api_key_id, s.endpoint, s.method, s.status_code, s.ip_address, "
        "s.user_agent, ((s.response_time_us::bigint + 500) / 1000)::integer, s.response_time_us, "
        "s.created_at "
        "FROM keygate_usage_staging s "
        "WHERE EXISTS (SELECT 1 FROM api_keys k WHERE k.id = s.api_key_id) "
        "ON CONFLICT DO NOTHING";
    result = co_await c.execute(std::move(insert), remaining(deadline, options_.query_timeout));
    inserted = result.ok() ? result.affected_rows() : 0;
  }
  if (result.ok()) result = co_await c.execute("COMMIT", remaining(deadline, options_.query_timeout));
  if (result.ok()) co_return stored(inserted);

  // Failed: nothing of this batch is committed (or the COMMIT's fate is unknown, which the
  // event ids make harmless). Leave the connection clean, then decide.
  if (result.status() == PgStatus::query_error && c.connected()) {
    PgResult rolled_back = co_await c.execute("ROLLBACK", remaining(deadline, options_.query_timeout));
    if (!rolled_back.ok()) drop_connection();
  } else {
    drop_connection();
  }
  if (result.status() != PgStatus::query_error) {
    note_failure(result.error());
    co_return WriteOutcome::retry;
  }
  if (result.sqlstate() == "23514") {  // no partition for a row: look again, then retry
    known_days_.clear();
    note_failure(result.error());
    co_return WriteOutcome::retry;
  }
  if (!is_data_error(result.sqlstate())) {
    note_failure(result.error());
    co_return WriteOutcome::retry;
  }
  // A row the server refuses (a hand-edited spill line, a key deleted meanwhile): once more as
  // is, then halve until the bad line stands alone, and drop only that one.
  if (++batch.query_failures < 2) co_return WriteOutcome::split;
  if (batch.lines() == 1) {
    log_event("error", "usage: dropped an event PostgreSQL refuses", result.error());
    m.usage_dropped.fetch_add(1, std::memory_order_relaxed);
    if (stopping_) ++drain_result_.dropped;
    const std::uint64_t end = batch.spill_end;
    const bool from_spill = batch.from_spill;
    in_flight_.pop_front();
    if (from_spill && end != 0) spill_.consumed(end);
    co_return WriteOutcome::split;
  }
  Batch first, second;
  const std::size_t half = batch.lines() / 2;
  const std::size_t cut = batch.line_ends[half - 1];
  first.data = batch.data.substr(0, cut);
  second.data = batch.data.substr(cut);
  for (std::size_t i = 0; i < batch.lines(); ++i) {
    Batch& to = i < half ? first : second;
    to.line_ends.push_back(batch.line_ends[i] - (i < half ? 0 : cut));
  }
  first.days = second.days = batch.days;
  first.from_spill = second.from_spill = batch.from_spill;
  second.spill_end = batch.spill_end;  // consumed once the last piece is done
  first.query_failures = second.query_failures = 1;
  in_flight_.pop_front();
  in_flight_.push_front(std::move(second));
  in_flight_.push_front(std::move(first));
  co_return WriteOutcome::split;
}

asio::awaitable<bool> UsageWriter::flush_last_used(SteadyTime deadline) {
  if (last_used_.empty()) co_return true;
  std::vector<std::string> ids, times;
  ids.reserve(last_used_.size());
  times.reserve(last_used_.size());
  for (const auto& [id, us] : last_used_) {
    if (!is_uuid_text(id)) continue;
    ids.push_back(id);
    std::string when;
    append_utc_timestamp(when, us);
    times.push_back(std::move(when));
  }
  PgParams params;
  params.emplace_back(format_pg_array(ids));
  params.emplace_back(format_pg_array(times));
  PgResult result = co_await connection_->query(
      "UPDATE api_keys AS k SET last_used_at = v.used_at "
      "FROM unnest($1::uuid[], $2::timestamptz[]) AS v(id, used_at) "
      "WHERE k.id = v.id AND (k.last_used_at IS NULL OR k.last_used_at < v.used_at)",
      std::move(params), remaining(deadline, options_.query_timeout));
  if (!result.ok()) {
    if (result.status() != PgStatus::query_error) drop_connection();
    note_failure(result.error());
    co_return false;  // kept: merged with newer ones and sent next time
  }
  last_used_.clear();
  last_used_flushed_ = SteadyClock::now();
  co_return true;
}

// ---- shutdown -------------------------------------------------------------------------------

asio::awaitable<void> UsageWriter::drain() {
  queue_.close();
  collect();  // the producers have stopped: this is the last of it
  const SteadyTime deadline = drain_deadline_;
  milliseconds pause = options_.retry_min;
  while ((!in_flight_.empty() || backlog_size() > 0) && SteadyClock::now() < deadline) {
    if (!connection_ || !connection_->connected()) {
      if (!co_await ensure_ready(deadline)) {
        if (SteadyClock::now() + pause >= deadline) break;
        co_await sleep_until(SteadyClock::now() + pause);
        pause = std::min(pause * 2, options_.retry_max);
        continue;
      }
    }
    if (in_flight_.empty()) in_flight_.push_back(take_batch());
    if (co_await write_front(deadline) == WriteOutcome::retry) {
      if (SteadyClock::now() + pause >= deadline) break;
      co_await sleep_until(SteadyClock::now() + pause);
      pause = std::min(pause * 2, options_.retry_max);
    }
  }
  // Whatever is left goes to the spill file, to be replayed by the next start.
  std::string lines;
  std::size_t count = 0;
  for (Batch& b : in_flight_) {
    if (b.from_spill) continue;  // still in the file
    b.stage(process_id_);
    lines += b.data;
    count += b.lines();
  }
  in_flight_.clear();
  for (std::size_t i = backlog_head_; i < backlog_.size(); ++i) {
    if (append_usage_line(lines, backlog_[i], process_id_)) ++count;
  }
  backlog_.clear();
  backlog_head_ = 0;
  if (count > 0) {
    std::string error = spill_.is_open() ? spill_.append(lines) : "no spill file";
    if (error.empty()) error = spill_.sync();
    if (error.empty()) {
      metrics().usage_spilled.fetch_add(count, std::memory_order_relaxed);
      drain_result_.spilled += count;
      log_event("warn", "usage: events left at shutdown were kept in the spill file",
                std::to_string(count) + " events in " + spill_.path());
    } else {
      metrics().usage_dropped.fetch_add(count, std::memory_order_relaxed);
      drain_result_.dropped += count;
      log_event("error", "usage: events left at shutdown were lost", error);
    }
  }
  if (!last_used_.empty() && connection_ && connection_->connected() && SteadyClock::now() < deadline) {
    co_await flush_last_used(deadline);
  }
  update_depth();
  if (connection_) connection_->close();
  spill_.close();
}

// ---- state ----------------------------------------------------------------------------------

void UsageWriter::note_failure(const std::string& what) {
  if (what != last_failure_) {
    log_event("warn", "usage: cannot write usage events to PostgreSQL yet; keeping them and retrying", what);
    last_failure_ = what;
  }
}

void UsageWriter::note_success() {
  if (!last_failure_.empty()) {
    log_event("info", "usage: writing usage events to PostgreSQL again");
    last_failure_.clear();
  }
  backoff_ = options_.retry_min;
}

void UsageWriter::drop_connection() {
  if (connection_) connection_->close();
  known_days_.clear();
}

}  // namespace keygate::store
