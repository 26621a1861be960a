// Owner isolation of the key-management API (migration 0005, store/api_session.hpp) against a
// real PostgreSQL: row-level security for the role keygate_api keyed by keygate.owner, through
// run_as_owner and on a bare connection with a forged setting. Each case on a scratch database
// holding keys of two owners, user:A and user:B.
#include <doctest/doctest.h>

#include <boost/asio/this_coro.hpp>

#include <chrono>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "store/api_session.hpp"
#include "store/key_repository.hpp"
#include "store/migrator.hpp"
#include "store/owner_scope.hpp"
#include "store/pg_pool.hpp"
#include "support/run_coro.hpp"
#include "support/scratch_database.hpp"

namespace asio = boost::asio;
using namespace std::chrono_literals;
using keygate::store::ApiSession;
using keygate::store::ApiWork;
using keygate::store::AuditAction;
using keygate::store::AuditEntry;
using keygate::store::KeyRepository;
using keygate::store::Migrator;
using keygate::store::OwnerScope;
using keygate::store::PgConnection;
using keygate::store::PgOptions;
using keygate::store::PgParams;
using keygate::store::PgPool;
using keygate::store::PgResult;
using keygate::store::PgStatus;
using keygate::store::run_as_owner;
using keygate::test::run_coro;
using keygate::test::ScratchDatabase;

namespace {

constexpr const char* key_a = "aaaaaaaa-0000-4000-8000-00000000000a";
constexpr const char* key_b = "bbbbbbbb-0000-4000-8000-00000000000b";

// The seeded rows, written as the tables' owner: one key, one usage row, one quota row and one
// audit row for each of user:A and user:B.
constexpr const char* seed_sql = R"SQL(
INSERT INTO api_keys (id, owner_type, owner_id, name, key_prefix, key_hash) VALUES
  ('aaaaaaaa-0000-4000-8000-00000000000a', 'user', 'A', 'a key', 'kg_test_aaaa', decode(repeat('aa', 32), 'hex')),
  ('bbbbbbbb-0000-4000-8000-00000000000b', 'user', 'B', 'b key', 'kg_test_bbbb', decode(repeat('bb', 32), 'hex'));
INSERT INTO api_key_usage (api_key_id, status_code) VALUES
  ('aaaaaaaa-0000-4000-8000-00000000000a', 200), ('bbbbbbbb-0000-4000-8000-00000000000b', 200);
INSERT INTO api_key_quota_usage (api_key_id, period_start, used) VALUES
  ('aaaaaaaa-0000-4000-8000-00000000000a', now(), 1), ('bbbbbbbb-0000-4000-8000-00000000000b', now(), 2);
INSERT INTO api_key_audit (action, key_id, key_owner, after, request_id) VALUES
  ('create', 'aaaaaaaa-0000-4000-8000-00000000000a', 'user:A', '{"name": "a key"}', 'seed-a'),
  ('create', 'bbbbbbbb-0000-4000-8000-00000000000b', 'user:B', '{"name": "b key"}', 'seed-b');
)SQL";

std::string random_suffix() {
  std::random_device random;
  return std::to_string(std::uniform_int_distribution<unsigned long long>()(random) % 1000000000ull);
}

// One connection: a test sees the connection a transaction used, afterwards.
PgOptions pool_of_one(const std::string& dsn) { return PgOptions{dsn, 1, 5s, 5s}; }

std::string first_value(const ScratchDatabase& db, const std::string& statement) {
  return std::string(db.sql(statement).get(0, 0));
}

// A scratch database with keygate's schema and the two owners' rows.
struct TwoOwnerDatabase : ScratchDatabase {
  TwoOwnerDatabase() {
    migrate_up();
    sql(seed_sql);
  }
  PgOptions options() const { return pool_of_one(dsn()); }
  std::string scalar(const std::string& statement) const { return first_value(*this, statement); }
};

OwnerScope owner_scope(const char* type, const char* id) {
  auto scope = OwnerScope::owner(type, id);
  if (!scope) throw std::logic_error("bad owner in a test");
  return *scope;
}

PgParams one_param(std::string value) {
  PgParams params;
  params.emplace_back(std::move(value));
  return params;
}

// run_as_owner on a pool of one connection to `dsn`.
PgResult as_api(const std::string& dsn, const OwnerScope& scope, ApiWork work) {
  const PgOptions options = pool_of_one(dsn);  // g++ 12 mis-builds braced temporaries in coroutines
  return run_coro([&]() -> asio::awaitable<PgResult> {
    PgPool pool(co_await asio::this_coro::executor, options);
    co_return co_await run_as_owner(pool, scope, work);
  }());
}

// What one statement answers in an API transaction of `scope`, as "rows|first value" or
// "error <sqlstate>"; the transaction commits when it succeeded.
std::string api_answer(const std::string& dsn, const OwnerScope& scope, std::string sql,
                       PgParams params = {}) {
  std::string answer;
  PgResult done = as_api(dsn, scope, [&](ApiSession& tx) -> asio::awaitable<void> {
    PgResult r = co_await tx.query(sql, params);
    if (!r.ok()) {
      answer = "error " + r.sqlstate();
    } else if (r.rows() > 0 && r.columns() > 0) {
      answer = std::to_string(r.rows()) + "|" + std::string(r.get(0, 0));
    } else {
      answer = std::to_string(r.affected_rows());
    }
  });
  if (done.ok() == answer.starts_with("error")) FAIL_CHECK("the transaction's end disagrees: " << done.error());
  return answer;
}

// Runs each statement in turn on one bare connection (simple protocol, no transaction of ours),
// carrying on after failures: each answer as "rows|first value", the affected count, or
// "error <sqlstate>".
std::vector<std::string> on_one_connection(const std::string& dsn, std::vector<std::string> statements) {
  return run_coro([&]() -> asio::awaitable<std::vector<std::string>> {
    PgConnection connection(co_await asio::this_coro::executor);
    PgResult connected = co_await connection.connect(dsn, 5s);
    if (!connected.ok()) throw std::runtime_error(connected.error());
    std::vector<std::string> answers;
    for (const auto& statement : statements) {
      PgResult r = co_await connection.execute(statement, 5s);
      if (!r.ok()) {
        answers.push_back("error " + r.sqlstate());
      } else if (r.columns() > 0) {
        answers.push_back(std::to_string(r.rows()) + (r.rows() > 0 ? "|" + std::string(r.get(0, 0)) : ""));
      } else {
        answers.push_back(std::to_string(r.affected_rows()));
      }
    }
    co_return answers;
  }());
}

AuditEntry audit_of(const char* key_id, const OwnerScope& key_owner) {
  AuditEntry entry{.actor_key_id = std::nullopt,
                   .actor_owner = key_owner,
                   .action = AuditAction::update,
                   .key_id = key_id,
                   .key_owner = key_owner,
                   .before_json = R"({"name": "before"})",
                   .after_json = R"({"name": "after"})",
                   .request_id = "req-1",
                   .source_url = std::nullopt};
  return entry;
}

}  // namespace

TEST_CASE("an owner's API transaction sees only that owner's keys, usage, quota and audit rows") {
  TwoOwnerDatabase db;
  const OwnerScope a = owner_scope("user", "A");
  CHECK(api_answer(db.dsn(), a, "SELECT string_agg(owner_id, ',') FROM api_keys") == "1|A");
  CHECK(api_answer(db.dsn(), a, "SELECT count(*) FROM api_keys WHERE id = $1::uuid", one_param(key_b)) == "1|0");
  CHECK(api_answer(db.dsn(), a, "SELECT string_agg(api_key_id::text, ',') FROM api_key_usage") ==
        std::string("1|") + key_a);
  CHECK(api_answer(db.dsn(), a, "SELECT count(*) FROM api_key_usage WHERE api_key_id = $1::uuid",
                   one_param(key_b)) == "1|0");
  CHECK(api_answer(db.dsn(), a, "SELECT string_agg(used::text, ',') FROM api_key_quota_usage") == "1|1");
  CHECK(api_answer(db.dsn(), a, "SELECT string_agg(request_id, ',') FROM api_key_audit") == "1|seed-a");
  // The usage partitions hold the same rows unfiltered: keygate_api may read the parent only.
  const std::string partition =
      db.scalar("SELECT min(inhrelid::regclass::text) FROM pg_inherits WHERE inhparent = 'api_key_usage'::regclass");
  CHECK(api_answer(db.dsn(), a, "SELECT count(*) FROM " + partition) == "error 42501");
}

TEST_CASE("an owner's API transaction cannot change, delete or create another owner's keys") {
  TwoOwnerDatabase db;
  const OwnerScope a = owner_scope("user", "A");
  CHECK(api_answer(db.dsn(), a, "UPDATE api_keys SET name = 'taken' WHERE id = $1::uuid", one_param(key_b)) == "0");
  CHECK(api_answer(db.dsn(), a, "UPDATE api_keys SET is_active = false") == "1");  // its own only
  CHECK(api_answer(db.dsn(), a, "DELETE FROM api_keys WHERE id = $1::uuid", one_param(key_b)) == "0");
  CHECK(db.scalar("SELECT name || ' ' || is_active FROM api_keys WHERE id = '" + std::string(key_b) + "'") == "b key true");
  CHECK(db.scalar("SELECT is_active::text FROM api_keys WHERE id = '" + std::string(key_a) + "'") == "false");

  // WITH CHECK: a new key for B is refused ("new row violates row-level security policy").
  CHECK(api_answer(db.dsn(), a,
                   "INSERT INTO api_keys (owner_type, owner_id, name, key_prefix, key_hash) "
                   "VALUES ('user', 'B', 'planted', 'kg_test_cccc', decode(repeat('cc', 32), 'hex'))") ==
        "error 42501");
  CHECK(api_answer(db.dsn(), a,
                   "INSERT INTO api_keys (owner_type, owner_id, name, key_prefix, key_hash) "
                   "VALUES ('user', 'A', 'mine', 'kg_test_cccc', decode(repeat('cc', 32), 'hex'))") == "1");
  CHECK(db.scalar("SELECT string_agg(owner_id || '/' || name, ',' ORDER BY name) FROM api_keys") ==
        "A/a key,B/b key,A/mine");

  // Moving a key to another owner: keygate_api may not write the owner columns at all...
  CHECK(api_answer(db.dsn(), a, "UPDATE api_keys SET owner_id = 'B' WHERE id = $1::uuid", one_param(key_a)) ==
        "error 42501");
  // ...and were it granted, WITH CHECK would refuse it still (the grant is rolled back).
  const auto moved = on_one_connection(
      db.dsn(), {"BEGIN", "GRANT UPDATE (owner_id) ON api_keys TO keygate_api", "SET LOCAL ROLE keygate_api",
                 "SELECT set_config('keygate.owner', 'user:A', true)",
                 "UPDATE api_keys SET owner_id = 'B' WHERE id = 'aaaaaaaa-0000-4000-8000-00000000000a'",
                 "ROLLBACK", "SELECT has_column_privilege('keygate_api', 'api_keys', 'owner_id', 'UPDATE')"});
  CHECK(moved[4] == "error 42501");
  CHECK(moved[6] == "1|f");
  CHECK(db.scalar("SELECT owner_id FROM api_keys WHERE id = '" + std::string(key_a) + "'") == "A");
}

TEST_CASE("an owner deleting its own key also deletes that key's usage rows, and no other's") {
  TwoOwnerDatabase db;
  CHECK(api_answer(db.dsn(), owner_scope("user", "A"), "DELETE FROM api_keys WHERE id = $1::uuid",
                   one_param(key_a)) == "1");
  CHECK(db.scalar("SELECT string_agg(api_key_id::text, ',') FROM api_key_usage") == key_b);
  CHECK(db.scalar("SELECT string_agg(api_key_id::text, ',') FROM api_key_quota_usage") == key_b);
  CHECK(db.scalar("SELECT count(*) FROM api_key_audit") == "2");  // the audit log keeps its rows
}

TEST_CASE("an operator's API transaction sees and changes every owner's rows") {
  TwoOwnerDatabase db;
  const OwnerScope all = OwnerScope::all_owners();
  CHECK(api_answer(db.dsn(), all, "SELECT string_agg(owner_id, ',' ORDER BY owner_id) FROM api_keys") == "1|A,B");
  CHECK(api_answer(db.dsn(), all, "SELECT count(*) FROM api_key_usage") == "1|2");
  CHECK(api_answer(db.dsn(), all, "SELECT count(*) FROM api_key_quota_usage") == "1|2");
  CHECK(api_answer(db.dsn(), all, "SELECT count(*) FROM api_key_audit") == "1|2");
  CHECK(api_answer(db.dsn(), all, "UPDATE api_keys SET name = name || '!'") == "2");
  CHECK(api_answer(db.dsn(), all,
                   "INSERT INTO api_keys (owner_type, owner_id, name, key_prefix, key_hash) "
                   "VALUES ('team', 'C', 'c key', 'kg_test_cccc', decode(repeat('cc', 32), 'hex'))") == "1");
  CHECK(api_answer(db.dsn(), all, "DELETE FROM api_keys WHERE id = $1::uuid", one_param(key_b)) == "1");
  CHECK(db.scalar("SELECT string_agg(name, ',' ORDER BY name) FROM api_keys") == "a key!,c key");
}

TEST_CASE("keygate_api with keygate.owner unset or empty sees nothing and may write nothing") {
  TwoOwnerDatabase db;
  const auto answers = on_one_connection(
      db.dsn(), {"BEGIN", "SET LOCAL ROLE keygate_api", "SELECT count(*) FROM api_keys",
                 "SELECT count(*) FROM api_key_usage", "SELECT count(*) FROM api_key_quota_usage",
                 "SELECT count(*) FROM api_key_audit",
                 "UPDATE api_keys SET name = 'x'", "DELETE FROM api_keys", "COMMIT",
                 // Empty, as it reads in a later transaction of a session that once set it.
                 "BEGIN", "SET LOCAL ROLE keygate_api", "SELECT set_config('keygate.owner', '', true)",
                 "SELECT count(*) FROM api_keys",
                 "INSERT INTO api_keys (owner_type, owner_id, name, key_prefix, key_hash) "
                 "VALUES ('user', 'A', 'x', 'kg_test_cccc', decode(repeat('cc', 32), 'hex'))",
                 "ROLLBACK"});
  CHECK(answers[2] == "1|0");
  CHECK(answers[3] == "1|0");
  CHECK(answers[4] == "1|0");
  CHECK(answers[5] == "1|0");
  CHECK(answers[6] == "0");
  CHECK(answers[7] == "0");
  CHECK(answers[12] == "1|0");
  CHECK(answers[13] == "error 42501");
  CHECK(db.scalar("SELECT count(*) FROM api_keys") == "2");
}

TEST_CASE("a forged keygate.owner on a bare connection as keygate_api still shows one owner at most") {
  // What the issue asks for: no run_as_owner, the role and the setting set by hand for the
  // session (not the transaction), as a buggy or hostile caller of SQL would.
  TwoOwnerDatabase db;
  db.sql("INSERT INTO api_keys (owner_type, owner_id, name, key_prefix, key_hash) VALUES "
         "('user:A', 'x', 'colon type', 'kg_test_dddd', decode(repeat('dd', 32), 'hex'))");
  const std::string b(key_b);
  const auto answers = on_one_connection(
      db.dsn(), {"SET ROLE keygate_api", "SET keygate.owner = 'user:A'",
                 "SELECT string_agg(owner_id, ',') FROM api_keys",                                // 2
                 "SELECT count(*) FROM api_keys WHERE id = '" + b + "'",                         // 3
                 "SELECT count(*) FROM api_key_usage WHERE api_key_id = '" + b + "'",            // 4
                 "SELECT count(*) FROM api_key_audit WHERE key_owner = 'user:B'",                // 5
                 "UPDATE api_keys SET revoked_at = now(), is_active = false WHERE id = '" + b + "'",  // 6
                 "DELETE FROM api_keys WHERE owner_id = 'B'",                                     // 7
                 "INSERT INTO api_key_audit (action, key_id, key_owner, request_id) "
                 "VALUES ('revoke', '" + b + "', 'user:B', 'forged')",                             // 8
                 "UPDATE api_key_audit SET request_id = 'rewritten'",                             // 9
                 "DELETE FROM api_key_audit",                                                     // 10
                 // Patterns and odd values are plain strings to the policy, never wildcards.
                 "SET keygate.owner = 'user:%'", "SELECT count(*) FROM api_keys",                 // 12
                 "SET keygate.owner = '*:*'", "SELECT count(*) FROM api_keys",                    // 14
                 "SET keygate.owner = ' *'", "SELECT count(*) FROM api_keys",                     // 16
                 "SET keygate.owner = 'user:B'' OR ''t'", "SELECT count(*) FROM api_keys",        // 18
                 // An owner_type holding ':' is no owner's: "user:A:x" names type user, id A:x.
                 "SET keygate.owner = 'user:A:x'", "SELECT count(*) FROM api_keys",               // 20
                 "SET keygate.owner = 'user:B'", "SELECT string_agg(owner_id, ',') FROM api_keys",  // 22
                 "RESET ROLE", "SELECT count(*) FROM api_keys"});                                // 24
  CHECK(answers[2] == "1|A");
  CHECK(answers[3] == "1|0");
  CHECK(answers[4] == "1|0");
  CHECK(answers[5] == "1|0");
  CHECK(answers[6] == "0");
  CHECK(answers[7] == "0");
  CHECK(answers[8] == "error 42501");
  CHECK(answers[9] == "error 42501");
  CHECK(answers[10] == "error 42501");
  CHECK(answers[12] == "1|0");
  CHECK(answers[14] == "1|0");
  CHECK(answers[16] == "1|0");
  CHECK(answers[18] == "1|0");
  CHECK(answers[20] == "1|0");
  CHECK(answers[22] == "1|B");  // the setting names one owner, and only that one is seen
  CHECK(answers[24] == "1|3");  // back as the owner: everything
  CHECK(db.scalar("SELECT is_active::text || ' ' || (revoked_at IS NULL) FROM api_keys WHERE id = '" + b + "'") ==
        "true true");
  CHECK(db.scalar("SELECT count(*) FROM api_key_audit") == "2");
}

TEST_CASE("the proxy's path, as the tables' owner without a role switch, still reads every key") {
  TwoOwnerDatabase db;
  run_coro([&]() -> asio::awaitable<void> {
    PgPool pool(co_await asio::this_coro::executor, db.options());
    KeyRepository repository(pool);
    auto all = co_await repository.list(std::nullopt);
    REQUIRE_MESSAGE(all.ok(), all.error);
    CHECK(all.value.size() == 2);
    keygate::store::KeyHash hash{};
    hash.fill(0xbb);
    auto found = co_await repository.find_by_hash(hash);
    REQUIRE_MESSAGE(found.ok(), found.error);
    CHECK(found.value.id == key_b);
  }());
  CHECK(db.scalar("SELECT relforcerowsecurity::text FROM pg_class WHERE oid = 'api_keys'::regclass") == "false");
}

TEST_CASE("run_as_owner commits the work with its audit row, or rolls both back") {
  TwoOwnerDatabase db;
  const OwnerScope a = owner_scope("user", "A");
  PgResult done = as_api(db.dsn(), a, [&](ApiSession& tx) -> asio::awaitable<void> {
    CHECK(tx.scope().setting() == "user:A");
    PgResult who = co_await tx.query("SELECT current_user || ' ' || current_setting('keygate.owner')", PgParams());
    CHECK(who.get(0, 0) == "keygate_api user:A");
    PgResult renamed = co_await tx.query("UPDATE api_keys SET name = 'renamed' WHERE id = $1::uuid", one_param(key_a));
    CHECK(renamed.affected_rows() == 1);
    PgResult audited = co_await tx.append_audit(audit_of(key_a, a));
    CHECK_MESSAGE(audited.ok(), audited.error());
    CHECK(audited.rows() == 1);
  });
  CHECK_MESSAGE(done.ok(), done.error());
  CHECK(db.scalar("SELECT name FROM api_keys WHERE id = '" + std::string(key_a) + "'") == "renamed");
  CHECK(db.scalar("SELECT action || ' ' || key_owner || ' ' || actor_owner || ' ' || (after->>'name') || ' ' || "
                  "(actor_key_id IS NULL) || ' ' || (source_url IS NULL) FROM api_key_audit WHERE request_id = 'req-1'") ==
        "update user:A user:A after true true");

  // The audit row is about B's key: RLS refuses it, and the rename before it goes too.
  done = as_api(db.dsn(), a, [&](ApiSession& tx) -> asio::awaitable<void> {
    (void)co_await tx.query("UPDATE api_keys SET name = 'lost' WHERE id = $1::uuid", one_param(key_a));
    PgResult audited = co_await tx.append_audit(audit_of(key_b, owner_scope("user", "B")));
    CHECK(audited.sqlstate() == "42501");
    PgResult after = co_await tx.query("SELECT 1", PgParams());  // not sent: the transaction is lost
    CHECK(after.sqlstate() == "42501");
    CHECK(tx.failed());
  });
  CHECK(done.status() == PgStatus::query_error);
  CHECK(done.sqlstate() == "42501");
  CHECK(db.scalar("SELECT name FROM api_keys WHERE id = '" + std::string(key_a) + "'") == "renamed");

  // Secrets are refused by the table, as is an audit row without an owner.
  AuditEntry secret = audit_of(key_a, a);
  secret.after_json = R"({"name": "x", "key_hash": "\\xaa"})";
  CHECK(as_api(db.dsn(), a, [&](ApiSession& tx) -> asio::awaitable<void> {
          (void)co_await tx.append_audit(secret);
        }).sqlstate() == "23514");
  AuditEntry ownerless = audit_of(key_a, a);
  ownerless.key_owner = OwnerScope::all_owners();
  CHECK(as_api(db.dsn(), OwnerScope::all_owners(), [&](ApiSession& tx) -> asio::awaitable<void> {
          (void)co_await tx.append_audit(ownerless);
        }).sqlstate() == "23514");

  // roll_back(): nothing failed, nothing is kept.
  done = as_api(db.dsn(), a, [&](ApiSession& tx) -> asio::awaitable<void> {
    (void)co_await tx.query("UPDATE api_keys SET name = 'undone' WHERE id = $1::uuid", one_param(key_a));
    tx.roll_back();
  });
  CHECK(done.ok());
  CHECK(db.scalar("SELECT name FROM api_keys WHERE id = '" + std::string(key_a) + "'") == "renamed");
  CHECK(db.scalar("SELECT count(*) FROM api_key_audit") == "3");
}

TEST_CASE("run_as_owner rolls back when the work throws, and the connection returns as it came") {
  TwoOwnerDatabase db;
  run_coro([&]() -> asio::awaitable<void> {
    PgPool pool(co_await asio::this_coro::executor, db.options());  // one connection
    const OwnerScope a = owner_scope("user", "A");
    bool threw = false;
    try {
      (void)co_await run_as_owner(pool, a, [&](ApiSession& tx) -> asio::awaitable<void> {
        (void)co_await tx.query("UPDATE api_keys SET name = 'thrown' WHERE id = $1::uuid", one_param(key_a));
        throw std::runtime_error("a handler bug");
      });
    } catch (const std::runtime_error&) {
      threw = true;
    }
    CHECK(threw);
    PgResult done = co_await run_as_owner(pool, a, [&](ApiSession& tx) -> asio::awaitable<void> {
      (void)co_await tx.query("SELECT 1", PgParams());
    });
    CHECK(done.ok());
    // Role and setting ended with the transaction: the owner's connection again.
    PgResult after = co_await pool.query(
        "SELECT current_user = session_user, coalesce(current_setting('keygate.owner', true), ''), "
        "(SELECT name FROM api_keys WHERE id = 'aaaaaaaa-0000-4000-8000-00000000000a')", PgParams());
    REQUIRE_MESSAGE(after.ok(), after.error());
    CHECK(after.get(0, 0) == "t");
    CHECK(after.get(0, 1) == "");
    CHECK(after.get(0, 2) == "a key");
    CHECK(pool.open_connections() == 1);
  }());
}

TEST_CASE("0005 goes down and up again: isolation off, then on again") {
  TwoOwnerDatabase db;
  auto run = [&](bool up) {
    return run_coro([&]() -> asio::awaitable<keygate::store::MigrationRun> {
      PgConnection connection(co_await asio::this_coro::executor);
      PgResult connected = co_await connection.connect(db.dsn(), 5s);
      if (!connected.ok()) throw std::runtime_error(connected.error());
      Migrator migrator(connection, keygate::store::embedded_migrations());
      // Not one co_await in each arm of a conditional: g++ 12 mis-builds that.
      if (up) co_return co_await migrator.up();
      co_return co_await migrator.down(false);
    }());
  };
  auto later = run(false);  // 0006 first: it grants keygate_api a column of api_keys
  REQUIRE_MESSAGE(later.ok(), later.error);
  REQUIRE(later.changed.size() == 1);
  CHECK(later.changed[0].name == "leaks_and_listing");
  auto down = run(false);
  REQUIRE_MESSAGE(down.ok(), down.error);
  REQUIRE(down.changed.size() == 1);
  CHECK(down.changed[0].name == "api_isolation");
  CHECK(db.scalar("SELECT count(*) FROM pg_class WHERE relname IN ('api_keys', 'api_key_usage', "
                  "'api_key_quota_usage') AND relrowsecurity") == "0");
  CHECK(db.scalar("SELECT count(*) FROM pg_policy") == "0");
  CHECK(db.scalar("SELECT to_regclass('api_key_audit') IS NULL") == "t");
  CHECK(db.scalar("SELECT has_table_privilege('keygate_api', 'api_keys', 'SELECT') OR "
                  "has_any_column_privilege('keygate_api', 'api_keys', 'UPDATE')") == "f");
  CHECK(db.scalar("SELECT prosecdef::text FROM pg_proc WHERE proname = 'api_keys_delete_usage'") == "false");
  CHECK(db.scalar("SELECT count(*) FROM pg_roles WHERE rolname = 'keygate_api'") == "1");  // kept

  auto up = run(true);
  REQUIRE_MESSAGE(up.ok(), up.error);
  CHECK(up.changed.size() == 2);
  CHECK(api_answer(db.dsn(), owner_scope("user", "B"), "SELECT string_agg(owner_id, ',') FROM api_keys") == "1|B");
}

TEST_CASE("migrating as a role that cannot grant itself keygate_api fails naming the GRANT to run") {
  // Another role than the superuser the tests connect as: the connection starts with
  // role=<it>, so the migration runs as it, and it owns the tables it creates.
  TwoOwnerDatabase first;  // keygate_api exists from here on (the cluster may have had it already)
  const std::string role = "kg_test_migrator_" + random_suffix();
  struct DropRole {
    std::string name;
    ~DropRole() {
      try {
        keygate::test::run_sql(keygate::test::postgres_dsn(), "DROP ROLE IF EXISTS " + name);
      } catch (...) {
      }
    }
  } drop_role{role};
  keygate::test::run_sql(keygate::test::postgres_dsn(), "CREATE ROLE " + role + " NOLOGIN");
  ScratchDatabase db;  // dropped before the role
  db.sql("GRANT CREATE ON SCHEMA public TO " + role);
  const std::string as_role = db.dsn() + "?options=-c%20role%3D" + role;
  auto migrate = [&] {
    return run_coro([&]() -> asio::awaitable<keygate::store::MigrationRun> {
      PgConnection connection(co_await asio::this_coro::executor);
      PgResult connected = co_await connection.connect(as_role, 5s);
      if (!connected.ok()) throw std::runtime_error(connected.error());
      Migrator migrator(connection, keygate::store::embedded_migrations());
      co_return co_await migrator.up();
    }());
  };

  auto refused = migrate();
  CHECK_FALSE(refused.ok());
  CHECK_MESSAGE(refused.error.find("migration 0005_api_isolation failed") == 0, refused.error);
  CHECK_MESSAGE(refused.error.find("may not grant itself the role keygate_api: as a superuser, run "
                                   "\"GRANT keygate_api TO " + role + ";\"") != std::string::npos,
                refused.error);
  CHECK(first_value(db, "SELECT max(version) FROM schema_migrations") == "4");
  CHECK(first_value(db, "SELECT to_regclass('api_key_audit') IS NULL") == "t");

  keygate::test::run_sql(keygate::test::postgres_dsn(), "GRANT keygate_api TO " + role);
  auto applied = migrate();
  REQUIRE_MESSAGE(applied.ok(), applied.error);
  CHECK(first_value(db, "SELECT tableowner FROM pg_tables WHERE tablename = 'api_key_audit'") == role);

  // Owned by a role that is no superuser: the owner reads everything, keygate_api one owner.
  on_one_connection(as_role, {seed_sql});
  CHECK(on_one_connection(as_role, {"SELECT count(*) FROM api_keys"})[0] == "1|2");
  CHECK(api_answer(as_role, owner_scope("user", "A"), "SELECT string_agg(owner_id, ',') FROM api_keys") == "1|A");
  CHECK(api_answer(as_role, owner_scope("user", "A"), "DELETE FROM api_keys WHERE owner_id = 'A'") == "1");
  CHECK(on_one_connection(as_role, {"SELECT count(*) FROM api_key_usage"})[0] == "1|1");
}
