#include "store/key_record_codec.hpp"

#include <charconv>

#include "core/hex.hpp"

namespace keygate::store {

// The format, version 2 (version 1 was JSON; every lookup decodes one, and JSON cost about
// 10,000 instructions a record each way):
//   "kr2;" then, in this order,
//   strings   <length>:<bytes>        id, owner_type, owner_id, name
//   lists     <count>;<string>...     scopes, then allowed_ips (text form, e.g. 10.0.0.0/8)
//   numbers   <decimal>; or ~; when unset
//                                     rate_limit, window_seconds, quota, quota_period_seconds
//   flag      1; or 0;                is_active
//   times     <µs since epoch>; or ~; expires_at, revoked_at
// Lengths make every byte of a string legal, so names and owner ids need no escaping. Anything
// else (another version, a truncated value, the invalidation marker) decodes as "not a record".
namespace {

constexpr std::string_view magic = "kr2;";
constexpr std::string_view unset = "~";

std::int64_t to_micros(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

// False for a time system_clock cannot hold (libstdc++: nanoseconds, years 1677 to 2262),
// which only a corrupted or foreign value holds: converting it would overflow.
bool is_representable(std::int64_t us) {
  constexpr std::int64_t limit =
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::duration::max()).count();
  return us >= -limit && us <= limit;
}

TimePoint from_micros(std::int64_t us) {
  return TimePoint(std::chrono::duration_cast<Clock::duration>(std::chrono::microseconds(us)));
}

void put_number(std::string& out, std::int64_t value) {
  char digits[24];
  const auto end = std::to_chars(digits, digits + sizeof digits, value).ptr;
  out.append(digits, end);
  out.push_back(';');
}

void put_string(std::string& out, std::string_view text) {
  char digits[24];
  const auto end = std::to_chars(digits, digits + sizeof digits, text.size()).ptr;
  out.append(digits, end);
  out.push_back(':');
  out.append(text);
}

template <typename T>
void put_optional(std::string& out, const std::optional<T>& value) {
  if (value) {
    put_number(out, static_cast<std::int64_t>(*value));
  } else {
    out.append(unset);
    out.push_back(';');
  }
}

// Reads the fields back in order; any malformed field makes it fail for good.
class Reader {
 public:
  explicit Reader(std::string_view text) : rest_(text) {}
  bool ok() const { return ok_; }
  bool at_end() const { return rest_.empty(); }

  bool expect(std::string_view prefix) {
    if (!ok_ || !rest_.starts_with(prefix)) return ok_ = false;
    rest_.remove_prefix(prefix.size());
    return true;
  }

  // "<decimal>;" or "~;" (nullopt).
  std::optional<std::int64_t> number() {
    if (!ok_) return std::nullopt;
    if (rest_.starts_with("~;")) {
      rest_.remove_prefix(2);
      return std::nullopt;
    }
    std::int64_t value = 0;
    const auto [end, ec] = std::from_chars(rest_.data(), rest_.data() + rest_.size(), value);
    if (ec != std::errc() || end == rest_.data() + rest_.size() || *end != ';') {
      ok_ = false;
      return std::nullopt;
    }
    rest_.remove_prefix(static_cast<std::size_t>(end - rest_.data()) + 1);
    return value;
  }

  std::int64_t required_number() {
    const auto value = number();
    if (!value) ok_ = false;
    return value.value_or(0);
  }

  std::string_view string() {
    if (!ok_) return {};
    std::size_t length = 0;
    const auto [end, ec] = std::from_chars(rest_.data(), rest_.data() + rest_.size(), length);
    const std::size_t header = static_cast<std::size_t>(end - rest_.data()) + 1;
    if (ec != std::errc() || end == rest_.data() + rest_.size() || *end != ':' ||
        rest_.size() - header < length) {
      ok_ = false;
      return {};
    }
    const std::string_view value = rest_.substr(header, length);
    rest_.remove_prefix(header + length);
    return value;
  }

  // A list's count, bounded by what the rest could hold (a corrupt count cannot allocate).
  std::size_t count() {
    const std::int64_t n = required_number();
    if (n < 0 || static_cast<std::size_t>(n) > rest_.size()) ok_ = false;
    return ok_ ? static_cast<std::size_t>(n) : 0;
  }

 private:
  std::string_view rest_;
  bool ok_ = true;
};

template <typename T>
std::optional<T> narrowed(std::optional<std::int64_t> value, bool& ok) {
  if (!value) return std::nullopt;
  if (*value < std::numeric_limits<T>::min() || *value > std::numeric_limits<T>::max()) ok = false;
  return static_cast<T>(*value);
}

}  // namespace

std::string redis_record_key(const KeyHash& hash) {
  std::string key = "kg:key:";
  key.reserve(key.size() + 64);
  core::append_hex(key, hash);
  return key;
}

std::string encode_key_record(const KeyRecord& record) {
  std::string out;
  out.reserve(128 + record.id.size() + record.owner_type.size() + record.owner_id.size() +
              record.name.size() + 24 * (record.scopes.size() + record.allowed_ips.size()));
  out.append(magic);
  put_string(out, record.id);
  put_string(out, record.owner_type);
  put_string(out, record.owner_id);
  put_string(out, record.name);
  put_number(out, static_cast<std::int64_t>(record.scopes.size()));
  for (const auto& scope : record.scopes) put_string(out, scope);
  put_number(out, static_cast<std::int64_t>(record.allowed_ips.size()));
  for (const auto& ip : record.allowed_ips) put_string(out, ip.to_string());
  put_optional(out, record.rate_limit);
  put_optional(out, record.window_seconds);
  put_optional(out, record.quota);
  put_optional(out, record.quota_period_seconds);
  put_number(out, record.is_active ? 1 : 0);
  put_optional(out, record.expires_at ? std::optional<std::int64_t>(to_micros(*record.expires_at))
                                      : std::nullopt);
  put_optional(out, record.revoked_at ? std::optional<std::int64_t>(to_micros(*record.revoked_at))
                                      : std::nullopt);
  return out;
}

std::optional<KeyRecord> decode_key_record(std::string_view text) {
  Reader in(text);
  if (!in.expect(magic)) return std::nullopt;
  KeyRecord r;
  r.id = in.string();
  r.owner_type = in.string();
  r.owner_id = in.string();
  r.name = in.string();
  const std::size_t scopes = in.count();
  r.scopes.reserve(scopes);
  for (std::size_t i = 0; i < scopes && in.ok(); ++i) r.scopes.emplace_back(in.string());
  const std::size_t ips = in.count();
  r.allowed_ips.reserve(ips);
  for (std::size_t i = 0; i < ips && in.ok(); ++i) {
    const auto network = core::IpNetwork::parse(in.string());
    if (!network) return std::nullopt;
    r.allowed_ips.push_back(*network);
  }
  bool ok = true;
  r.rate_limit = narrowed<int>(in.number(), ok);
  r.window_seconds = narrowed<int>(in.number(), ok);
  r.quota = in.number();
  r.quota_period_seconds = narrowed<int>(in.number(), ok);
  const std::int64_t active = in.required_number();
  if (active != 0 && active != 1) ok = false;
  r.is_active = active == 1;
  for (std::optional<TimePoint>* time : {&r.expires_at, &r.revoked_at}) {
    const auto us = in.number();
    if (!us) continue;
    if (!is_representable(*us)) return std::nullopt;
    *time = from_micros(*us);
  }
  if (!ok || !in.ok() || !in.at_end() || r.id.empty()) return std::nullopt;
  return r;
}

}  // namespace keygate::store
