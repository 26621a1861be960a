#include "authz/credential.hpp"

#include <doctest/doctest.h>

using keygate::authz::credential_from_header;
using keygate::authz::add_query_credentials;
using keygate::authz::PresentedKey;

TEST_CASE("Authorization: the token after 'Bearer', any case, spaces or tabs") {
  CHECK(credential_from_header("authorization", "Bearer kg_x") == "kg_x");
  CHECK(credential_from_header("authorization", "bearer kg_x") == "kg_x");
  CHECK(credential_from_header("authorization", "BEARER kg_x") == "kg_x");
  CHECK(credential_from_header("authorization", "Bearer \t  kg_x  ") == "kg_x");
  CHECK(credential_from_header("authorization", "  Bearer\tkg_x") == "kg_x");
}

TEST_CASE("Authorization: other schemes and empty tokens give nothing") {
  for (const char* value :
       {"", "Bearer", "Bearer ", "Bearer \t ", "Bearerkg_x", "Basic dXNlcjpwYXNz", "Token kg_x",
        "kg_x", "Bearer_kg_x", "Bear kg_x"}) {
    CAPTURE(value);
    CHECK_FALSE(credential_from_header("authorization", value));
  }
}

TEST_CASE("other headers: the trimmed value") {
  CHECK(credential_from_header("x-api-key", "kg_x") == "kg_x");
  CHECK(credential_from_header("x-api-key", " \tkg_x \t") == "kg_x");
  CHECK(credential_from_header("x-api-key", "Bearer kg_x") == "Bearer kg_x");
  CHECK_FALSE(credential_from_header("x-api-key", ""));
  CHECK_FALSE(credential_from_header("x-api-key", "  \t "));
}

namespace {
PresentedKey from_query(std::string_view query, std::string_view parameter = "api_key") {
  PresentedKey presented;
  add_query_credentials(query, parameter, presented);
  return presented;
}
}  // namespace

TEST_CASE("query: every exact, non-empty parameter is a candidate") {
  CHECK(from_query("a=1&api_key=XYZ&b=2").key == "XYZ");
  CHECK(from_query("api_key=XYZ").key == "XYZ");
  CHECK(from_query("x_api_key=NO&api_key=YES").key == "YES");
  CHECK(from_query("api_keyx=NO&api_key=YES").key == "YES");
  CHECK(from_query("&&api_key=Z&").key == "Z");
  CHECK(from_query("api_key=A&api_key=A").kind == PresentedKey::Kind::one);
  CHECK(from_query("api_key=A&api_key=B").kind == PresentedKey::Kind::conflicting);
  for (const char* none : {"", "api_key=", "api_key", "a=api_key=1", "API_KEY=XYZ"}) {
    CAPTURE(none);
    CHECK(from_query(none).kind == PresentedKey::Kind::none);
  }
  CHECK(from_query("api_key=XYZ", "").kind == PresentedKey::Kind::none);
}

TEST_CASE("presented key: one key, the same key twice, or two different keys") {
  PresentedKey presented;
  CHECK(presented.kind == PresentedKey::Kind::none);
  presented.add("kg_a");
  CHECK(presented.kind == PresentedKey::Kind::one);
  presented.add("kg_a");
  CHECK(presented.kind == PresentedKey::Kind::one);
  CHECK(presented.key == "kg_a");
  presented.add("kg_b");
  CHECK(presented.kind == PresentedKey::Kind::conflicting);
  CHECK(presented.key.empty());
  presented.add("kg_a");  // stays conflicting
  CHECK(presented.kind == PresentedKey::Kind::conflicting);
}
