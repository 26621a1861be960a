#pragma once
// One authenticated API call (internal to api/): who makes it, and the owner-scoped
// transaction every handler works in.
#include <boost/asio/awaitable.hpp>

#include <string>

#include "api/api_answer.hpp"
#include "api/api_server.hpp"
#include "api/key_request.hpp"
#include "store/api_session.hpp"
#include "store/key_repository.hpp"
#include "store/owner_scope.hpp"

namespace keygate::api {

struct Caller {
  Authority authority;
  std::string key_id;
  store::OwnerScope scope = store::OwnerScope::all_owners();  // what its transactions may see
  std::string request_id;
};

// Runs `work(repository, tx, answer)` inside one transaction as keygate_api, scoped to the
// caller's owner (row-level security: a handler's mistake cannot reach another owner's rows).
// `work` sets the answer and calls roll_back() on a failure; a transaction that does not
// commit answers 503, except for a refusal (4xx) the work answered: that stands, rolled back.
template <typename Work>
boost::asio::awaitable<Answer> in_scope(const ApiServices& services, const store::OwnerScope& scope, Work work) {
  Answer out;
  store::PgResult done = co_await store::run_as_owner(
      *services.pool, scope, [&](store::ApiSession& tx) -> boost::asio::awaitable<void> {
        store::KeyRepository repository(*services.pool, tx);
        co_await work(repository, tx, out);
      });
  if (!done.ok() && static_cast<unsigned>(out.status) < 400) co_return store_failure(done.error());
  co_return out;
}

template <typename Work>
boost::asio::awaitable<Answer> in_scope(const ApiServices& services, const Caller& caller, Work work) {
  co_return co_await in_scope(services, caller.scope, std::move(work));
}

// A repository call that failed inside a transaction: its answer, and the rollback.
template <typename T>
bool refused(const store::RepoResult<T>& result, Answer& out, store::ApiSession& tx) {
  if (result.ok()) return false;
  out = repository_failure(result.status, result.error);
  tx.roll_back();
  return true;
}

// The audit row of `caller` changing `key` (before/after are the handler's).
store::AuditEntry audit(const Caller& caller, store::AuditAction action, const store::KeyRecord& key);

}  // namespace keygate::api
