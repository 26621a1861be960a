#pragma once
// store.schema: custom on the request path: KeyLookup's source of truth is the operator's own
// table, read with the statement store/custom_schema.hpp builds from the mapping.
//
// bcrypt (seed 003): the row is found by the key's prefix, then bcrypt verifies the key
// against each candidate on a small thread pool, off the workers' event loops. Only the
// first request for a key pays that (~50-100 ms at cost 10-12): the verified record is cached
// in L1 and Redis under the key's SHA-256 (or HMAC) like any other, so a later request with
// the same key is a hash lookup. That cache is as safe as the table: an entry is reachable
// only by presenting a key whose hash equals the verified key's, and SHA-256 has no known
// second preimage. A key that fails bcrypt is cached as absent for cache.negative_ttl.
#include <boost/asio/awaitable.hpp>

#include <atomic>
#include <memory>
#include <string>

#include "store/custom_schema.hpp"
#include "store/key_lookup.hpp"
#include "store/pg_pool.hpp"

namespace boost::asio {
class thread_pool;
}

namespace keygate::store {

// Reads the table's column types from information_schema and checks the mapping against
// them. Throws std::invalid_argument with one line naming the column when the table cannot
// serve as a key table, std::runtime_error naming PostgreSQL when it cannot be asked.
boost::asio::awaitable<ResolvedSchema> resolve_custom_schema(PgPool& pool, CustomSchema schema);

// Verifies keys against bcrypt hashes on its own threads; shared by every worker.
class BcryptVerifier {
 public:
  // `threads` verifications run at once; beyond `max_waiting` queued, verify() answers
  // `busy` (a flood of wrong keys with a valid prefix must not queue without bound).
  BcryptVerifier(unsigned threads, unsigned max_waiting);
  ~BcryptVerifier();

  enum class Outcome { match, mismatch, busy };
  // Resumes on the caller's executor. `key` and `stored` are copied before suspending.
  boost::asio::awaitable<Outcome> verify(std::string key, std::string stored);

 private:
  std::unique_ptr<boost::asio::thread_pool> pool_;
  std::atomic<unsigned> waiting_{0};
  unsigned max_waiting_;
};

// One bcrypt check (libxcrypt's crypt_rn), compared in constant time. Blocks for the hash's
// cost: call it off the event loops.
bool bcrypt_matches(const std::string& key, const std::string& stored);
// A new $2b$ hash of `key` at `cost` (4..31), for `keygate keys create`; throws
// std::runtime_error if libxcrypt cannot make one.
std::string bcrypt_hash(const std::string& key, int cost);

class CustomKeySource final : public KeySource {
 public:
  // `pepper` is keys.pepper (HMAC encodings need it); `bcrypt` may be null unless the
  // encoding is bcrypt.
  CustomKeySource(PgPool& pool, std::shared_ptr<const ResolvedSchema> schema, std::string pepper,
                  BcryptVerifier* bcrypt);
  boost::asio::awaitable<TierAnswer> find(const KeyHash& hash, std::string_view presented_key) override;

 private:
  // The value the credential column (or, for bcrypt, the prefix column) is matched against.
  std::string match_parameter(const KeyHash& hash, std::string_view presented_key) const;

  PgPool& pool_;
  std::shared_ptr<const ResolvedSchema> schema_;
  PgStatement statement_;
  std::string pepper_;
  BcryptVerifier* bcrypt_;
};

}  // namespace keygate::store
