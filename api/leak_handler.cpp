#include "api/leak_handler.hpp"

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <vector>

#include "api/api_call.hpp"
#include "api/key_json.hpp"
#include "authz/key_hash.hpp"
#include "authz/leak_report.hpp"
#include "core/log.hpp"

namespace keygate::api {

namespace asio = boost::asio;
namespace json = boost::json;
namespace http = boost::beast::http;

namespace {

// The audit row of what the report changed in one key: `changed` (revoked_at or leaked_at)
// set to `when`, with the token's type and source.
store::AuditEntry leak_audit(const store::KeyDetails& key, bool revoked, std::string_view changed,
                             json::value when, const authz::LeakedToken& token, const std::string& request_id) {
  store::AuditEntry e;
  e.action = revoked ? store::AuditAction::leak_revoke : store::AuditAction::leak_flag;
  e.key_id = key.record.id;
  e.key_owner = store::OwnerScope::owner(key.record.owner_type, key.record.owner_id)
                    .value_or(store::OwnerScope::all_owners());
  e.request_id = request_id;
  if (!token.url.empty()) e.source_url = token.url;
  e.before_json = json::serialize(key_json(key, nullptr));
  e.after_json = json::serialize(
      json::object{{changed, std::move(when)}, {"token_type", token.type}, {"source", token.source}});
  return e;
}

}  // namespace

asio::awaitable<Answer> report_leaks(const LeakReportRequest& request, const ApiServices& services) {
  if (services.leak_keys == nullptr) {
    co_return error_answer(http::status::not_found, "not_found", "leak reports are not configured (api.leaks.public_keys_file)");
  }
  const authz::SignatureCheck check =
      authz::verify_signature(*services.leak_keys, request.key_identifier, request.signature, request.body);
  if (check != authz::SignatureCheck::ok) {
    core::log_warn("api: leak report refused", {{"signature", authz::name_of(check)}});
    Answer a = error_answer(http::status::unauthorized, "invalid_signature",
                            "the report is not signed by a configured key (" + std::string(authz::name_of(check)) + ")");
    co_return a;
  }
  const authz::LeakReport report = authz::parse_leak_report(request.body);
  if (!report.ok()) co_return error_answer(http::status::bad_request, "invalid_request", report.error, report.field);

  std::vector<authz::LeakVerdict> verdicts;
  verdicts.reserve(report.tokens.size());
  std::size_t revoked = 0, flagged = 0;
  // A leak report is about any owner's keys: the transaction sees all of them (as an operator
  // token's does), still as keygate_api.
  Answer answer = co_await in_scope(services, store::OwnerScope::all_owners(), [&](store::KeyRepository& repository,
                                                                                   store::ApiSession& tx,
                                                                                   Answer& out) -> asio::awaitable<void> {
    for (const authz::LeakedToken& token : report.tokens) {
      authz::LeakVerdict verdict{token.token, token.type, authz::LeakLabel::false_positive};
      if (authz::classify_leaked_token(token.token) == authz::LeakedTokenKind::keygate_key) {
        auto found = co_await repository.show_by_hash(authz::hash_key(token.token, services.pepper));
        if (found.status != store::RepoStatus::not_found) {
          if (refused(found, out, tx)) co_return;
          verdict.label = authz::LeakLabel::true_positive;
          const store::KeyDetails& key = found.value;
          const bool active = !key.record.revoked_at;
          if (active && services.leak_action_revoke) {
            auto done = co_await repository.revoke(key.record.id);
            if (refused(done, out, tx)) co_return;
            if (!done.value.already_revoked) {
              const store::AuditEntry entry =
                  leak_audit(key, true, "revoked_at", time_json(done.value.revoked_at), token, request.request_id);
              co_await tx.append_audit(entry);
              ++revoked;
            }
          } else if (active && !key.leaked_at) {
            auto done = co_await repository.mark_leaked(key.record.id);
            if (refused(done, out, tx)) co_return;
            const store::AuditEntry entry =
                leak_audit(key, false, "leaked_at", time_json(done.value.leaked_at), token, request.request_id);
            co_await tx.append_audit(entry);
            ++flagged;
          }
        }
      }
      verdicts.push_back(verdict);
    }
    out.body = authz::leak_answer_json(verdicts);
  });
  if (answer.status == http::status::ok) {
    core::log_info("api: leak report", {{"tokens", std::to_string(report.tokens.size())},
                                        {"revoked", std::to_string(revoked)},
                                        {"flagged", std::to_string(flagged)}});
  }
  co_return answer;
}

}  // namespace keygate::api
