#include "store/key_record_codec.hpp"

#include <boost/json.hpp>

namespace keygate::store {
namespace json = boost::json;

namespace {

constexpr int record_version = 1;

std::int64_t to_micros(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

TimePoint from_micros(std::int64_t us) {
  return TimePoint(std::chrono::duration_cast<Clock::duration>(std::chrono::microseconds(us)));
}

template <typename T>
void put_optional(json::object& o, const char* name, const std::optional<T>& value) {
  if (value) o[name] = *value;
}

void put_time(json::object& o, const char* name, const std::optional<TimePoint>& value) {
  if (value) o[name] = to_micros(*value);
}

constexpr char hex_digits[] = "0123456789abcdef";

}  // namespace

std::string redis_record_key(const KeyHash& hash) {
  std::string key = "kg:key:";
  key.reserve(key.size() + 64);
  for (std::uint8_t b : hash) {
    key.push_back(hex_digits[b >> 4]);
    key.push_back(hex_digits[b & 0xf]);
  }
  return key;
}

std::string encode_key_record(const KeyRecord& record) {
  json::object o;
  o["v"] = record_version;
  o["id"] = record.id;
  o["ot"] = record.owner_type;
  o["oi"] = record.owner_id;
  o["n"] = record.name;
  json::array scopes;
  for (const auto& s : record.scopes) scopes.emplace_back(s);
  o["s"] = std::move(scopes);
  json::array ips;
  for (const auto& ip : record.allowed_ips) ips.emplace_back(ip.to_string());
  o["ip"] = std::move(ips);
  put_optional(o, "rl", record.rate_limit);
  put_optional(o, "ws", record.window_seconds);
  put_optional(o, "q", record.quota);
  put_optional(o, "qp", record.quota_period_seconds);
  o["a"] = record.is_active;
  put_time(o, "exp", record.expires_at);
  put_time(o, "rev", record.revoked_at);
  return json::serialize(o);
}

std::optional<KeyRecord> decode_key_record(std::string_view text) {
  json::error_code ec;
  json::value parsed = json::parse(text, ec);
  if (ec || !parsed.is_object()) return std::nullopt;
  const json::object& o = parsed.get_object();
  try {
    if (o.at("v").to_number<int>() != record_version) return std::nullopt;
    KeyRecord r;
    r.id = json::value_to<std::string>(o.at("id"));
    r.owner_type = json::value_to<std::string>(o.at("ot"));
    r.owner_id = json::value_to<std::string>(o.at("oi"));
    r.name = json::value_to<std::string>(o.at("n"));
    for (const auto& s : o.at("s").as_array()) r.scopes.push_back(json::value_to<std::string>(s));
    for (const auto& ip : o.at("ip").as_array()) {
      auto network = IpNetwork::parse(ip.as_string());
      if (!network) return std::nullopt;
      r.allowed_ips.push_back(*network);
    }
    if (auto it = o.find("rl"); it != o.end()) r.rate_limit = it->value().to_number<int>();
    if (auto it = o.find("ws"); it != o.end()) r.window_seconds = it->value().to_number<int>();
    if (auto it = o.find("q"); it != o.end()) r.quota = it->value().to_number<std::int64_t>();
    if (auto it = o.find("qp"); it != o.end()) r.quota_period_seconds = it->value().to_number<int>();
    r.is_active = o.at("a").as_bool();
    if (auto it = o.find("exp"); it != o.end()) r.expires_at = from_micros(it->value().to_number<std::int64_t>());
    if (auto it = o.find("rev"); it != o.end()) r.revoked_at = from_micros(it->value().to_number<std::int64_t>());
    return r;
  } catch (const std::exception&) {
    return std::nullopt;  // a record of another shape: a miss, never a crash
  }
}

}  // namespace keygate::store
