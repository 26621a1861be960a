#include "authz/routes.hpp"

#include <doctest/doctest.h>

using keygate::authz::glob_matches;
using keygate::authz::prefix_matches;
using keygate::authz::Route;
using keygate::authz::RouteMatch;
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
  CHECK(table.match("GET", "/public").route != nullptr);
  CHECK(table.match("GET", "/public/").route != nullptr);
  CHECK(table.match("GET", "/public/a/b").route != nullptr);
  CHECK(table.match("GET", "/publicx").kind == RouteMatch::Kind::no_route);
  CHECK(table.match("GET", "/").kind == RouteMatch::Kind::no_route);
}

namespace {
const RouteTable inventory_table({
    Route{.pattern = "/public/*", .is_public = true},
    Route{.pattern = "/inventory/*", .methods = {"GET"}, .scopes = {"inventory:read"}},
    Route{.pattern = "/inventory/*",
          .methods = {"POST", "PUT", "DELETE"},
          .scopes = {"inventory:write"}},
    Route{.pattern = "/admin", .scopes = {"admin"}, .rate_limit = keygate::core::RateLimitSpec{5, 60}},
});

const Route* route_for(std::string_view method, std::string_view path) {
  const RouteMatch match = inventory_table.match(method, path);
  return match.kind == RouteMatch::Kind::route ? match.route : nullptr;
}
}  // namespace

TEST_CASE("first match of path and method wins") {
  const auto& routes = inventory_table.routes();
  CHECK(route_for("GET", "/inventory/1") == &routes[1]);
  CHECK(route_for("POST", "/inventory/1") == &routes[2]);
  CHECK(route_for("DELETE", "/inventory") == &routes[2]);
  CHECK(route_for("PATCH", "/admin/users") == &routes[3]);  // no methods: any method
  CHECK(route_for("GET", "/public/x") == &routes[0]);
}

TEST_CASE("a path some route matches, with a method none lists, is method_not_allowed") {
  for (const char* method : {"PATCH", "HEAD", "OPTIONS", "get", "Get", "post", "GET ", ""}) {
    CAPTURE(method);  // HEAD is not implied by GET; methods are case-sensitive (RFC 9110 9.1)
    const RouteMatch match = inventory_table.match(method, "/inventory/x");
    CHECK(match.kind == RouteMatch::Kind::method_not_allowed);
    CHECK(match.route == nullptr);
  }
  CHECK(inventory_table.allowed_methods("/inventory/x") == "GET, POST, PUT, DELETE");
  CHECK(inventory_table.allowed_methods("/public/x").empty());  // a route without methods
}

TEST_CASE("a path no route matches is no_route") {
  CHECK(inventory_table.match("GET", "/adminx").kind == RouteMatch::Kind::no_route);
  CHECK(inventory_table.match("GET", "/other").kind == RouteMatch::Kind::no_route);
  CHECK(RouteTable().match("GET", "/").kind == RouteMatch::Kind::no_route);
}

TEST_CASE("methods are kept as written") {
  const RouteTable table({Route{.pattern = "/x", .methods = {"PURGE", "get"}}});
  CHECK(table.routes()[0].methods == std::vector<std::string>{"PURGE", "get"});
  CHECK(table.match("PURGE", "/x").kind == RouteMatch::Kind::route);
  CHECK(table.match("get", "/x").kind == RouteMatch::Kind::route);
  CHECK(table.match("GET", "/x").kind == RouteMatch::Kind::method_not_allowed);
}

TEST_CASE("a pattern must start with '/'") {
  CHECK_THROWS_AS(RouteTable({Route{.pattern = "inventory"}}), std::invalid_argument);
  CHECK_THROWS_AS(RouteTable({Route{.pattern = ""}}), std::invalid_argument);
}

TEST_CASE("a copied table still matches (no views into the old strings)") {
  RouteTable original({Route{.pattern = "/s/*"}, Route{.pattern = "/x"}});
  const RouteTable copy = original;
  original = RouteTable();
  CHECK(copy.match("GET", "/s").route == &copy.routes()[0]);
  CHECK(copy.match("GET", "/x/y").route == &copy.routes()[1]);
}
