#pragma once
// api_keys in PostgreSQL: the request path's lookup by hash, and the operator's create, list,
// show, revoke and rotate. Takes ready hashes and parsed values (key generation and hashing
// live in authz/); never sees a full key.
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "store/key_lookup.hpp"
#include "store/key_record.hpp"
#include "store/pg_pool.hpp"

namespace keygate::store {

enum class RepoStatus {
  ok,
  not_found,    // no such key (an id that is not a uuid is simply not found)
  rejected,     // the change breaks a rule: a constraint, or rotating a revoked key
  unavailable,  // PostgreSQL unreachable or too slow
  failed,       // any other SQL error (e.g. the schema is not migrated)
};

template <typename T>
struct RepoResult {
  RepoStatus status = RepoStatus::ok;
  T value{};
  std::string error;  // for people; names PostgreSQL, never a key
  bool ok() const { return status == RepoStatus::ok; }
};

struct KeyOwner {
  std::string type;  // "user"
  std::string id;    // "42"
};

// What `keys create` stores.
struct NewKey {
  KeyOwner owner;
  std::string name;
  std::optional<std::string> description;
  std::string key_prefix;  // the first 12 characters, for display
  KeyHash key_hash{};
  std::vector<std::string> scopes;
  std::vector<core::IpNetwork> allowed_ips;
  std::optional<int> rate_limit;  // with window_seconds, or neither
  std::optional<int> window_seconds;
  std::optional<std::int64_t> quota;
  std::optional<int> quota_period_seconds;
  std::optional<std::chrono::milliseconds> expires_in;  // from creation (server clock)
  std::string metadata_json = "{}";
  std::optional<std::string> created_by;
};

// A whole row, for list/show (KeyRecord plus what only people read).
struct KeyDetails {
  KeyRecord record;
  std::string key_prefix;
  std::optional<std::string> description;
  std::string metadata_json;
  TimePoint created_at;
  TimePoint updated_at;
  std::optional<TimePoint> last_used_at;
  std::optional<std::string> created_by;
  std::optional<TimePoint> leaked_at;  // reported leaked (POST /v1/leaks with leaks.action: flag)
};

// Where a page of a listing starts: after the key with this creation time and id (keyset
// pagination on (created_at, id), so a page costs the same however deep it is).
struct KeyCursor {
  std::int64_t created_at_micros = 0;
  std::string id;  // a uuid
};

enum class KeyStatusFilter { active, inactive, expired, revoked };

// One page of keys, oldest first.
struct KeyPageRequest {
  std::optional<KeyOwner> owner;           // every owner's when empty
  std::optional<KeyStatusFilter> status;   // every status when empty
  std::optional<KeyCursor> after;          // from the first key when empty
  std::size_t limit = 100;
};

struct KeyPage {
  std::vector<KeyDetails> keys;  // at most limit
  bool more = false;             // keys follow the last one
};

// What PATCH /v1/keys/{id} changes: each field absent (kept) or set; an inner nullopt clears.
struct KeyChanges {
  std::optional<std::string> name;
  std::optional<std::optional<std::string>> description;
  std::optional<std::vector<std::string>> scopes;
  std::optional<std::vector<core::IpNetwork>> allowed_ips;
  std::optional<std::optional<std::pair<int, int>>> rate_limit;  // (requests, window seconds)
  std::optional<std::optional<std::int64_t>> quota;
  std::optional<std::optional<int>> quota_period_seconds;
  std::optional<std::optional<TimePoint>> expires_at;
  std::optional<std::string> metadata_json;
};

struct RevokedKey {
  bool already_revoked = false;  // revoking twice is not an error
  TimePoint revoked_at;
};

struct RotatedKey {
  KeyDetails new_key;
  std::string previous_id;
  std::optional<TimePoint> previous_expires_at;  // now + grace, or earlier if it was earlier
};

class ApiSession;

class KeyRepository {
 public:
  explicit KeyRepository(PgPool& pool);
  // The same statements inside one owner-scoped API transaction (store/api_session.hpp): as
  // keygate_api, under the row-level security policies, committed or rolled back by its owner.
  KeyRepository(PgPool& pool, ApiSession& session);

  // The request path: one prepared SELECT by key_hash (counted in
  // metrics().postgres_key_queries and postgres_latency).
  boost::asio::awaitable<RepoResult<KeyRecord>> find_by_hash(KeyHash hash);

  boost::asio::awaitable<RepoResult<KeyDetails>> create(NewKey key);
  // Oldest first; every key when `owner` is empty.
  boost::asio::awaitable<RepoResult<std::vector<KeyDetails>>> list(std::optional<KeyOwner> owner);
  // One page in SQL (limit + 1 rows read, to know whether more follow).
  boost::asio::awaitable<RepoResult<KeyPage>> list_page(KeyPageRequest request);
  boost::asio::awaitable<RepoResult<KeyDetails>> show(std::string id);
  // The whole row of the key with this hash, whatever its status (leak reports).
  boost::asio::awaitable<RepoResult<KeyDetails>> show_by_hash(KeyHash hash);
  // Sets leaked_at = now() unless already set; the key stays as it was otherwise.
  boost::asio::awaitable<RepoResult<KeyDetails>> mark_leaked(std::string id);
  // Sets revoked_at = now() and is_active = false unless already revoked.
  boost::asio::awaitable<RepoResult<RevokedKey>> revoke(std::string id);
  // One UPDATE of the fields `changes` sets; not_found for no such key, rejected when the
  // table's rules refuse the result (e.g. an expiry before the key's creation).
  boost::asio::awaitable<RepoResult<KeyDetails>> update(std::string id, KeyChanges changes);
  // DELETE of the key (its usage and quota rows go with it); not_found for no such key.
  boost::asio::awaitable<RepoResult<bool>> remove(std::string id);
  // One transaction: a new key copying owner, name, description, scopes, limits, allowed IPs,
  // quota and metadata (and the old key's lifetime, counted from now), and the old key's
  // expires_at = least(expires_at, now() + grace). A revoked key cannot be rotated.
  boost::asio::awaitable<RepoResult<RotatedKey>> rotate(std::string id, std::string new_key_prefix,
                                                        KeyHash new_key_hash,
                                                        std::chrono::milliseconds grace);

 private:
  // One statement: in the session when there is one, else on a pooled connection.
  boost::asio::awaitable<PgResult> run(std::string sql, PgParams params);

  PgPool& pool_;
  ApiSession* session_ = nullptr;
};

// KeyLookup's source of truth backed by a KeyRepository (on the same worker's executor).
class PgKeySource final : public KeySource {
 public:
  explicit PgKeySource(KeyRepository& repository) : repository_(repository) {}
  boost::asio::awaitable<TierAnswer> find(const KeyHash& hash, std::string_view presented_key) override;

 private:
  KeyRepository& repository_;
};

}  // namespace keygate::store
