#include "authz/key_hash.hpp"

// SHA256_Init/Update/Final are deprecated in OpenSSL 3 in favour of EVP, but EVP costs a heap
// allocation per EVP_DigestInit (the provider context) and ~4x the time: measured on this
// toolchain, 237 ns and 1 malloc per SHA-256 of a key through a cached EVP_MD and a reused
// EVP_MD_CTX, 60 ns and none with SHA256_CTX; HMAC through EVP was 738 ns and 2 mallocs. The
// low-level context is a plain struct, so the HMAC pad states can be precomputed and copied.
// (The price: these calls bypass providers, so a FIPS-provider build would need EVP here.)
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>

#include "core/hex.hpp"

namespace keygate::authz {
namespace {

// HMAC-SHA-256 (RFC 2104) with the pepper's inner and outer pad states computed once per
// thread and pepper, so each call hashes only the key and the inner digest.
class PepperedHasher {
 public:
  store::KeyHash hash(std::string_view pepper, std::string_view message) {
    if (pepper != pepper_) prepare(pepper);
    store::KeyHash out{};
    SHA256_CTX ctx = inner_;
    SHA256_Update(&ctx, message.data(), message.size());
    SHA256_Final(out.data(), &ctx);
    ctx = outer_;
    SHA256_Update(&ctx, out.data(), out.size());
    SHA256_Final(out.data(), &ctx);
    OPENSSL_cleanse(&ctx, sizeof ctx);
    return out;
  }

 private:
  void prepare(std::string_view pepper) {
    std::array<std::uint8_t, SHA256_CBLOCK> block{};  // K0: the pepper, hashed if too long
    if (pepper.size() > block.size()) {
      SHA256(reinterpret_cast<const unsigned char*>(pepper.data()), pepper.size(), block.data());
    } else {
      std::copy(pepper.begin(), pepper.end(), block.begin());
    }
    for (auto& b : block) b ^= 0x36;
    SHA256_Init(&inner_);
    SHA256_Update(&inner_, block.data(), block.size());
    for (auto& b : block) b ^= 0x36 ^ 0x5c;
    SHA256_Init(&outer_);
    SHA256_Update(&outer_, block.data(), block.size());
    OPENSSL_cleanse(block.data(), block.size());
    pepper_.assign(pepper);
  }

  std::string pepper_;  // the pepper the pad states belong to; never empty once prepared
  SHA256_CTX inner_{};
  SHA256_CTX outer_{};
};

}  // namespace

store::KeyHash hash_key(std::string_view key, std::string_view pepper) {
  if (!pepper.empty()) {
    thread_local PepperedHasher hasher;
    return hasher.hash(pepper, key);
  }
  store::KeyHash out{};
  SHA256_CTX ctx;
  SHA256_Init(&ctx);
  SHA256_Update(&ctx, key.data(), key.size());
  SHA256_Final(out.data(), &ctx);
  return out;
}

bool hashes_equal(const store::KeyHash& a, const store::KeyHash& b) {
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string hash_to_hex(const store::KeyHash& hash) { return core::to_hex(hash); }

std::optional<store::KeyHash> hash_from_hex(std::string_view hex) {
  store::KeyHash out{};
  if (!core::decode_hex(hex, out)) return std::nullopt;
  return out;
}

}  // namespace keygate::authz
