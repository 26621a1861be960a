// The key-management API (see api_server.hpp). Each call: bounded read, route, the admin token
// (a keygate key with admin:* or admin:self, read from PostgreSQL so that a revoked token stops
// at once), the body decoded (api/key_request.hpp), owner isolation, one repository call, a
// JSON answer. Another owner's key answers 404, as a key that does not exist does.
#include "api/api_server.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <charconv>
#include <optional>

#include "api/api_routes.hpp"
#include "api/key_json.hpp"
#include "authz/authorizer.hpp"
#include "authz/credential.hpp"
#include "authz/key_format.hpp"
#include "authz/key_hash.hpp"
#include "authz/policy.hpp"
#include "core/duration.hpp"
#include "core/hex.hpp"
#include "core/log.hpp"
#include "proxy/peer_address.hpp"
#include "store/api_session.hpp"
#include "store/metrics.hpp"
#include "store/key_repository.hpp"
#include "store/pg_pool.hpp"
#include "store/usage_report.hpp"

#include <openssl/rand.h>

namespace keygate::api {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = asio::ip::tcp;

constexpr auto io_timeout = std::chrono::seconds(10);
constexpr std::size_t max_header_bytes = 16 * 1024;
constexpr std::size_t max_body_bytes = 64 * 1024;
constexpr std::size_t max_page = 500;
constexpr auto tuple = asio::as_tuple(asio::use_awaitable);

using Request = http::request<http::string_body>;

struct Answer {
  http::status status = http::status::ok;
  std::string body;
  std::string_view allow;             // 405
  bool challenge = false;             // 401: WWW-Authenticate: Bearer
  std::string request_id;             // X-Request-Id (the audit rows of the call carry it)
};

Answer json_answer(http::status status, const json::value& body) {
  Answer a;
  a.status = status;
  a.body = json::serialize(body);
  return a;
}

Answer error_answer(http::status status, std::string_view code, std::string_view message, std::string_view field = {}) {
  json::object o;
  o["error"] = code;
  o["message"] = message;
  if (!field.empty()) o["field"] = field;
  return json_answer(status, o);
}

Answer invalid(const FieldError& e) { return error_answer(http::status::bad_request, "invalid_request", e.message, e.field); }

Answer not_found() { return error_answer(http::status::not_found, "not_found", "no such key"); }

Answer store_failure(const std::string& why) {
  core::log_warn("api: store error", {{"error", why}});
  return error_answer(http::status::service_unavailable, "store_unavailable", "PostgreSQL did not answer; try again");
}

// A repository failure that is not "not found" or "rejected".
Answer repository_failure(store::RepoStatus status, const std::string& why) {
  if (status == store::RepoStatus::not_found) return not_found();
  if (status == store::RepoStatus::rejected) {
    return error_answer(http::status::conflict, "conflict", why.empty() ? "the change breaks a rule of the key" : why);
  }
  return store_failure(why);
}

struct Caller {
  Authority authority;
  std::string key_id;
  store::OwnerScope scope = store::OwnerScope::all_owners();  // what its transactions may see
  std::string request_id;
};

// 16 random bytes in hex: the audit rows of one call, and its X-Request-Id.
std::string new_request_id() {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof bytes) != 1) throw std::runtime_error("api: the CSPRNG failed");
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

// Runs `work` with a KeyRepository inside one transaction as keygate_api, scoped to the
// caller's owner (row-level security: a handler's mistake cannot reach another owner's rows).
// `work` sets the answer and calls roll_back() on a failure; a transaction that does not
// commit answers 503.
template <typename Work>
asio::awaitable<Answer> in_scope(const ApiServices& services, const Caller& caller, Work work) {
  Answer out;
  store::PgResult done = co_await store::run_as_owner(
      *services.pool, caller.scope, [&](store::ApiSession& tx) -> asio::awaitable<void> {
        store::KeyRepository repository(*services.pool, tx);
        co_await work(repository, tx, out);
      });
  // A refusal the work answered (a 409 for a statement the table's rules refused) stands: it
  // rolled back. Anything else that did not commit is a store failure.
  if (!done.ok() && static_cast<unsigned>(out.status) < 400) co_return store_failure(done.error());
  co_return out;
}

// A repository call that failed inside a transaction: its answer, and the rollback.
template <typename T>
bool refused(const store::RepoResult<T>& result, Answer& out, store::ApiSession& tx) {
  if (result.ok()) return false;
  out = repository_failure(result.status, result.error);
  tx.roll_back();
  return true;
}

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

// The admin token: present, well formed, known, active, from an allowed address, and holding
// admin:* or admin:self. Failures answer 401 / 403 without saying more than the proxy would.
asio::awaitable<std::optional<Answer>> authenticate(const Request& request, const core::IpAddress& peer,
                                                    const ApiServices& services, Caller& caller) {
  std::optional<std::string_view> token;
  if (auto header = request.find(http::field::authorization); header != request.end()) {
    token = authz::credential_from_header("authorization", header->value());
  }
  if (!token) {
    Answer a = error_answer(http::status::unauthorized, "missing_token", "an admin token is required (Authorization: Bearer ...)");
    a.challenge = true;
    co_return a;
  }
  auto refused = [](std::string_view code, std::string_view message) {
    Answer a = error_answer(http::status::unauthorized, code, message);
    a.challenge = true;
    return a;
  };
  if (authz::check_key_format(*token) != authz::KeyFormat::valid) co_return refused("invalid_token", "the token is not valid");
  auto found = co_await services.repository->find_by_hash(authz::hash_key(*token, services.pepper));
  if (found.status == store::RepoStatus::not_found) co_return refused("invalid_token", "the token is not valid");
  if (!found.ok()) co_return store_failure(found.error);
  const authz::Decision decision = authz::decide(found.value, nullptr, peer, store::Clock::now());
  if (!decision.allowed()) {
    if (authz::refusal_status(decision.reason) == 401) {
      co_return refused(decision.reason == authz::DenyReason::expired_key ? "expired_token" : "revoked_token",
                        authz::error_message(decision.reason));
    }
    co_return error_answer(http::status::forbidden, authz::error_code(decision.reason), authz::error_message(decision.reason));
  }
  caller.authority = admin_authority(found.value);
  caller.key_id = found.value.id;
  if (caller.authority.role == AdminRole::none) {
    co_return error_answer(http::status::forbidden, "forbidden", "the token has neither admin:* nor admin:self");
  }
  if (caller.authority.role == AdminRole::owner) {
    auto scope = store::OwnerScope::owner(caller.authority.owner_type, caller.authority.owner_id);
    if (!scope) co_return error_answer(http::status::forbidden, "forbidden", "the token's owner cannot be scoped");
    caller.scope = std::move(*scope);
  }
  co_return std::nullopt;
}

std::string_view query_of(std::string_view target) {
  const std::size_t q = target.find('?');
  return q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
}

// One query parameter's raw value (the API's parameters need no %-decoding: owners, statuses,
// numbers and uuids), or nullopt. A parameter given twice is the first.
std::optional<std::string_view> parameter(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    const std::size_t eq = pair.find('=');
    if (pair.substr(0, eq) == name) return eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

bool only_parameters(std::string_view query, std::initializer_list<std::string_view> known, std::string& unknown) {
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    const std::string_view name = pair.substr(0, pair.find('='));
    if (!name.empty() && std::find(known.begin(), known.end(), name) == known.end()) {
      unknown = name.size() <= 64 ? std::string(name) : std::string();
      return false;
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return true;
}

// The `limit` parameter of a listing: 1 to max_page, 100 when absent; nullopt when invalid.
std::optional<std::size_t> page_limit(std::string_view query) {
  const auto text = parameter(query, "limit");
  if (!text) return 100;
  std::size_t value = 0;
  auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
  if (ec != std::errc() || end != text->data() + text->size() || value == 0 || value > max_page) return std::nullopt;
  return value;
}

// ---- handlers ----------------------------------------------------------------------------

asio::awaitable<Answer> create_key(const Request& request, const ApiServices& services, const Caller& caller) {
  auto decoded = decode_create_key(request.body(), services.rules, store::Clock::now());
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

asio::awaitable<Answer> list_keys(const Request& request, const ApiServices& services, const Caller& caller) {
  const std::string_view query = query_of(request.target());
  std::string unknown;
  if (!only_parameters(query, {"owner", "status", "limit", "cursor"}, unknown)) {
    co_return error_answer(http::status::bad_request, "invalid_request", "unknown query parameter", unknown);
  }
  std::optional<store::KeyOwner> owner;
  if (auto text = parameter(query, "owner")) {
    const std::size_t colon = text->find(':');
    if (colon == 0 || colon == std::string_view::npos || colon + 1 == text->size()) {
      co_return error_answer(http::status::bad_request, "invalid_request", "expected TYPE:ID like user:42", "owner");
    }
    owner = store::KeyOwner{std::string(text->substr(0, colon)), std::string(text->substr(colon + 1))};
  }
  const Authority& who = caller.authority;
  if (who.role == AdminRole::owner) {
    if (owner && !may_manage(who, owner->type, owner->id)) {
      co_return json_answer(http::status::ok, json::object{{"keys", json::array()}, {"next_cursor", nullptr}});
    }
    owner = store::KeyOwner{who.owner_type, who.owner_id};
  }
  std::optional<std::string_view> status = parameter(query, "status");
  if (status && *status != "active" && *status != "inactive" && *status != "expired" && *status != "revoked") {
    co_return error_answer(http::status::bad_request, "invalid_request", "expected active, inactive, expired or revoked",
                           "status");
  }
  const std::optional<std::size_t> limit = page_limit(query);
  if (!limit) co_return error_answer(http::status::bad_request, "invalid_request", "expected 1 to 500", "limit");
  const std::optional<std::string_view> cursor = parameter(query, "cursor");
  store::RepoResult<std::vector<store::KeyDetails>> listed;
  Answer failed = co_await in_scope(services, caller, [&](store::KeyRepository& repository, store::ApiSession&,
                                                          Answer&) -> asio::awaitable<void> {
    listed = co_await repository.list(owner);
  });
  if (failed.status != http::status::ok) co_return failed;
  if (!listed.ok()) co_return repository_failure(listed.status, listed.error);
  // Oldest first; the cursor is the id of the last key of the page before.
  json::array page;
  std::optional<std::string> next;
  bool past_cursor = !cursor;
  for (const store::KeyDetails& k : listed.value) {
    if (!past_cursor) {
      past_cursor = k.record.id == *cursor;
      continue;
    }
    if (status && status_text(k.record) != *status) continue;
    if (page.size() == *limit) {
      next = std::string(page.back().as_object().at("id").as_string());
      break;
    }
    page.emplace_back(key_json(k, nullptr));
  }
  if (cursor && !past_cursor) {
    co_return error_answer(http::status::bad_request, "invalid_request", "not a cursor of this listing", "cursor");
  }
  co_return json_answer(http::status::ok, json::object{{"keys", std::move(page)},
                                                       {"next_cursor", next ? json::value(*next) : json::value(nullptr)}});
}

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

asio::awaitable<Answer> show_key(const std::string& id, const ApiServices& services, const Caller& caller) {
  co_return co_await in_scope(services, caller, [&](store::KeyRepository& repository, store::ApiSession&,
                                                    Answer& out) -> asio::awaitable<void> {
    auto key = co_await manageable_key(id, repository, caller, out);
    if (key) out = json_answer(http::status::ok, key_json(*key, nullptr));
  });
}

asio::awaitable<Answer> patch_key(const Request& request, const std::string& id, const ApiServices& services,
                                  const Caller& caller) {
  auto decoded = decode_key_patch(request.body(), services.rules, store::Clock::now());
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

json::value json_ms(std::optional<double> ms) {
  if (!ms) return nullptr;
  return static_cast<double>(static_cast<long long>(*ms * 1000.0 + 0.5)) / 1000.0;  // to the microsecond
}

json::object usage_line_json(const store::UsageLine& line) {
  return json::object{{"requests", line.requests}, {"p50_ms", json_ms(line.p50_ms)}, {"p99_ms", json_ms(line.p99_ms)}};
}

// GET /v1/keys/{id}/usage?since=24h (1m to 31d): requests by status and by UTC hour.
asio::awaitable<Answer> key_usage(const Request& request, const std::string& id, const ApiServices& services,
                                  const Caller& caller) {
  const std::string_view query = query_of(request.target());
  std::string unknown;
  if (!only_parameters(query, {"since"}, unknown)) {
    co_return error_answer(http::status::bad_request, "invalid_request", "unknown query parameter", unknown);
  }
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

asio::awaitable<Answer> rotate_key(const Request& request, const std::string& id, const ApiServices& services,
                                   const Caller& caller) {
  auto grace = decode_rotate(request.body());
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

// The same decision and rate limit as the proxy for that method, path and client; the key's
// own refusal is an answer (200, valid: false), only a store error is a 503.
asio::awaitable<Answer> verify(const Request& request, const core::IpAddress& peer, const ApiServices& services) {
  auto decoded = decode_verify(request.body());
  if (!decoded.ok()) co_return invalid(*decoded.error);
  const VerifyRequest& v = decoded.value;
  authz::AuthRequest auth;
  auth.method = v.method;
  auth.path = v.path;
  auth.client_ip = v.client_ip.value_or(peer);
  auth.credential.add(v.key);
  const authz::AuthResult result = co_await services.verifier->authorize(auth);
  json::object o;
  o["valid"] = result.decision.allowed();
  o["code"] = result.decision.allowed() ? std::string_view("ok") : authz::error_code(result.decision.reason);
  if (result.key) {
    o["key_id"] = result.key->id;
    o["owner"] = owner_text(*result.key);
    json::array scopes;
    for (const auto& s : result.key->scopes) scopes.emplace_back(s);
    o["scopes"] = std::move(scopes);
  }
  if (result.rate.applies) {
    o["rate_limit"] = json::object{{"limit", result.rate.limit},
                                   {"remaining", result.rate.remaining},
                                   {"reset_seconds", result.rate.reset_seconds}};
  }
  const bool store_error = result.decision.outcome == authz::Outcome::error;
  co_return json_answer(store_error ? http::status::service_unavailable : http::status::ok, o);
}

// GET /v1/audit: the newest rows first, at most `limit` (1-500, default 100); operators only.
asio::awaitable<Answer> list_audit(const Request& request, const ApiServices& services, const Caller& caller) {
  if (caller.authority.role != AdminRole::operator_) {
    co_return error_answer(http::status::forbidden, "forbidden", "the audit log is for operator tokens (admin:*)");
  }
  const std::string_view query = query_of(request.target());
  std::string unknown;
  if (!only_parameters(query, {"key_id", "limit"}, unknown)) {
    co_return error_answer(http::status::bad_request, "invalid_request", "unknown query parameter", unknown);
  }
  const std::optional<std::size_t> limit = page_limit(query);
  if (!limit) co_return error_answer(http::status::bad_request, "invalid_request", "expected 1 to 500", "limit");
  std::optional<std::string> key_id;
  if (auto text = parameter(query, "key_id")) {
    if (!core::is_uuid(*text)) co_return error_answer(http::status::bad_request, "invalid_request", "expected a key id", "key_id");
    key_id = std::string(*text);
  }
  co_return co_await in_scope(services, caller, [&](store::KeyRepository&, store::ApiSession& tx,
                                                    Answer& out) -> asio::awaitable<void> {
    store::PgParams params;
    params.emplace_back(key_id);
    params.emplace_back(std::to_string(*limit));
    store::PgResult rows = co_await tx.query(
        "SELECT id::text, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), actor_key_id::text, "
        "actor_owner, action, key_id::text, key_owner, before::text, after::text, request_id, source_url "
        "FROM api_key_audit WHERE ($1::uuid IS NULL OR key_id = $1::uuid) ORDER BY id DESC LIMIT $2::integer",
        std::move(params));
    if (!rows.ok()) co_return;  // the transaction answers 503
    json::array entries;
    const auto text_or_null = [&](int row, int column) {
      return rows.is_null(row, column) ? json::value(nullptr) : json::value(rows.get(row, column));
    };
    const auto json_or_null = [&](int row, int column) {
      if (rows.is_null(row, column)) return json::value(nullptr);
      boost::system::error_code ec;
      json::value v = json::parse(rows.get(row, column), ec);
      return ec ? json::value(nullptr) : v;
    };
    for (int row = 0; row < rows.rows(); ++row) {
      entries.emplace_back(json::object{
          {"id", rows.get(row, 0)}, {"at", rows.get(row, 1)}, {"actor_key_id", text_or_null(row, 2)},
          {"actor_owner", text_or_null(row, 3)}, {"action", rows.get(row, 4)}, {"key_id", rows.get(row, 5)},
          {"key_owner", rows.get(row, 6)}, {"before", json_or_null(row, 7)}, {"after", json_or_null(row, 8)},
          {"request_id", rows.get(row, 9)}, {"source_url", text_or_null(row, 10)}});
    }
    out = json_answer(http::status::ok, json::object{{"entries", std::move(entries)}});
  });
}

asio::awaitable<Answer> answer(const Request& request, const core::IpAddress& peer, const ApiServices& services,
                               const std::string& request_id) {
  const std::string_view target = request.target();
  const std::string_view path = target.substr(0, target.find('?'));
  const RouteMatch route = match_route(request.method_string(), path);
  if (route.endpoint == Endpoint::not_found) co_return error_answer(http::status::not_found, "not_found", "no such endpoint");
  if (!route.method_allowed) {
    Answer a = error_answer(http::status::method_not_allowed, "method_not_allowed", "this endpoint does not take the method");
    a.allow = route.allow;
    co_return a;
  }
  if (route.endpoint == Endpoint::openapi) {
    Answer a;
    a.body = std::string(openapi_document());
    co_return a;
  }
  if (route.endpoint == Endpoint::verify) co_return co_await verify(request, peer, services);
  Caller caller;
  caller.request_id = request_id;
  if (auto refused = co_await authenticate(request, peer, services, caller)) co_return std::move(*refused);
  switch (route.endpoint) {
    case Endpoint::keys:
      if (request.method() == http::verb::post) co_return co_await create_key(request, services, caller);
      co_return co_await list_keys(request, services, caller);
    case Endpoint::key:
      if (request.method() == http::verb::patch) co_return co_await patch_key(request, route.id, services, caller);
      if (request.method() == http::verb::delete_) co_return co_await delete_key(route.id, services, caller);
      co_return co_await show_key(route.id, services, caller);
    case Endpoint::audit: co_return co_await list_audit(request, services, caller);
    case Endpoint::key_revoke: co_return co_await revoke_key(route.id, services, caller);
    case Endpoint::key_rotate: co_return co_await rotate_key(request, route.id, services, caller);
    case Endpoint::key_usage: co_return co_await key_usage(request, route.id, services, caller);
    default: break;
  }
  co_return error_answer(http::status::not_found, "not_found", "no such endpoint");
}

http::response<http::string_body> to_response(Answer a, unsigned version, bool keep_alive) {
  http::response<http::string_body> response{a.status, version};
  response.set(http::field::content_type, "application/json");
  response.set(http::field::cache_control, "no-store");
  if (!a.allow.empty()) response.set(http::field::allow, a.allow);
  if (a.challenge) response.set(http::field::www_authenticate, "Bearer");
  if (!a.request_id.empty()) response.set("X-Request-Id", a.request_id);
  response.body() = std::move(a.body);
  response.keep_alive(keep_alive);
  response.prepare_payload();
  return response;
}

asio::awaitable<void> serve_connection(tcp::socket socket, const ApiServices& services) {
  beast::error_code ec;
  const tcp::endpoint remote = socket.remote_endpoint(ec);
  if (ec) co_return;
  const core::IpAddress peer = proxy::to_ip_address(remote.address());
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(max_header_bytes);
    parser.body_limit(max_body_bytes);
    stream.expires_after(io_timeout);
    auto [read_error, n] = co_await http::async_read(stream, buffer, parser, tuple);
    if (read_error) {
      // What can still be told is told, then the connection is closed.
      std::optional<Answer> last;
      if (read_error == http::error::body_limit) {
        last = error_answer(http::status::payload_too_large, "body_too_large", "the body is larger than 64 KiB");
      } else if (read_error == http::error::header_limit) {
        last = error_answer(http::status::request_header_fields_too_large, "headers_too_large",
                            "the headers are larger than 16 KiB");
      } else if (read_error != http::error::end_of_stream && read_error != asio::error::eof &&
                 read_error != beast::error::timeout && read_error != asio::error::connection_reset) {
        last = error_answer(http::status::bad_request, "bad_request", "the request is not valid HTTP/1.1");
      }
      if (last) {
        auto response = to_response(std::move(*last), 11, false);
        stream.expires_after(io_timeout);
        co_await http::async_write(stream, response, tuple);
      }
      break;
    }
    Request& request = parser.get();
    const auto started = std::chrono::steady_clock::now();
    Answer a;
    try {
      const std::string request_id = new_request_id();
      a = co_await answer(request, peer, services, request_id);
      a.request_id = request_id;
    } catch (const std::exception& e) {
      core::log_error("api: request failed", {{"error", e.what()}});
      a = error_answer(http::status::internal_server_error, "internal_error", "the request failed; see keygate's log");
    }
    const std::string_view target = request.target();
    const auto endpoint = match_route(request.method_string(), target.substr(0, target.find('?'))).endpoint;
    const unsigned status_class = std::min(static_cast<unsigned>(a.status) / 100, 5u);
    auto response = to_response(std::move(a), request.version(), request.keep_alive());
    stream.expires_after(io_timeout);
    auto [write_error, m] = co_await http::async_write(stream, response, tuple);
    store::Metrics& metrics = store::metrics();
    metrics.api_responses[static_cast<std::size_t>(endpoint)][status_class].fetch_add(1, std::memory_order_relaxed);
    metrics.api_latency.observe_us(static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started).count()));
    if (write_error || !response.keep_alive()) break;
  }
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
}

}  // namespace

asio::awaitable<void> serve_api(tcp::acceptor& acceptor, const ApiServices& services) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(tuple);
    if (ec) {
      if (!acceptor.is_open() || ec == asio::error::operation_aborted) co_return;
      continue;
    }
    asio::co_spawn(acceptor.get_executor(), serve_connection(std::move(socket), services), asio::detached);
  }
}

}  // namespace keygate::api
