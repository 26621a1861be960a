// authz/request_path and authz/routes: a target is refused or normalized to a path that is
// already normal (normalizing it again changes nothing, so keygate and the upstream can never
// read two resources), and route matching of any pattern against any path ends quickly.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "authz/request_path.hpp"
#include "authz/routes.hpp"
#include "fuzz_check.hpp"

namespace {

const keygate::authz::RouteTable& routes() {
  using keygate::authz::Route;
  static const keygate::authz::RouteTable table(std::vector<Route>{
      Route{.pattern = "/public/*", .is_public = true},
      Route{.pattern = "/v1/*/items", .methods = {"GET"}},
      Route{.pattern = "/admin", .methods = {"GET", "POST"}, .scopes = {"admin"}},
      Route{.pattern = "/files/?.txt"},
  });
  return table;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider input(data, size);
  const std::string pattern = input.ConsumeRandomLengthString(64);
  const std::string target = input.ConsumeRemainingBytesAsString();

  keygate::authz::PathError error = keygate::authz::PathError::none;
  const auto normalized = keygate::authz::normalize_target(target, &error);
  FUZZ_CHECK(normalized.has_value() == (error == keygate::authz::PathError::none));
  if (!normalized) return 0;

  const std::string& path = normalized->path;
  FUZZ_CHECK(!path.empty() && path.front() == '/');
  FUZZ_CHECK(path.find("//") == std::string::npos);
  FUZZ_CHECK(path.find("/./") == std::string::npos && path.find("/../") == std::string::npos);
  FUZZ_CHECK(!path.ends_with("/.") && !path.ends_with("/.."));
  FUZZ_CHECK(path.find('\\') == std::string::npos);
  for (const char c : path) FUZZ_CHECK(static_cast<unsigned char>(c) > 0x20 && c != 0x7f);
  if (!normalized->authority.empty()) FUZZ_CHECK(keygate::authz::is_valid_authority(normalized->authority));

  // Idempotent: the forwarded target normalizes to itself.
  std::string forwarded = path;
  if (!normalized->query.empty()) forwarded += "?" + normalized->query;
  const auto again = keygate::authz::normalize_target(forwarded);
  FUZZ_CHECK(again.has_value());
  FUZZ_CHECK(again->path == path && again->query == normalized->query);

  const auto match = routes().match("GET", path);
  if (match.kind == keygate::authz::RouteMatch::Kind::route) FUZZ_CHECK(match.route != nullptr);
  (void)routes().allowed_methods(path);
  (void)keygate::authz::glob_matches(pattern, path);
  (void)keygate::authz::prefix_matches(pattern, path);
  return 0;
}
