#include "authz/key_hash.hpp"

#include <doctest/doctest.h>

#include <string>
#include <thread>

using keygate::authz::hash_from_hex;
using keygate::authz::hash_key;
using keygate::authz::hash_to_hex;
using keygate::authz::hashes_equal;

namespace {
constexpr const char* key = "kg_live_0123456789abcdefghijABCDEFGHIJKL4I5Av5";
}

// Vectors from `printf %s KEY | sha256sum` and `openssl dgst -sha256 -hmac PEPPER`.
TEST_CASE("without a pepper the hash is SHA-256 of the key") {
  CHECK(hash_to_hex(hash_key(key, "")) ==
        "a6ee9d723823b807a1dd9f16d165bca8c9669b7226008e4eafa14559089dc8fe");
  CHECK(hash_to_hex(hash_key("", "")) ==
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST_CASE("with a pepper the hash is HMAC-SHA-256 keyed by the pepper") {
  CHECK(hash_to_hex(hash_key(key, "s3cret-pepper")) ==
        "3b6777f9ed1ad1076380cd733682f4857e12a9f14b3d1ccff6b6fd773f9c2a2d");
  // Exactly one block, and longer than a block (the pepper is hashed first).
  CHECK(hash_to_hex(hash_key(key, std::string(64, 'k'))) ==
        "f00c227e9c5bcc3e6d601ab0642a306483faff95ca612c676f7284598241872d");
  CHECK(hash_to_hex(hash_key(key, std::string(100, 'p'))) ==
        "4aa75fde2cf0b9616bcdf56f188ba3a7f2ed81ae78b60ba75b7c4b2d7c230a5b");
  // Back to the first pepper: the per-thread pad states follow the pepper.
  CHECK(hash_to_hex(hash_key(key, "s3cret-pepper")) ==
        "3b6777f9ed1ad1076380cd733682f4857e12a9f14b3d1ccff6b6fd773f9c2a2d");
}

TEST_CASE("hashing gives the same answer on every thread and every call") {
  const auto expected = hash_key(key, "s3cret-pepper");
  keygate::store::KeyHash other{};
  std::thread worker([&] { other = hash_key(key, "s3cret-pepper"); });
  worker.join();
  CHECK(other == expected);
  CHECK(hash_key(key, "") != expected);
  CHECK(hash_key(key, "s3cret-pepper") == expected);
}

TEST_CASE("hashes_equal compares every byte") {
  const auto a = hash_key(key, "");
  auto b = a;
  CHECK(hashes_equal(a, b));
  b[31] ^= 1;
  CHECK_FALSE(hashes_equal(a, b));
  b = a;
  b[0] ^= 0x80;
  CHECK_FALSE(hashes_equal(a, b));
}

TEST_CASE("hex round trip, and hash_from_hex rejects bad text") {
  const auto hash = hash_key(key, "");
  CHECK(hash_from_hex(hash_to_hex(hash)) == hash);
  CHECK(hash_from_hex("A6EE9D723823B807A1DD9F16D165BCA8C9669B7226008E4EAFA14559089DC8FE") == hash);
  CHECK_FALSE(hash_from_hex(""));
  CHECK_FALSE(hash_from_hex(hash_to_hex(hash).substr(1)));
  CHECK_FALSE(hash_from_hex(hash_to_hex(hash) + "0"));
  CHECK_FALSE(hash_from_hex("g6ee9d723823b807a1dd9f16d165bca8c9669b7226008e4eafa14559089dc8fe"));
  CHECK_FALSE(hash_from_hex(" 6ee9d723823b807a1dd9f16d165bca8c9669b7226008e4eafa14559089dc8fe"));
}
