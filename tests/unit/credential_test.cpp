#include "authz/credential.hpp"

#include <doctest/doctest.h>

using keygate::authz::credential_from_header;
using keygate::authz::credential_from_query;

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

TEST_CASE("query: the first exact parameter name, non-empty") {
  CHECK(credential_from_query("a=1&api_key=XYZ&b=2", "api_key") == "XYZ");
  CHECK(credential_from_query("api_key=XYZ", "api_key") == "XYZ");
  CHECK(credential_from_query("api_key=A&api_key=B", "api_key") == "A");
  CHECK(credential_from_query("x_api_key=NO&api_key=YES", "api_key") == "YES");
  CHECK(credential_from_query("api_keyx=NO&api_key=YES", "api_key") == "YES");
  CHECK(credential_from_query("&&api_key=Z&", "api_key") == "Z");
  CHECK_FALSE(credential_from_query("", "api_key"));
  CHECK_FALSE(credential_from_query("api_key=", "api_key"));
  CHECK_FALSE(credential_from_query("api_key", "api_key"));
  CHECK_FALSE(credential_from_query("a=api_key=1", "api_key"));
  CHECK_FALSE(credential_from_query("API_KEY=XYZ", "api_key"));
  CHECK_FALSE(credential_from_query("api_key=XYZ", ""));
}
