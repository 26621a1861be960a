#pragma once
// The form of a KeyRecord in Redis: a compact length-prefixed text with a version tag (format in
// key_record_codec.cpp), so a keygate that meets a record written by another version treats it
// as a miss instead of misreading it.
#include <optional>
#include <string>
#include <string_view>

#include "store/key_record.hpp"

namespace keygate::store {

std::string encode_key_record(const KeyRecord& record);
// nullopt for anything that is not a record of this version (also the invalidation marker).
std::optional<KeyRecord> decode_key_record(std::string_view text);

// The Redis key under which a record is cached: "kg:key:" + hex of the key hash.
std::string redis_record_key(const KeyHash& hash);

}  // namespace keygate::store
