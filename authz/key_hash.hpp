#pragma once
// The at-rest form of a key: SHA-256 of the whole key, or HMAC-SHA-256 keyed with a server-side
// pepper when one is configured. Keys are long and random, so a slow password hash would add
// latency and no security.
#include <optional>
#include <string>
#include <string_view>

#include "store/key_record.hpp"

namespace keygate::authz {

// SHA-256(key) if pepper is empty, else HMAC-SHA-256(key = pepper, message = key).
// Thread-safe, allocation-free after the first call with a pepper on a thread (the HMAC pad
// states are cached per thread).
store::KeyHash hash_key(std::string_view key, std::string_view pepper);

// Constant time, so a lookup never leaks how much of a hash matched.
bool hashes_equal(const store::KeyHash& a, const store::KeyHash& b);

std::string hash_to_hex(const store::KeyHash& hash);                // 64 lower-case hex chars
std::optional<store::KeyHash> hash_from_hex(std::string_view hex);  // 64 hex chars, any case

}  // namespace keygate::authz
