#pragma once
// How `keygate keys` shows keys: one JSON object per key (the field names of the design's
// contract), a detail listing for `show`, a table for `list`, and the new key of `create` and
// `rotate`, printed once.
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <optional>
#include <string>
#include <vector>

#include "api/key_json.hpp"
#include "store/key_repository.hpp"

namespace keygate::app {

// The JSON of a key is the API's (api/key_json.hpp): the CLI prints the same objects.
using api::key_json;
using api::owner_text;
using api::rate_limit_text;
using api::status_text;
using api::time_json;
void print_json(const boost::json::value& v);
void print_new_key(const std::string& key);
void print_details(const store::KeyDetails& k);
void print_table(const std::vector<store::KeyDetails>& keys);

}  // namespace keygate::app
