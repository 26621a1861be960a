#include "authz/routes.hpp"

#include <doctest/doctest.h>

using keygate::authz::glob_matches;
using keygate::authz::prefix_matches;
using keygate::authz::Route;
using keygate::authz::RouteTable;

TEST_CASE("a prefix pattern ends on a segment boundary") {
  CHECK(prefix_matches("/inventory", "/inventory"));
  CHECK(prefix_matches("/inventory", "/inventory/"));
  CHECK(prefix_matches("/inventory", "/inventory/x/y"));
  CHECK_FALSE(prefix_matches("/inventory", "/inventoryx"));
  CHECK_FALSE(prefix_matches("/inventory", "/inv"));
  CHECK_FALSE(prefix_matches("/inventory", "/"));
  CHECK(prefix_matches("/", "/anything"));
  CHECK(prefix_matches("/inventory/", "/inventory/x"));
  CHECK_FALSE(prefix_matches("/inventory/", "/inventory"));
}

TEST_CASE("glob: '*' crosses '/', '?' is one character, the whole path must match") {
  CHECK(glob_matches("/inventory/*", "/inventory/"));
  CHECK(glob_matches("/inventory/*", "/inventory/a/b/c"));
  CHECK_FALSE(glob_matches("/inventory/*", "/inventory"));
  CHECK_FALSE(glob_matches("/inventory/*", "/inventoryx/a"));
  CHECK(glob_matches("/v1/*/items", "/v1/a/b/items"));
  CHECK_FALSE(glob_matches("/v1/*/items", "/v1/a/items/x"));
  CHECK(glob_matches("/v?/items", "/v2/items"));
  CHECK_FALSE(glob_matches("/v?/items", "/v10/items"));
  CHECK_FALSE(glob_matches("/v?/items", "/v/items"));
  CHECK(glob_matches("*.json", "/a/b.json"));
  CHECK(glob_matches("/a*b*c", "/aXbYbZc"));
  CHECK_FALSE(glob_matches("/a*b*c", "/aXbYbZ"));
  CHECK(glob_matches("/**", "/"));
  // Pathological backtracking stays fast (one backtrack point).
  CHECK_FALSE(glob_matches("/*a*a*a*a*a*a*a*a*b", "/" + std::string(4000, 'a')));
}

TEST_CASE("a trailing /* also matches the bare prefix") {
  const RouteTable table({Route{.pattern = "/public/*", .is_public = true}});
  CHECK(table.match("GET", "/public") != nullptr);
  CHECK(table.match("GET", "/public/") != nullptr);
  CHECK(table.match("GET", "/public/a/b") != nullptr);
  CHECK(table.match("GET", "/publicx") == nullptr);
  CHECK(table.match("GET", "/") == nullptr);
}

TEST_CASE("first match wins; methods compare exactly; no match is nullptr") {
  const RouteTable table({
      Route{.pattern = "/public/*", .is_public = true},
      Route{.pattern = "/inventory/*", .methods = {"GET"}, .scopes = {"inventory:read"}},
      Route{.pattern = "/inventory/*",
            .methods = {"post", "PUT", "DELETE"},
            .scopes = {"inventory:write"}},
      Route{.pattern = "/admin",
            .scopes = {"admin"},
            .rate_limit = keygate::core::RateLimitSpec{5, 60}},
  });
  REQUIRE(table.routes().size() == 4);
  CHECK(table.routes()[2].methods[0] == "POST");  // normalized at construction
  CHECK(table.match("GET", "/inventory/1") == &table.routes()[1]);
  CHECK(table.match("POST", "/inventory/1") == &table.routes()[2]);
  CHECK(table.match("DELETE", "/inventory") == &table.routes()[2]);
  CHECK(table.match("HEAD", "/inventory/1") == nullptr);  // HEAD is not implied by GET
  CHECK(table.match("get", "/inventory/1") == nullptr);
  CHECK(table.match("PATCH", "/admin/users") == &table.routes()[3]);
  CHECK(table.match("GET", "/adminx") == nullptr);
  CHECK(table.match("GET", "/public/x") == &table.routes()[0]);
  CHECK(table.match("GET", "/other") == nullptr);
  CHECK(RouteTable().match("GET", "/") == nullptr);
}

TEST_CASE("a pattern must start with '/'") {
  CHECK_THROWS_AS(RouteTable({Route{.pattern = "inventory"}}), std::invalid_argument);
  CHECK_THROWS_AS(RouteTable({Route{.pattern = ""}}), std::invalid_argument);
}

TEST_CASE("a copied table still matches (no views into the old strings)") {
  RouteTable original({Route{.pattern = "/s/*"}, Route{.pattern = "/x"}});
  const RouteTable copy = original;
  original = RouteTable();
  CHECK(copy.match("GET", "/s") == &copy.routes()[0]);
  CHECK(copy.match("GET", "/x/y") == &copy.routes()[1]);
}
