#pragma once
// How `keygate keys` shows keys: one JSON object per key (the field names of the design's
// contract), a detail listing for `show`, a table for `list`, and the new key of `create` and
// `rotate`, printed once.
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <optional>
#include <string>
#include <vector>

#include "store/key_repository.hpp"

namespace keygate::app {

std::string owner_text(const store::KeyRecord& r);  // "user:42"
boost::json::value time_json(const std::optional<store::TimePoint>& t);  // RFC 3339 or null
// `full_key`: the key itself, for create and rotate only; null elsewhere.
boost::json::object key_json(const store::KeyDetails& k, const std::string* full_key);
void print_json(const boost::json::value& v);
void print_new_key(const std::string& key);
void print_details(const store::KeyDetails& k);
void print_table(const std::vector<store::KeyDetails>& keys);

}  // namespace keygate::app
