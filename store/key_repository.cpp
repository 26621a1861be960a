#include "store/key_repository.hpp"

#include "store/api_session.hpp"

#include "core/hex.hpp"
#include "store/key_rows.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>

namespace keygate::store {

namespace asio = boost::asio;

namespace {

using key_rows::all_columns;
using key_rows::from_micros;
using key_rows::parse_details;
using key_rows::parse_record;
using key_rows::parse_time;
using key_rows::record_columns;
using key_rows::to_int;

const PgStatement& find_by_hash_statement() {
  static const PgStatement statement{
      "keygate_find_key_by_hash",
      std::string("SELECT ") + record_columns + " FROM api_keys WHERE key_hash = $1::bytea"};
  return statement;
}

template <typename T>
RepoResult<T> from_failure(const PgResult& result) {
  RepoResult<T> out;
  out.error = result.error();
  switch (result.status()) {
    case PgStatus::connection_error:
    case PgStatus::timeout: out.status = RepoStatus::unavailable; break;
    case PgStatus::query_error:
    case PgStatus::ok:
      // Class 23: integrity constraints; class 22: a value PostgreSQL refuses.
      if (result.sqlstate().starts_with("23") || result.sqlstate().starts_with("22")) {
        out.status = RepoStatus::rejected;
      } else {
        out.status = RepoStatus::failed;
        if (result.sqlstate() == "42P01") out.error += " (run: keygate migrate up)";
      }
      break;
  }
  return out;
}

template <typename T>
RepoResult<T> with_status(RepoStatus status, std::string error) {
  RepoResult<T> out;
  out.status = status;
  out.error = std::move(error);
  return out;
}

template <typename T>
RepoResult<T> malformed_row(const PgPool& pool) {
  return with_status<T>(RepoStatus::failed,
                        "PostgreSQL at " + pool.address() + ": unexpected api_keys row");
}

// The answer of a statement naming one key (by id or by hash): its row, not_found with
// `missing`, or the failure.
RepoResult<KeyDetails> one_key(const PgResult& result, const PgPool& pool, std::string missing) {
  if (!result.ok()) return from_failure<KeyDetails>(result);
  if (result.rows() == 0) return with_status<KeyDetails>(RepoStatus::not_found, std::move(missing));
  RepoResult<KeyDetails> out;
  if (!parse_details(result, 0, out.value)) return malformed_row<KeyDetails>(pool);
  return out;
}

std::optional<std::string> optional_number(const auto& value) {
  if (!value) return std::nullopt;
  return std::to_string(*value);
}

}  // namespace

KeyRepository::KeyRepository(PgPool& pool) : pool_(pool) {}

KeyRepository::KeyRepository(PgPool& pool, ApiSession& session) : pool_(pool), session_(&session) {}

asio::awaitable<PgResult> KeyRepository::run(std::string sql, PgParams params) {
  if (session_ != nullptr) co_return co_await session_->query(std::move(sql), std::move(params));
  co_return co_await pool_.query(std::move(sql), std::move(params));
}

asio::awaitable<RepoResult<KeyRecord>> KeyRepository::find_by_hash(KeyHash hash) {
  PgParams params;
  params.emplace_back(format_pg_bytea(hash.data(), hash.size()));
  PgQueryMetrics accounting;
  accounting.sent = &metrics().postgres_key_queries;
  accounting.latency = &metrics().postgres_latency;
  PgResult result = co_await pool_.query_prepared(find_by_hash_statement(), std::move(params), accounting);
  if (!result.ok()) co_return from_failure<KeyRecord>(result);
  if (result.rows() == 0) co_return with_status<KeyRecord>(RepoStatus::not_found, "no such key");
  RepoResult<KeyRecord> out;
  if (!parse_record(result, 0, out.value)) co_return malformed_row<KeyRecord>(pool_);
  co_return out;
}

asio::awaitable<RepoResult<KeyDetails>> KeyRepository::create(NewKey key) {
  std::vector<std::string> networks;
  for (const auto& network : key.allowed_ips) networks.push_back(network.to_string());
  PgParams params;
  params.emplace_back(key.owner.type);
  params.emplace_back(key.owner.id);
  params.emplace_back(key.name);
  params.emplace_back(key.description);
  params.emplace_back(key.key_prefix);
  params.emplace_back(format_pg_bytea(key.key_hash.data(), key.key_hash.size()));
  params.emplace_back(format_pg_array(key.scopes));
  params.emplace_back(format_pg_array(networks));
  params.emplace_back(optional_number(key.rate_limit));
  params.emplace_back(optional_number(key.window_seconds));
  params.emplace_back(optional_number(key.quota));
  params.emplace_back(optional_number(key.quota_period_seconds));
  params.emplace_back(key.metadata_json);
  params.emplace_back(key.expires_in ? std::optional(std::to_string(key.expires_in->count())) : std::nullopt);
  params.emplace_back(key.created_by);
  const std::string sql =
      "INSERT INTO api_keys (owner_type, owner_id, name, description, key_prefix, key_hash, "
      "scopes, allowed_ips, rate_limit, window_seconds, quota, quota_period_seconds, metadata, "
      "expires_at, created_by) VALUES ($1, $2, $3, $4, $5, $6::bytea, $7::text[], $8::cidr[], "
      "$9::integer, $10::integer, $11::bigint, $12::integer, $13::jsonb, "
      "now() + $14::bigint * interval '1 millisecond', $15) RETURNING " + all_columns();

  PgResult result = co_await run(sql, std::move(params));
  if (!result.ok()) co_return from_failure<KeyDetails>(result);
  RepoResult<KeyDetails> out;
  if (result.rows() != 1 || !parse_details(result, 0, out.value)) co_return malformed_row<KeyDetails>(pool_);
  co_return out;
}

asio::awaitable<RepoResult<std::vector<KeyDetails>>> KeyRepository::list(std::optional<KeyOwner> owner) {
  PgParams params;
  params.emplace_back(owner ? std::optional(owner->type) : std::nullopt);
  params.emplace_back(owner ? std::optional(owner->id) : std::nullopt);
  PgResult result = co_await run(
      "SELECT " + all_columns() +
          " FROM api_keys WHERE ($1::text IS NULL OR (owner_type = $1 AND owner_id = $2))"
          " ORDER BY created_at, id",
      std::move(params));
  if (!result.ok()) co_return from_failure<std::vector<KeyDetails>>(result);
  RepoResult<std::vector<KeyDetails>> out;
  out.value.resize(static_cast<std::size_t>(result.rows()));
  for (int row = 0; row < result.rows(); ++row) {
    if (!parse_details(result, row, out.value[static_cast<std::size_t>(row)])) {
      co_return malformed_row<std::vector<KeyDetails>>(pool_);
    }
  }
  co_return out;
}

// The SQL condition of a status, as status_text (api/key_json.cpp) names a key's.
static const char* status_condition(KeyStatusFilter status) {
  switch (status) {
    case KeyStatusFilter::revoked: return "revoked_at IS NOT NULL";
    case KeyStatusFilter::inactive: return "revoked_at IS NULL AND NOT is_active";
    case KeyStatusFilter::expired: return "revoked_at IS NULL AND is_active AND expires_at <= now()";
    case KeyStatusFilter::active: break;
  }
  return "revoked_at IS NULL AND is_active AND (expires_at IS NULL OR expires_at > now())";
}

asio::awaitable<RepoResult<KeyPage>> KeyRepository::list_page(KeyPageRequest request) {
  PgParams params;
  params.emplace_back(request.owner ? std::optional(request.owner->type) : std::nullopt);
  params.emplace_back(request.owner ? std::optional(request.owner->id) : std::nullopt);
  params.emplace_back(request.after ? std::optional(std::to_string(request.after->created_at_micros)) : std::nullopt);
  params.emplace_back(request.after ? std::optional(request.after->id) : std::nullopt);
  params.emplace_back(std::to_string(request.limit + 1));
  std::string sql = "SELECT " + all_columns() +
                    " FROM api_keys WHERE ($1::text IS NULL OR (owner_type = $1 AND owner_id = $2))"
                    " AND ($3::bigint IS NULL OR (created_at, id) > "
                    "('epoch'::timestamptz + $3::bigint * interval '1 microsecond', $4::uuid))";
  if (request.status) sql += std::string(" AND ") + status_condition(*request.status);
  sql += " ORDER BY created_at, id LIMIT $5::integer";
  PgResult result = co_await run(std::move(sql), std::move(params));
  if (!result.ok()) co_return from_failure<KeyPage>(result);
  RepoResult<KeyPage> out;
  const std::size_t rows = static_cast<std::size_t>(result.rows());
  out.value.more = rows > request.limit;
  out.value.keys.resize(std::min(rows, request.limit));
  for (std::size_t row = 0; row < out.value.keys.size(); ++row) {
    if (!parse_details(result, static_cast<int>(row), out.value.keys[row])) co_return malformed_row<KeyPage>(pool_);
  }
  co_return out;
}

asio::awaitable<RepoResult<KeyDetails>> KeyRepository::show_by_hash(KeyHash hash) {
  PgParams params;
  params.emplace_back(format_pg_bytea(hash.data(), hash.size()));
  PgResult result =
      co_await run("SELECT " + all_columns() + " FROM api_keys WHERE key_hash = $1::bytea", std::move(params));
  co_return one_key(result, pool_, "no such key");
}

asio::awaitable<RepoResult<KeyDetails>> KeyRepository::mark_leaked(std::string id) {
  if (!core::is_uuid(id)) co_return with_status<KeyDetails>(RepoStatus::not_found, "no key with id " + id);
  PgParams params;
  params.emplace_back(id);
  PgResult result = co_await run("UPDATE api_keys SET leaked_at = coalesce(leaked_at, now()) WHERE id = $1::uuid "
                                 "RETURNING " + all_columns(),
                                 std::move(params));
  co_return one_key(result, pool_, "no key with id " + id);
}

asio::awaitable<RepoResult<KeyDetails>> KeyRepository::show(std::string id) {
  if (!core::is_uuid(id)) co_return with_status<KeyDetails>(RepoStatus::not_found, "no key with id " + id);
  PgParams params;
  params.emplace_back(id);
  PgResult result =
      co_await run("SELECT " + all_columns() + " FROM api_keys WHERE id = $1::uuid", std::move(params));
  co_return one_key(result, pool_, "no key with id " + id);
}

asio::awaitable<RepoResult<RevokedKey>> KeyRepository::revoke(std::string id) {
  if (!core::is_uuid(id)) co_return with_status<RevokedKey>(RepoStatus::not_found, "no key with id " + id);
  PgParams params;
  params.emplace_back(id);
  PgResult updated = co_await run(
      "UPDATE api_keys SET revoked_at = now(), is_active = false "
      "WHERE id = $1::uuid AND revoked_at IS NULL RETURNING " KEYGATE_MICROS("revoked_at"),
      params);
  if (!updated.ok()) co_return from_failure<RevokedKey>(updated);
  RepoResult<RevokedKey> out;
  if (updated.rows() == 1) {
    out.value.revoked_at = from_micros(to_int<std::int64_t>(updated.get(0, 0)).value_or(0));
    co_return out;
  }
  PgResult existing = co_await run(
      "SELECT " KEYGATE_MICROS("revoked_at") " FROM api_keys WHERE id = $1::uuid", std::move(params));
  if (!existing.ok()) co_return from_failure<RevokedKey>(existing);
  if (existing.rows() == 0) co_return with_status<RevokedKey>(RepoStatus::not_found, "no key with id " + id);
  out.value.already_revoked = true;
  out.value.revoked_at = from_micros(to_int<std::int64_t>(existing.get(0, 0)).value_or(0));
  co_return out;
}

asio::awaitable<RepoResult<KeyDetails>> KeyRepository::update(std::string id, KeyChanges changes) {
  if (!core::is_uuid(id)) co_return with_status<KeyDetails>(RepoStatus::not_found, "no key with id " + id);
  PgParams params;
  params.emplace_back(id);
  std::string set;
  auto assign = [&](const char* column, std::optional<std::string> value, const char* cast) {
    params.emplace_back(std::move(value));
    set += (set.empty() ? "" : ", ") + std::string(column) + " = $" + std::to_string(params.size()) + cast;
  };
  if (changes.name) assign("name", *changes.name, "");
  if (changes.description) assign("description", *changes.description, "");
  if (changes.scopes) assign("scopes", format_pg_array(*changes.scopes), "::text[]");
  if (changes.allowed_ips) {
    std::vector<std::string> networks;
    for (const auto& network : *changes.allowed_ips) networks.push_back(network.to_string());
    assign("allowed_ips", format_pg_array(networks), "::cidr[]");
  }
  if (changes.rate_limit) {
    const auto& limit = *changes.rate_limit;
    assign("rate_limit", limit ? std::optional(std::to_string(limit->first)) : std::nullopt, "::integer");
    assign("window_seconds", limit ? std::optional(std::to_string(limit->second)) : std::nullopt, "::integer");
  }
  if (changes.quota) assign("quota", optional_number(*changes.quota), "::bigint");
  if (changes.quota_period_seconds) assign("quota_period_seconds", optional_number(*changes.quota_period_seconds), "::integer");
  if (changes.expires_at) {
    std::optional<std::string> micros;
    if (*changes.expires_at) {
      micros = std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(
                                  (**changes.expires_at).time_since_epoch()).count());
    }
    params.emplace_back(std::move(micros));
    set += (set.empty() ? "" : ", ") + std::string("expires_at = to_timestamp($") + std::to_string(params.size()) +
           "::bigint / 1000000.0)";
  }
  if (changes.metadata_json) assign("metadata", *changes.metadata_json, "::jsonb");
  if (set.empty()) co_return co_await show(std::move(id));
  PgResult result = co_await run("UPDATE api_keys SET " + set + " WHERE id = $1::uuid RETURNING " + all_columns(),
                                 std::move(params));
  co_return one_key(result, pool_, "no key with id " + id);
}

asio::awaitable<RepoResult<bool>> KeyRepository::remove(std::string id) {
  if (!core::is_uuid(id)) co_return with_status<bool>(RepoStatus::not_found, "no key with id " + id);
  PgParams params;
  params.emplace_back(id);
  PgResult result = co_await run("DELETE FROM api_keys WHERE id = $1::uuid RETURNING id", std::move(params));
  if (!result.ok()) co_return from_failure<bool>(result);
  if (result.rows() == 0) co_return with_status<bool>(RepoStatus::not_found, "no key with id " + id);
  RepoResult<bool> out;
  out.value = true;
  co_return out;
}

namespace {

// rotate()'s statements, inside the transaction the caller opened (and ends).
asio::awaitable<RepoResult<RotatedKey>> rotate_in_transaction(PgConnection& connection, const PgPool& pool,
                                                              const std::string& id,
                                                              const std::string& new_key_prefix,
                                                              const KeyHash& new_key_hash,
                                                              std::chrono::milliseconds grace) {
  const auto timeout = pool.options().query_timeout;
  PgParams id_param;
  id_param.emplace_back(id);
  PgResult old = co_await connection.query(
      "SELECT revoked_at IS NOT NULL FROM api_keys WHERE id = $1::uuid FOR UPDATE", id_param, timeout);
  if (!old.ok()) co_return from_failure<RotatedKey>(old);
  if (old.rows() == 0) co_return with_status<RotatedKey>(RepoStatus::not_found, "no key with id " + id);
  if (old.get(0, 0) == "t") {
    co_return with_status<RotatedKey>(RepoStatus::rejected, "key " + id + " is revoked; create a new key instead");
  }

  PgParams insert_params;
  insert_params.emplace_back(id);
  insert_params.emplace_back(new_key_prefix);
  insert_params.emplace_back(format_pg_bytea(new_key_hash.data(), new_key_hash.size()));
  PgResult inserted = co_await connection.query(
      "INSERT INTO api_keys (owner_type, owner_id, name, description, key_prefix, key_hash, "
      "scopes, allowed_ips, rate_limit, window_seconds, quota, quota_period_seconds, metadata, "
      "expires_at, created_by) "
      "SELECT owner_type, owner_id, name, description, $2, $3::bytea, scopes, allowed_ips, "
      "rate_limit, window_seconds, quota, quota_period_seconds, metadata, "
      "now() + (expires_at - created_at), created_by FROM api_keys WHERE id = $1::uuid "
      "RETURNING " + all_columns(),
      std::move(insert_params), timeout);
  if (!inserted.ok()) co_return from_failure<RotatedKey>(inserted);

  // The new key inherits what the old one used of its quota: rotating is not a way to refill it.
  PgParams quota_params;
  quota_params.emplace_back(id);
  quota_params.emplace_back(format_pg_bytea(new_key_hash.data(), new_key_hash.size()));
  PgResult quota_copied = co_await connection.query(
      "INSERT INTO api_key_quota_usage (api_key_id, period_start, used) "
      "SELECT k.id, q.period_start, q.used FROM api_key_quota_usage q, api_keys k "
      "WHERE q.api_key_id = $1::uuid AND k.key_hash = $2::bytea",
      std::move(quota_params), timeout);
  if (!quota_copied.ok()) co_return from_failure<RotatedKey>(quota_copied);

  PgParams expire_params;
  expire_params.emplace_back(id);
  expire_params.emplace_back(std::to_string(grace.count()));
  PgResult expired = co_await connection.query(
      "UPDATE api_keys SET expires_at = least(expires_at, now() + $2::bigint * interval '1 millisecond') "
      "WHERE id = $1::uuid RETURNING " KEYGATE_MICROS("expires_at"),
      std::move(expire_params), timeout);
  if (!expired.ok()) co_return from_failure<RotatedKey>(expired);

  RepoResult<RotatedKey> out;
  out.value.previous_id = id;
  if (inserted.rows() != 1 || !parse_details(inserted, 0, out.value.new_key) ||
      !parse_time(expired, 0, 0, out.value.previous_expires_at)) {
    co_return malformed_row<RotatedKey>(pool);
  }
  co_return out;
}

}  // namespace

asio::awaitable<RepoResult<RotatedKey>> KeyRepository::rotate(std::string id, std::string new_key_prefix,
                                                              KeyHash new_key_hash,
                                                              std::chrono::milliseconds grace) {
  if (!core::is_uuid(id)) co_return with_status<RotatedKey>(RepoStatus::not_found, "no key with id " + id);
  if (session_ != nullptr) {  // already in the session's transaction, as keygate_api
    co_return co_await rotate_in_transaction(session_->connection(), pool_, id, new_key_prefix, new_key_hash, grace);
  }
  PgLease lease = co_await pool_.acquire();
  if (!lease.ok()) co_return from_failure<RotatedKey>(PgResult::failure(lease.status(), lease.error()));
  const auto timeout = pool_.options().query_timeout;
  PgResult begun = co_await lease->execute("BEGIN", timeout);
  if (!begun.ok()) co_return from_failure<RotatedKey>(begun);
  RepoResult<RotatedKey> out =
      co_await rotate_in_transaction(*lease, pool_, id, new_key_prefix, new_key_hash, grace);
  // On a broken connection ROLLBACK fails too; the pool then discards the connection.
  PgResult ended = co_await lease->execute(out.ok() ? "COMMIT" : "ROLLBACK", timeout);
  if (out.ok() && !ended.ok()) co_return from_failure<RotatedKey>(ended);
  co_return out;
}

asio::awaitable<TierAnswer> PgKeySource::find(const KeyHash& hash, std::string_view /*presented_key*/) {
  RepoResult<KeyRecord> found = co_await repository_.find_by_hash(hash);
  TierAnswer row;
  switch (found.status) {
    case RepoStatus::ok:
      row.status = TierAnswer::Status::found;
      row.record = std::make_shared<KeyRecord>(std::move(found.value));
      break;
    case RepoStatus::not_found: row.status = TierAnswer::Status::not_found; break;
    default: row.status = TierAnswer::Status::unavailable; break;
  }
  co_return row;
}

}  // namespace keygate::store
