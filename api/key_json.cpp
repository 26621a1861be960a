#include "api/key_json.hpp"

#include <boost/json/array.hpp>
#include <boost/json/parse.hpp>

#include "core/time_format.hpp"

namespace keygate::api {
namespace json = boost::json;
using store::KeyDetails;

std::optional<std::string> rate_limit_text(const store::KeyRecord& r) {
  if (!r.rate_limit || !r.window_seconds) return std::nullopt;
  return std::to_string(*r.rate_limit) + "/" + std::to_string(*r.window_seconds) + "s";
}

std::string status_text(const store::KeyRecord& r) {
  if (r.revoked_at) return "revoked";
  if (!r.is_active) return "inactive";
  if (r.expires_at && *r.expires_at <= store::Clock::now()) return "expired";
  return "active";
}

std::string owner_text(const store::KeyRecord& r) { return r.owner_type + ":" + r.owner_id; }

json::value time_json(const std::optional<store::TimePoint>& t) {
  return t ? json::value(core::format_utc_seconds(*t)) : json::value(nullptr);
}

json::object key_json(const KeyDetails& k, const std::string* full_key) {
  const auto& r = k.record;
  json::object o;
  o["id"] = r.id;
  if (full_key != nullptr) o["key"] = *full_key;
  o["key_prefix"] = k.key_prefix;
  o["owner"] = owner_text(r);
  o["name"] = r.name;
  o["description"] = k.description ? json::value(*k.description) : json::value(nullptr);
  json::array scopes;
  for (const auto& s : r.scopes) scopes.emplace_back(s);
  o["scopes"] = std::move(scopes);
  json::array ips;
  for (const auto& n : r.allowed_ips) ips.emplace_back(n.to_string());
  o["allowed_ips"] = std::move(ips);
  const auto limit = rate_limit_text(r);
  o["rate_limit"] = limit ? json::value(*limit) : json::value(nullptr);
  o["quota"] = r.quota ? json::value(*r.quota) : json::value(nullptr);
  o["is_active"] = r.is_active && !r.revoked_at;
  o["status"] = status_text(r);
  o["expires_at"] = time_json(r.expires_at);
  o["revoked_at"] = time_json(r.revoked_at);
  o["created_at"] = core::format_utc_seconds(k.created_at);
  o["last_used_at"] = time_json(k.last_used_at);
  o["leaked_at"] = time_json(k.leaked_at);
  boost::system::error_code ec;
  json::value metadata = json::parse(k.metadata_json, ec);
  o["metadata"] = ec || !metadata.is_object() ? json::value(json::object()) : std::move(metadata);
  return o;
}

}  // namespace keygate::api
