#pragma once
// API key text format: "<prefix>_<32 base62 random chars><6 base62 chars of CRC32>".
// The checksum lets keygate reject typos and invented keys without any I/O, and lets secret
// scanners recognise leaked keys.
#include <cstddef>
#include <string>
#include <string_view>

namespace keygate::authz {

inline constexpr std::size_t key_random_length = 32;   // 32 * log2(62) ~ 190 bits
inline constexpr std::size_t key_checksum_length = 6;  // 62^6 > 2^32
inline constexpr std::size_t key_display_length = 12;  // stored as api_keys.key_prefix
inline constexpr std::size_t key_max_length = 128;

enum class KeyFormat {
  valid,
  empty,
  malformed,     // length, characters or prefix shape
  bad_checksum,  // well formed, but the CRC32 does not match
};

// [a-z][a-z0-9_]{0,31}, not ending in '_'.
bool is_valid_key_prefix(std::string_view prefix);

// A new key from OpenSSL's CSPRNG (unbiased base62 by rejection sampling).
// Throws std::invalid_argument for an invalid prefix, std::runtime_error if the CSPRNG fails.
std::string generate_key(std::string_view prefix);

// Pure and allocation-free; any valid prefix is accepted.
KeyFormat check_key_format(std::string_view key);

// The first key_display_length characters (the whole text if shorter).
std::string key_display_prefix(std::string_view key);

}  // namespace keygate::authz
