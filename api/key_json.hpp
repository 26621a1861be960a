#pragma once
// One JSON object per key, the same for the API's answers and `keygate keys --json`: the field
// names of the design's contract. Never the key's hash; the key itself only where it was just
// made (create, rotate).
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <optional>
#include <string>

#include "store/key_repository.hpp"

namespace keygate::api {

std::string owner_text(const store::KeyRecord& r);                         // "user:42"
std::optional<std::string> rate_limit_text(const store::KeyRecord& r);     // "100/60s"
std::string status_text(const store::KeyRecord& r);  // active | inactive | expired | revoked (now)
boost::json::value time_json(const std::optional<store::TimePoint>& t);   // RFC 3339 or null
// `full_key`: the key itself, for create and rotate only; absent elsewhere.
boost::json::object key_json(const store::KeyDetails& k, const std::string* full_key);

}  // namespace keygate::api
