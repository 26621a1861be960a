#include "authz/key_format.hpp"

#include <doctest/doctest.h>

#include <set>
#include <stdexcept>
#include <string>

using keygate::authz::check_key_format;
using keygate::authz::generate_key;
using keygate::authz::is_valid_key_prefix;
using keygate::authz::key_display_prefix;
using keygate::authz::KeyFormat;

namespace {
// Checksum computed independently with Python's zlib.crc32 + base62.
constexpr const char* known_key = "kg_live_0123456789abcdefghijABCDEFGHIJKL4I5Av5";
constexpr std::string_view base62 =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
}  // namespace

TEST_CASE("key prefixes: lower-case letter first, [a-z0-9_], at most 32, no trailing '_'") {
  CHECK(is_valid_key_prefix("kg_live"));
  CHECK(is_valid_key_prefix("a"));
  CHECK(is_valid_key_prefix("k9"));
  CHECK(is_valid_key_prefix(std::string(32, 'a')));
  CHECK_FALSE(is_valid_key_prefix(""));
  CHECK_FALSE(is_valid_key_prefix(std::string(33, 'a')));
  CHECK_FALSE(is_valid_key_prefix("kg_"));
  CHECK_FALSE(is_valid_key_prefix("_kg"));
  CHECK_FALSE(is_valid_key_prefix("9kg"));
  CHECK_FALSE(is_valid_key_prefix("Kg"));
  CHECK_FALSE(is_valid_key_prefix("kg-live"));
  CHECK_FALSE(is_valid_key_prefix("kg live"));
}

TEST_CASE("a key with a zlib-compatible CRC32 checksum is valid") {
  CHECK(check_key_format(known_key) == KeyFormat::valid);
  CHECK(check_key_format("kg_test_ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ2KxWFN") == KeyFormat::valid);
  CHECK(check_key_format("a_000000000000000000000000000000004CaYF9") == KeyFormat::valid);
}

TEST_CASE("generated keys have the documented shape and pass the format check") {
  std::set<std::string> seen;
  for (int i = 0; i < 200; ++i) {
    const std::string key = generate_key("kg_live");
    REQUIRE(key.size() == 7 + 1 + 32 + 6);
    CHECK(key.starts_with("kg_live_"));
    CHECK(key.substr(8).find_first_not_of(base62) == std::string::npos);
    CHECK(check_key_format(key) == KeyFormat::valid);
    seen.insert(key);
  }
  CHECK(seen.size() == 200);
}

TEST_CASE("generated keys use the whole base62 alphabet") {
  std::set<char> used;
  for (int i = 0; i < 100; ++i) {
    const std::string key = generate_key("k");
    used.insert(key.begin() + 2, key.begin() + 2 + 32);
  }
  CHECK(used.size() == 62);  // 3200 draws: missing any one character has p ~ 1e-21
}

TEST_CASE("generate_key refuses an invalid prefix") {
  CHECK_THROWS_AS(generate_key("Bad"), std::invalid_argument);
  CHECK_THROWS_AS(generate_key(""), std::invalid_argument);
}

TEST_CASE("changing any one character of a valid key makes it invalid") {
  const std::string key = known_key;
  for (std::size_t i = 0; i < key.size(); ++i) {
    for (char replacement : {'0', 'z', 'Q', '_', '-', 'k'}) {
      if (replacement == key[i]) continue;
      std::string changed = key;
      changed[i] = replacement;
      CAPTURE(changed);
      const KeyFormat format = check_key_format(changed);
      CHECK((format == KeyFormat::bad_checksum || format == KeyFormat::malformed));
    }
  }
}

TEST_CASE("a mistyped checksum or random part is reported as bad_checksum") {
  CHECK(check_key_format("kg_live_0123456789abcdefghijABCDEFGHIJKL4I5Av6") ==
        KeyFormat::bad_checksum);
  CHECK(check_key_format("kg_live_1123456789abcdefghijABCDEFGHIJKL4I5Av5") ==
        KeyFormat::bad_checksum);
  CHECK(check_key_format("kg_livf_0123456789abcdefghijABCDEFGHIJKL4I5Av5") ==
        KeyFormat::bad_checksum);
}

TEST_CASE("malformed keys: length, characters and prefix shape") {
  CHECK(check_key_format("") == KeyFormat::empty);
  const std::string key = known_key;
  CHECK(check_key_format(key.substr(0, key.size() - 1)) == KeyFormat::malformed);  // short tail
  CHECK(check_key_format(key + "0") == KeyFormat::malformed);                      // long tail
  CHECK(check_key_format("kg_live") == KeyFormat::malformed);
  CHECK(check_key_format("_0123456789abcdefghijABCDEFGHIJKL4I5Av5") == KeyFormat::malformed);
  CHECK(check_key_format("KG_live_0123456789abcdefghijABCDEFGHIJKL4I5Av5") == KeyFormat::malformed);
  CHECK(check_key_format("kg_live_0123456789abcdefghij+BCDEFGHIJKL4I5Av5") == KeyFormat::malformed);
  CHECK(check_key_format("kg_live 0123456789abcdefghijABCDEFGHIJKL4I5Av5") == KeyFormat::malformed);
  CHECK(check_key_format(std::string("kg_live_0123456789abcdefghij\0BCDEFGHIJKL4I5Av5", 46)) ==
        KeyFormat::malformed);
  CHECK(check_key_format("Bearer kg_live_0123456789abcdefghijABCDEFGHIJKL4I5Av5") ==
        KeyFormat::malformed);
  CHECK(check_key_format(std::string(129, 'a')) == KeyFormat::malformed);
  CHECK(check_key_format(std::string(40, 'a')) == KeyFormat::malformed);  // no separator
}

TEST_CASE("the display prefix is the first 12 characters") {
  CHECK(key_display_prefix(known_key) == "kg_live_0123");
  CHECK(key_display_prefix("short") == "short");
}
