#include "store/api_session.hpp"

#include <exception>
#include <utility>

namespace keygate::store {

namespace asio = boost::asio;

std::string_view audit_action_name(AuditAction action) {
  switch (action) {
    case AuditAction::create: return "create";
    case AuditAction::update: return "update";
    case AuditAction::revoke: return "revoke";
    case AuditAction::rotate: return "rotate";
    case AuditAction::remove: return "delete";
    case AuditAction::leak_revoke: return "leak_revoke";
    case AuditAction::leak_flag: return "leak_flag";
  }
  return "update";  // unreachable: every enumerator is named above
}

ApiSession::ApiSession(PgConnection& connection, OwnerScope scope, std::chrono::milliseconds timeout)
    : connection_(connection), scope_(std::move(scope)), timeout_(timeout) {}

namespace {

// PgResult is move-only; a failure holds no result set, so it is copied by its parts.
PgResult copy_of(const PgResult& failure) {
  return PgResult::failure(failure.status(), failure.error(), failure.sqlstate());
}

// Built outside coroutines: g++ 12 mis-builds braced temporaries inside coroutine bodies.
PgParams audit_params(const AuditEntry& entry) {
  PgParams params;
  params.emplace_back(entry.actor_key_id);
  params.emplace_back(entry.actor_owner ? std::optional(entry.actor_owner->setting()) : std::nullopt);
  params.emplace_back(std::string(audit_action_name(entry.action)));
  params.emplace_back(entry.key_id);
  params.emplace_back(entry.key_owner.setting());
  params.emplace_back(entry.before_json);
  params.emplace_back(entry.after_json);
  params.emplace_back(entry.request_id);
  params.emplace_back(entry.source_url);
  return params;
}

PgParams setting_params(const OwnerScope& scope) {
  PgParams params;
  params.emplace_back(scope.setting());
  return params;
}

}  // namespace

asio::awaitable<PgResult> ApiSession::query(std::string sql, PgParams params) {
  if (failure_) co_return copy_of(*failure_);
  PgResult result = co_await connection_.query(std::move(sql), std::move(params), timeout_);
  if (!result.ok()) failure_ = copy_of(result);
  co_return result;
}

asio::awaitable<PgResult> ApiSession::append_audit(const AuditEntry& entry) {
  co_return co_await query(
      "INSERT INTO api_key_audit (actor_key_id, actor_owner, action, key_id, key_owner, before, "
      "after, request_id, source_url) VALUES ($1::uuid, $2, $3, $4::uuid, $5, $6::jsonb, $7::jsonb, "
      "$8, $9) RETURNING id",
      audit_params(entry));
}

asio::awaitable<PgResult> run_as_owner(PgPool& pool, OwnerScope scope, ApiWork work) {
  PgLease lease = co_await pool.acquire();
  if (!lease.ok()) co_return PgResult::failure(lease.status(), lease.error());
  const auto timeout = pool.options().query_timeout;

  // One round trip for both: after a refused SET the transaction is open and aborted.
  PgResult begun = co_await lease->execute("BEGIN; SET LOCAL ROLE keygate_api", timeout);
  if (begun.ok()) {
    begun = co_await lease->query("SELECT set_config('keygate.owner', $1, true)",
                                  setting_params(scope), timeout);
  }
  if (!begun.ok()) {
    // On a broken connection ROLLBACK fails too; the pool then discards the connection.
    (void)co_await lease->execute("ROLLBACK", timeout);
    if (begun.status() != PgStatus::query_error) co_return begun;
    // Most likely keygate_api is missing, or this role may not switch to it.
    co_return PgResult::failure(begun.status(),
                                begun.error() + " (the API's role keygate_api comes with migration "
                                                "0005: run keygate migrate up)",
                                begun.sqlstate());
  }

  ApiSession session(*lease, std::move(scope), timeout);
  std::exception_ptr thrown;
  try {
    co_await work(session);
  } catch (...) {
    thrown = std::current_exception();  // no co_await inside a handler: roll back below
  }

  if (thrown || session.rolling_back()) {
    (void)co_await lease->execute("ROLLBACK", timeout);
    if (thrown) std::rethrow_exception(thrown);
    if (session.failed()) co_return copy_of(*session.failure());
    co_return PgResult();
  }
  // COMMIT of an aborted transaction answers ROLLBACK without an error; it cannot be aborted
  // here, since every statement went through session.query() and none failed.
  co_return co_await lease->execute("COMMIT", timeout);
}

}  // namespace keygate::store
