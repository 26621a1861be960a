// app/cli_args: an argument is shown in a message only when it cannot be an API key.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "app/cli_args.hpp"
#include "authz/key_format.hpp"

using keygate::app::may_hold_key;
using keygate::app::parse_args;
using keygate::app::quoted_argument;
using keygate::app::UsageError;

TEST_CASE("an argument that may be an API key, or half of one, is never quoted back") {
  const std::string key = keygate::authz::generate_key("kg_live");
  const std::string tail = key.substr(key.size() - 38);
  for (const std::string& text : {key, key.substr(0, key.size() - 3), tail.substr(0, 16),
                                  tail.substr(22), "user:" + key, key + ",inventory:read"}) {
    CAPTURE(text.size());
    CHECK(may_hold_key(text));
    CHECK(quoted_argument(text) == "something that may be an API key (not shown)");
  }
}

TEST_CASE("ids, owners, scopes, durations and limits are quoted back as given") {
  for (const std::string text : {"not-a-uuid", "5f0c1e2a-9b3d-4c5e-8f70-112233445566", "user:42",
                                 "inventory:read,orders:write", "30d", "100/60s", "10.0.0.0/8",
                                 "kg_live_AbCd", "abcdefghijklmno"}) {
    CAPTURE(text);
    CHECK_FALSE(may_hold_key(text));
    CHECK(quoted_argument(text) == "\"" + text + "\"");
  }
}

TEST_CASE("a key given as a stray argument is named as such, not shown") {
  const std::string key = keygate::authz::generate_key("kg_live");
  const std::vector<std::string> args{key};
  try {
    parse_args("keys create", args, {}, {}, 0);
    FAIL("a stray argument was accepted");
  } catch (const UsageError& e) {
    CHECK(std::string(e.what()) == "keys create: unexpected argument something that may be an API key (not shown)");
  }
}
