// store/owner_scope.hpp and the audit action names: the values of keygate.owner and
// api_key_audit.action that migration 0005's policies and checks expect. No server.
#include "store/owner_scope.hpp"

#include <doctest/doctest.h>

#include <string>
#include <string_view>

#include "store/api_session.hpp"

using keygate::store::audit_action_name;
using keygate::store::AuditAction;
using keygate::store::OwnerScope;
using namespace std::string_view_literals;

TEST_CASE("an operator's scope is the setting '*'") {
  const OwnerScope all = OwnerScope::all_owners();
  CHECK(all.setting() == "*");
  CHECK(all.is_all_owners());
}

TEST_CASE("an owner's scope is 'type:id', and the id may hold ':'") {
  auto scope = OwnerScope::owner("user", "42");
  REQUIRE(scope.has_value());
  CHECK(scope->setting() == "user:42");
  CHECK_FALSE(scope->is_all_owners());
  auto urn = OwnerScope::owner("org", "acme:team:7");
  REQUIRE(urn.has_value());
  CHECK(urn->setting() == "org:acme:team:7");
  // '*' as an owner's type or id is that owner's, never every owner's.
  CHECK(OwnerScope::owner("*", "*")->setting() == "*:*");
  CHECK_FALSE(OwnerScope::owner("*", "*")->is_all_owners());
}

TEST_CASE("an owner's scope refuses an empty part, a ':' in the type and a NUL anywhere") {
  CHECK_FALSE(OwnerScope::owner("", "42").has_value());
  CHECK_FALSE(OwnerScope::owner("user", "").has_value());
  CHECK_FALSE(OwnerScope::owner("us:er", "42").has_value());  // "us:er:42" would read as us + er:42
  CHECK_FALSE(OwnerScope::owner(":", "x").has_value());
  CHECK_FALSE(OwnerScope::owner("user\0x"sv, "42").has_value());
  CHECK_FALSE(OwnerScope::owner("user", "4\0002"sv).has_value());
}

TEST_CASE("parse reads a setting back, splitting at the first ':'") {
  CHECK(OwnerScope::parse("*") == OwnerScope::all_owners());
  CHECK(OwnerScope::parse("user:42") == OwnerScope::owner("user", "42"));
  CHECK(OwnerScope::parse("org:acme:7") == OwnerScope::owner("org", "acme:7"));
  CHECK_FALSE(OwnerScope::parse("").has_value());
  CHECK_FALSE(OwnerScope::parse("user").has_value());
  CHECK_FALSE(OwnerScope::parse(":42").has_value());
  CHECK_FALSE(OwnerScope::parse("user:").has_value());
  CHECK_FALSE(OwnerScope::parse("**").has_value());
  CHECK(OwnerScope::owner("user", "42") != OwnerScope::owner("user", "43"));
}

TEST_CASE("audit actions are named as api_key_audit's check constraint lists them") {
  CHECK(audit_action_name(AuditAction::create) == "create");
  CHECK(audit_action_name(AuditAction::update) == "update");
  CHECK(audit_action_name(AuditAction::revoke) == "revoke");
  CHECK(audit_action_name(AuditAction::rotate) == "rotate");
  CHECK(audit_action_name(AuditAction::remove) == "delete");
  CHECK(audit_action_name(AuditAction::leak_revoke) == "leak_revoke");
  CHECK(audit_action_name(AuditAction::leak_flag) == "leak_flag");
}
