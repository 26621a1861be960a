#pragma once
// The key-management API's unit of work: a group of statements in ONE transaction on a pooled
// connection, run as the role keygate_api with keygate.owner set to an OwnerScope, so that the
// row-level security of migration 0005 holds whatever SQL a handler sends. run_as_owner sends
//   BEGIN; SET LOCAL ROLE keygate_api
//   SELECT set_config('keygate.owner', $1, true)      -- $1 = scope.setting()
//   ... the work's statements ...
//   COMMIT                                            -- ROLLBACK after any failure
// Both settings end with the transaction, so the connection goes back to the pool as it came.
//
//   std::optional<Key> key;
//   PgResult done = co_await run_as_owner(pool, scope, [&](ApiSession& tx) -> awaitable<void> {
//     PgResult row = co_await tx.query("UPDATE api_keys SET name = $2 WHERE id = $1::uuid "
//                                      "RETURNING ...", params);
//     if (!row.ok() || row.rows() == 0) co_return;     // failed (rolled back) or not found
//     key = parse(row);
//     co_await tx.append_audit(entry);                 // a failure here rolls the update back
//   });
//   if (!done.ok()) ...                                // nothing was committed: done.error()
//
// What RLS cannot stop: the connection's own role is the tables' owner, so a statement that
// ends the transaction or switches the role back (COMMIT, RESET ROLE, set_config('role', ..))
// leaves the policies behind. Handlers send data-only statements; query() takes one statement,
// and parameters are never SQL.
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "store/owner_scope.hpp"
#include "store/pg_connection.hpp"
#include "store/pg_pool.hpp"

namespace keygate::store {

// api_key_audit.action.
enum class AuditAction { create, update, revoke, rotate, remove, leak_revoke, leak_flag };
std::string_view audit_action_name(AuditAction action);  // "create", .., "delete", ..

// One row of api_key_audit. before/after are JSON objects as text, never holding a key or its
// hash (the table refuses a top-level "key" or "key_hash").
struct AuditEntry {
  std::optional<std::string> actor_key_id;  // the admin key (uuid); nullopt for a leak report
  std::optional<OwnerScope> actor_owner;    // that key's scope
  AuditAction action = AuditAction::update;
  std::string key_id;                       // the key changed (uuid)
  OwnerScope key_owner = OwnerScope::all_owners();  // its owner: must be an owner() scope
  std::optional<std::string> before_json;   // nullopt for create
  std::optional<std::string> after_json;    // nullopt for delete
  std::string request_id;
  std::optional<std::string> source_url;    // where a leaked key was found
};

// The open transaction, handed to the work. Not copyable; valid only during the work.
class ApiSession {
 public:
  ApiSession(PgConnection& connection, OwnerScope scope, std::chrono::milliseconds timeout);
  ApiSession(const ApiSession&) = delete;
  ApiSession& operator=(const ApiSession&) = delete;

  const OwnerScope& scope() const { return scope_; }
  // The transaction's connection, for a group of statements written against PgConnection
  // (KeyRepository's rotate); what it sends runs in this transaction, as keygate_api.
  PgConnection& connection() { return connection_; }

  // One statement with $1.. parameters, within the pool's query_timeout. After a failure the
  // transaction is lost: later calls return that first failure without sending anything.
  boost::asio::awaitable<PgResult> query(std::string sql, PgParams params);
  // INSERT INTO api_key_audit .. RETURNING id, in this transaction. A row about another owner's
  // key than the scope's is refused by RLS (sqlstate 42501); key_owner "*" by the table (23514).
  boost::asio::awaitable<PgResult> append_audit(const AuditEntry& entry);

  // End with ROLLBACK although every statement succeeded (the work changed its mind).
  void roll_back() { roll_back_ = true; }

  bool failed() const { return failure_.has_value(); }
  const std::optional<PgResult>& failure() const { return failure_; }
  bool rolling_back() const { return roll_back_ || failure_.has_value(); }

 private:
  PgConnection& connection_;
  OwnerScope scope_;
  std::chrono::milliseconds timeout_;
  std::optional<PgResult> failure_;
  bool roll_back_ = false;
};

using ApiWork = std::function<boost::asio::awaitable<void>(ApiSession&)>;

// Runs `work` in one transaction as keygate_api within `scope` (on the pool's executor).
// ok: every statement succeeded and the transaction committed (or, after roll_back(), rolled
// back). Otherwise the first failure: of acquiring a connection, of BEGIN / the role switch /
// the setting (e.g. keygate_api missing: run keygate migrate up), of a statement, or of
// COMMIT; nothing was committed then, except after a COMMIT that got no answer
// (connection_error or timeout), whose fate is unknown. An exception from `work` rolls back and
// is rethrown.
boost::asio::awaitable<PgResult> run_as_owner(PgPool& pool, OwnerScope scope, ApiWork work);

}  // namespace keygate::store
