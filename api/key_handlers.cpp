// The handlers of /v1/keys (see key_handlers.hpp). Another owner's key answers 404, as a key
// that does not exist does: row-level security hides it in the transaction already, and
// manageable_key checks it a second time.
#include "api/key_handlers.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <optional>

#include "api/key_json.hpp"
#include "api/key_listing.hpp"
#include "api/query_string.hpp"
#include "authz/key_format.hpp"
#include "authz/key_hash.hpp"
#include "core/duration.hpp"
#include "store/usage_report.hpp"

namespace keygate::api {

namespace asio = boost::asio;
namespace json = boost::json;
namespace http = boost::beast::http;

namespace {

// The key, if it exists and the caller may manage it; else the 404 (or store error) to answer.
// In the caller's transaction, RLS hides another owner's key already; the check is the second.
asio::awaitable<std::optional<store::KeyDetails>> manageable_key(const std::string& id, store::KeyRepository& repository,
                                                                  const Caller& caller, Answer& failure) {
  auto shown = co_await repository.show(id);
  if (!shown.ok()) {
    failure = repository_failure(shown.status, shown.error);
    co_return std::nullopt;
  }
  if (!may_manage(caller.authority, shown.value.record.owner_type, shown.value.record.owner_id)) {
    failure = not_found();  // another owner's key: as if it did not exist
    co_return std::nullopt;
  }
  co_return std::move(shown.value);
}

json::value json_ms(std::optional<double> ms) {
  if (!ms) return nullptr;
  return static_cast<double>(static_cast<long long>(*ms * 1000.0 + 0.5)) / 1000.0;  // to the microsecond
}

json::object usage_line_json(const store::UsageLine& line) {
  return json::object{{"requests", line.requests}, {"p50_ms", json_ms(line.p50_ms)}, {"p99_ms", json_ms(line.p99_ms)}};
}

}  // namespace

store::AuditEntry audit(const Caller& caller, store::AuditAction action, const store::KeyRecord& key) {
  store::AuditEntry e;
  e.actor_key_id = caller.key_id;
  e.actor_owner = caller.scope;
  e.action = action;
  e.key_id = key.id;
  e.key_owner = store::OwnerScope::owner(key.owner_type, key.owner_id).value_or(store::OwnerScope::all_owners());
  e.request_id = caller.request_id;
  return e;
}

asio::awaitable<Answer> create_key(std::string_view body, const ApiServices& services, const Caller& caller) {
  auto decoded = decode_create_key(body, services.rules, store::Clock::now());
  if (!decoded.ok()) co_return invalid(*decoded.error);
  CreateKeyRequest& r = decoded.value;
  const Authority& who = caller.authority;
  store::NewKey key;
  key.owner.type = r.owner_type.value_or(who.owner_type);
  key.owner.id = r.owner_id.value_or(who.owner_id);
  if (!may_manage(who, key.owner.type, key.owner.id)) {
    co_return error_answer(http::status::forbidden, "forbidden", "an owner token creates keys for its own owner only",
                           "owner");
  }
  if (auto refused = check_grant(who, r.scopes)) {
    co_return error_answer(http::status::forbidden, "forbidden", refused->message, refused->field);
  }
  const std::string secret = authz::generate_key(services.key_prefix);
  key.name = std::move(r.name);
  key.description = std::move(r.description);
  key.key_prefix = authz::key_display_prefix(secret);
  key.key_hash = authz::hash_key(secret, services.pepper);
  key.scopes = std::move(r.scopes);
  key.allowed_ips = std::move(r.allowed_ips);
  if (r.rate_limit) {
    key.rate_limit = r.rate_limit->limit;
    key.window_seconds = r.rate_limit->window_seconds;
  }
  key.quota = r.quota;
  key.quota_period_seconds = r.quota_period_seconds;
  if (r.expires_at) {
    key.expires_in = std::chrono::duration_cast<std::chrono::milliseconds>(*r.expires_at - store::Clock::now());
  }
  key.metadata_json = std::move(r.metadata_json);
  key.created_by = "api:" + caller.key_id;
  co_return co_await in_scope(services, caller, [&](store::KeyRepository& repository, store::ApiSession& tx,
                                                    Answer& out) -> asio::awaitable<void> {
    auto created = co_await repository.create(std::move(key));
    if (refused(created, out, tx)) co_return;
    store::AuditEntry entry = audit(caller, store::AuditAction::create, created.value.record);
    entry.after_json = json::serialize(key_json(created.value, nullptr));
    co_await tx.append_audit(entry);
    out = json_answer(http::status::created, key_json(created.value, &secret));
  });
}

asio::awaitable<Answer> list_keys(std::string_view query, const ApiServices& services, const Caller& caller) {
  auto decoded = decode_list_query(query, caller.authority);
  if (!decoded.ok()) co_return invalid(*decoded.error);
  const auto empty_page = [] { return json::object{{"keys", json::array()}, {"next_cursor", nullptr}}; };
  if (decoded.value.nothing_visible) co_return json_answer(http::status::ok, empty_page());
  co_return co_await in_scope(services, caller, [&](store::KeyRepository& repository, store::ApiSession& tx,
                                                    Answer& out) -> asio::awaitable<void> {
    auto listed = co_await repository.list_page(decoded.value.page);
    if (refused(listed, out, tx)) co_return;
    json::array keys;
    for (const store::KeyDetails& k : listed.value.keys) keys.emplace_back(key_json(k, nullptr));
    json::value next = nullptr;
    if (listed.value.more) next = encode_key_cursor(listed.value.keys.back());
    out = json_answer(http::status::ok, json::object{{"keys", std::move(keys)}, {"next_cursor", std::move(next)}});
  });
}

asio::awaitable<Answer> show_key(const std::string& id, const ApiServices& services, const Caller& caller) {
  co_return co_await in_scope(services, caller, [&](store::KeyRepository& repository, store::ApiSession&,
                                                    Answer& out) -> asio::awaitable<void> {
    auto key = co_await manageable_key(id, repository, caller, out);
    if (key) out = json_answer(http::status::ok, key_json(*key, nullptr));
  });
}

asio::awaitable<Answer> patch_key(std::string_view body, const std::string& id, const ApiServices& services,
                                  const Caller& caller) {
  auto decoded = decode_key_patch(body, services.rules, store::Clock::now());
  if (!decoded.ok()) co_return invalid(*decoded.error);
  KeyPatch& p = decoded.value;
  if (p.scopes) {
    if (auto refused = check_grant(caller.authority, *p.scopes)) {
      co_return error_answer(http::status::forbidden, "forbidden", refused->message, refused->field);
    }
  }
  store::KeyChanges changes;
  changes.name = std::move(p.name);
  changes.description = std::move(p.description);
  changes.scopes = std::move(p.scopes);
  changes.allowed_ips = std::move(p.allowed_ips);
  if (p.rate_limit) {
    changes.rate_limit = *p.rate_limit ? std::optional(std::pair((*p.rate_limit)->limit, (*p.rate_limit)->window_seconds))
                                       : std::nullopt;
  }
  changes.quota = p.quota;
  changes.quota_period_seconds = p.quota_period_seconds;
  changes.expires_at = p.expires_at;
  changes.metadata_json = std::move(p.metadata_json);
  co_return co_await in_scope(services, caller, [&](store::KeyRepository& repository, store::ApiSession& tx,
                                                    Answer& out) -> asio::awaitable<void> {
    auto before = co_await manageable_key(id, repository, caller, out);
    if (!before) co_return;
    auto updated = co_await repository.update(id, std::move(changes));
    if (refused(updated, out, tx)) co_return;
    store::AuditEntry entry = audit(caller, store::AuditAction::update, before->record);
    entry.before_json = json::serialize(key_json(*before, nullptr));
    entry.after_json = json::serialize(key_json(updated.value, nullptr));
    co_await tx.append_audit(entry);
    out = json_answer(http::status::ok, key_json(updated.value, nullptr));
  });
}

asio::awaitable<Answer> delete_key(const std::string& id, const ApiServices& services, const Caller& caller) {
  co_return co_await in_scope(services, caller, [&](store::KeyRepository& repository, store::ApiSession& tx,
                                                    Answer& out) -> asio::awaitable<void> {
    auto before = co_await manageable_key(id, repository, caller, out);
    if (!before) co_return;
    auto removed = co_await repository.remove(id);
    if (refused(removed, out, tx)) co_return;
    store::AuditEntry entry = audit(caller, store::AuditAction::remove, before->record);
    entry.before_json = json::serialize(key_json(*before, nullptr));
    co_await tx.append_audit(entry);
    out = json_answer(http::status::ok, json::object{{"id", id}, {"deleted", true}});
  });
}

asio::awaitable<Answer> key_usage(std::string_view query, const std::string& id, const ApiServices& services,
                                  const Caller& caller) {
  std::string unknown;
  if (!only_parameters(query, {"since"}, unknown)) co_return unknown_parameter(unknown);
  std::chrono::milliseconds since = std::chrono::hours(24);
  if (auto text = parameter(query, "since")) {
    auto parsed = core::parse_duration(*text);
    if (!parsed || *parsed < std::chrono::minutes(1) || *parsed > std::chrono::days(31)) {
      co_return error_answer(http::status::bad_request, "invalid_request", "expected a duration from 1m to 31d, like 24h",
                             "since");
    }
    since = *parsed;
  }
  co_return co_await in_scope(services, caller, [&](store::KeyRepository& repository, store::ApiSession& tx,
                                                    Answer& out) -> asio::awaitable<void> {
    if (!co_await manageable_key(id, repository, caller, out)) co_return;
    store::PgResult by_status = co_await tx.query(store::usage_by_status_sql(), store::usage_params(id, since));
    store::PgResult by_hour = co_await tx.query(store::usage_by_hour_sql(), store::usage_params(id, since));
    if (!by_status.ok() || !by_hour.ok()) co_return;  // the transaction answers 503
    store::UsageReport report;
    if (!store::parse_usage_report(by_status, &by_hour, report)) {
      out = store_failure("unexpected api_key_usage row");
      co_return;
    }
    json::object o = usage_line_json(report.total);
    o["id"] = id;
    o["since"] = core::format_duration(since);
    o["from"] = report.from.empty() ? json::value(nullptr) : json::value(report.from);
    json::array statuses, hours;
    for (const auto& line : report.by_status) {
      json::object s = usage_line_json(line);
      s["status"] = line.status ? json::value(*line.status) : json::value(nullptr);
      statuses.push_back(std::move(s));
    }
    for (const auto& line : report.by_hour) {
      json::object h = usage_line_json(line);
      h["hour"] = line.hour;
      hours.push_back(std::move(h));
    }
    o["by_status"] = std::move(statuses);
    o["by_hour"] = std::move(hours);
    out = json_answer(http::status::ok, o);
  });
}

asio::awaitable<Answer> revoke_key(const std::string& id, const ApiServices& services, const Caller& caller) {
  co_return co_await in_scope(services, caller, [&](store::KeyRepository& repository, store::ApiSession& tx,
                                                    Answer& out) -> asio::awaitable<void> {
    auto before = co_await manageable_key(id, repository, caller, out);
    if (!before) co_return;
    auto revoked = co_await repository.revoke(id);
    if (refused(revoked, out, tx)) co_return;
    if (!revoked.value.already_revoked) {
      store::AuditEntry entry = audit(caller, store::AuditAction::revoke, before->record);
      entry.before_json = json::serialize(key_json(*before, nullptr));
      entry.after_json = json::serialize(json::object{{"revoked_at", time_json(revoked.value.revoked_at)}});
      co_await tx.append_audit(entry);
    }
    out = json_answer(http::status::ok, json::object{{"id", id},
                                                     {"revoked_at", time_json(revoked.value.revoked_at)},
                                                     {"already_revoked", revoked.value.already_revoked}});
  });
}

asio::awaitable<Answer> rotate_key(std::string_view body, const std::string& id, const ApiServices& services,
                                   const Caller& caller) {
  auto grace = decode_rotate(body);
  if (!grace.ok()) co_return invalid(*grace.error);
  const std::string secret = authz::generate_key(services.key_prefix);
  co_return co_await in_scope(services, caller, [&](store::KeyRepository& repository, store::ApiSession& tx,
                                                    Answer& out) -> asio::awaitable<void> {
    auto before = co_await manageable_key(id, repository, caller, out);
    if (!before) co_return;
    auto rotated = co_await repository.rotate(id, authz::key_display_prefix(secret),
                                              authz::hash_key(secret, services.pepper), grace.value);
    if (refused(rotated, out, tx)) co_return;
    store::AuditEntry entry = audit(caller, store::AuditAction::rotate, before->record);
    entry.before_json = json::serialize(key_json(*before, nullptr));
    entry.after_json = json::serialize(json::object{{"new_key_id", rotated.value.new_key.record.id},
                                                    {"expires_at", time_json(rotated.value.previous_expires_at)}});
    co_await tx.append_audit(entry);
    json::object o = key_json(rotated.value.new_key, &secret);
    o["previous_id"] = rotated.value.previous_id;
    o["previous_expires_at"] = time_json(rotated.value.previous_expires_at);
    out = json_answer(http::status::created, o);
  });
}

}  // namespace keygate::api
