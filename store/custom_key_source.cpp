#include "store/custom_key_source.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <crypt.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <cstring>
#include <stdexcept>

#include "core/hex.hpp"
#include "core/log.hpp"
#include "store/metrics.hpp"
#include "store/pg_text.hpp"

namespace keygate::store {

namespace asio = boost::asio;

namespace {

asio::awaitable<std::vector<ColumnType>> read_columns(PgPool& pool, const std::string& table) {
  PgParams params;
  params.emplace_back(schema_part(table));
  params.emplace_back(table_part(table));
  PgResult result = co_await pool.query(columns_query(), std::move(params));
  if (!result.ok()) {
    throw std::runtime_error("store: cannot read the columns of " + table + " from PostgreSQL at " +
                             pool.address() + ": " + result.error());
  }
  std::vector<ColumnType> columns;
  for (int row = 0; row < result.rows(); ++row) {
    columns.push_back({std::string(result.get(row, 0)), std::string(result.get(row, 1)),
                       std::string(result.get(row, 2)), result.get(row, 3) == "true"});
  }
  co_return columns;
}

}  // namespace

asio::awaitable<ResolvedSchema> resolve_custom_schema(PgPool& pool, CustomSchema schema) {
  if (const std::string problem = check_schema(schema); !problem.empty()) throw std::invalid_argument(problem);
  std::vector<ColumnType> columns = co_await read_columns(pool, schema.table);
  std::string error;
  ResolvedSchema resolved = resolve_schema(schema, columns, error);
  if (!error.empty()) throw std::invalid_argument(error);
  if (!schema.usage_table.empty()) {
    std::vector<ColumnType> usage_columns = co_await read_columns(pool, schema.usage_table);
    if (std::string problem = check_usage_table(resolved, usage_columns); !problem.empty()) {
      throw std::invalid_argument(problem);
    }
  }
  co_return resolved;
}

bool bcrypt_matches(const std::string& key, const std::string& stored) {
  if (!(stored.starts_with("$2a$") || stored.starts_with("$2b$") || stored.starts_with("$2y$"))) return false;
  // crypt_data is ~32 KB: on the heap, not on a pool thread's stack.
  auto data = std::make_unique<crypt_data>();
  std::memset(data.get(), 0, sizeof(crypt_data));
  const char* computed = ::crypt_rn(key.c_str(), stored.c_str(), data.get(), sizeof(crypt_data));
  if (computed == nullptr) return false;
  const std::size_t length = std::strlen(computed);
  const bool same = length == stored.size() && CRYPTO_memcmp(computed, stored.data(), length) == 0;
  OPENSSL_cleanse(data.get(), sizeof(crypt_data));
  return same;
}

std::string bcrypt_hash(const std::string& key, int cost) {
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  if (::crypt_gensalt_rn("$2b$", static_cast<unsigned long>(cost), nullptr, 0, setting, sizeof setting) == nullptr) {
    throw std::runtime_error("bcrypt: cannot make a salt");
  }
  auto data = std::make_unique<crypt_data>();
  std::memset(data.get(), 0, sizeof(crypt_data));
  const char* hashed = ::crypt_rn(key.c_str(), setting, data.get(), sizeof(crypt_data));
  if (hashed == nullptr || hashed[0] == '*') throw std::runtime_error("bcrypt: cannot hash the key");
  std::string out(hashed);
  OPENSSL_cleanse(data.get(), sizeof(crypt_data));
  return out;
}

BcryptVerifier::BcryptVerifier(unsigned threads, unsigned max_waiting)
    : pool_(std::make_unique<asio::thread_pool>(threads)), max_waiting_(max_waiting) {}

BcryptVerifier::~BcryptVerifier() { pool_->join(); }

asio::awaitable<BcryptVerifier::Outcome> BcryptVerifier::verify(std::string key, std::string stored) {
  if (waiting_.fetch_add(1, std::memory_order_relaxed) >= max_waiting_) {
    waiting_.fetch_sub(1, std::memory_order_relaxed);
    co_return Outcome::busy;
  }
  const auto home = co_await asio::this_coro::executor;
  co_await asio::post(pool_->get_executor(), asio::use_awaitable);  // now on a pool thread
  const bool matched = bcrypt_matches(key, stored);
  OPENSSL_cleanse(key.data(), key.size());
  co_await asio::post(home, asio::use_awaitable);  // back on the worker
  waiting_.fetch_sub(1, std::memory_order_relaxed);
  co_return matched ? Outcome::match : Outcome::mismatch;
}

CustomKeySource::CustomKeySource(PgPool& pool, std::shared_ptr<const ResolvedSchema> schema,
                                 std::string pepper, BcryptVerifier* bcrypt)
    : pool_(pool),
      schema_(std::move(schema)),
      statement_{"keygate_find_custom_key", lookup_statement(*schema_)},
      pepper_(std::move(pepper)),
      bcrypt_(bcrypt) {}

std::string CustomKeySource::match_parameter(const KeyHash& hash, std::string_view presented_key) const {
  const CustomSchema& s = schema_->schema;
  auto encoded = [&](const std::uint8_t* bytes) {
    return schema_->credential_is_bytea ? format_pg_bytea(bytes, 32)
                                        : core::to_hex(std::span<const std::uint8_t>(bytes, 32));
  };
  switch (s.encoding) {
    case CredentialEncoding::sha256_hex:
    case CredentialEncoding::sha256_bytea: {
      if (pepper_.empty()) return encoded(hash.data());  // the lookup hash is SHA-256 already
      KeyHash digest{};
      ::SHA256(reinterpret_cast<const unsigned char*>(presented_key.data()), presented_key.size(), digest.data());
      return encoded(digest.data());
    }
    case CredentialEncoding::hmac_sha256: return encoded(hash.data());  // HMAC with keys.pepper
    case CredentialEncoding::bcrypt: return std::string(presented_key.substr(0, s.prefix_length));
    case CredentialEncoding::plain: return std::string(presented_key);
  }
  return {};
}

asio::awaitable<TierAnswer> CustomKeySource::find(const KeyHash& hash, std::string_view presented_key) {
  const CustomSchema& s = schema_->schema;
  PgParams params;
  params.emplace_back(match_parameter(hash, presented_key));
  PgQueryMetrics accounting;
  accounting.sent = &metrics().postgres_key_queries;
  accounting.latency = &metrics().postgres_latency;
  PgResult result = co_await pool_.query_prepared(statement_, std::move(params), accounting);
  TierAnswer answer;  // unavailable
  if (!result.ok()) {
    if (result.status() == PgStatus::query_error) {
      core::log_warn("key lookup failed in the custom table", {{"table", s.table}, {"error", result.error()}});
    }
    co_return answer;
  }
  const bool bcrypt = s.encoding == CredentialEncoding::bcrypt;
  if (!bcrypt && result.rows() > 1) {
    // One credential must name one key: refuse rather than pick one.
    core::log_warn("two rows of the key table hold the same credential; refusing it",
                   {{"table", s.table}, {"column", s.credential_column}});
    co_return answer;
  }
  for (int row = 0; row < result.rows(); ++row) {
    if (bcrypt) {
      if (bcrypt_ == nullptr) co_return answer;
      const auto verdict = co_await bcrypt_->verify(std::string(presented_key),
                                                    std::string(result.get(row, custom_row_credential)));
      if (verdict == BcryptVerifier::Outcome::busy) co_return answer;
      if (verdict == BcryptVerifier::Outcome::mismatch) continue;
    }
    CustomRow values;
    for (int column = 0; column < custom_row_columns; ++column) {
      values.values.push_back(result.get(row, column));
      values.null.push_back(result.is_null(row, column));
    }
    auto record = std::make_shared<KeyRecord>();
    std::string error;
    if (!decode_custom_row(*schema_, values, *record, error)) {
      core::log_warn("a row of the key table cannot be read; the key is refused",
                     {{"table", s.table}, {"problem", error}});
      co_return answer;
    }
    record->key_hash = hash;
    answer.status = TierAnswer::Status::found;
    answer.record = std::move(record);
    co_return answer;
  }
  answer.status = TierAnswer::Status::not_found;
  co_return answer;
}

}  // namespace keygate::store
