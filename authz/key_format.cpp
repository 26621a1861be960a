#include "authz/key_format.hpp"

#include <openssl/rand.h>

#include <boost/crc.hpp>

#include <array>
#include <cstdint>
#include <stdexcept>

#include "core/base62.hpp"

namespace keygate::authz {
namespace {

constexpr std::size_t max_prefix_length = 32;
// '_' + random + checksum: the fixed-length tail after the prefix.
constexpr std::size_t key_tail_length = 1 + key_random_length + key_checksum_length;

// CRC-32/ISO-HDLC (zlib's crc32), as Boost.CRC computes it (table driven).
std::uint32_t crc32(std::string_view data) {
  boost::crc_32_type crc;
  crc.process_bytes(data.data(), data.size());
  return crc.checksum();
}

// Most significant digit first, zero padded to key_checksum_length.
std::array<char, key_checksum_length> encode_checksum(std::uint32_t value) {
  std::array<char, key_checksum_length> out{};
  core::encode_base62_fixed(value, out);
  return out;
}

}  // namespace

bool is_valid_key_prefix(std::string_view prefix) {
  if (prefix.empty() || prefix.size() > max_prefix_length) return false;
  if (prefix.front() < 'a' || prefix.front() > 'z' || prefix.back() == '_') return false;
  for (char c : prefix) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

std::string generate_key(std::string_view prefix) {
  if (!is_valid_key_prefix(prefix)) throw std::invalid_argument("invalid key prefix");
  std::string key;
  key.reserve(prefix.size() + key_tail_length);
  key.append(prefix).push_back('_');

  // 248 = 4 * 62: bytes at or above it are dropped so that every character is equally likely.
  constexpr unsigned char acceptance_bound = 248;
  std::array<unsigned char, 64> random{};
  std::size_t produced = 0;
  while (produced < key_random_length) {
    if (RAND_bytes(random.data(), static_cast<int>(random.size())) != 1) {
      throw std::runtime_error("the CSPRNG failed to produce random bytes");
    }
    for (unsigned char byte : random) {
      if (byte >= acceptance_bound) continue;
      key.push_back(core::base62_alphabet[byte % 62]);
      if (++produced == key_random_length) break;
    }
  }
  random.fill(0);

  const auto checksum = encode_checksum(crc32(key));
  key.append(checksum.data(), checksum.size());
  return key;
}

KeyFormat check_key_format(std::string_view key) {
  if (key.empty()) return KeyFormat::empty;
  if (key.size() > key_max_length || key.size() < key_tail_length + 1) return KeyFormat::malformed;
  const std::size_t separator = key.size() - key_tail_length;
  if (key[separator] != '_' || !is_valid_key_prefix(key.substr(0, separator))) {
    return KeyFormat::malformed;
  }
  for (char c : key.substr(separator + 1)) {
    if (!core::is_base62(c)) return KeyFormat::malformed;
  }
  const std::size_t body_length = key.size() - key_checksum_length;
  const auto expected = encode_checksum(crc32(key.substr(0, body_length)));
  if (key.substr(body_length) != std::string_view(expected.data(), expected.size())) {
    return KeyFormat::bad_checksum;
  }
  return KeyFormat::valid;
}

std::string key_display_prefix(std::string_view key) {
  return std::string(key.substr(0, key_display_length));
}

}  // namespace keygate::authz
