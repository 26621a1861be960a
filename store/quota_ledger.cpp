#include "store/quota_ledger.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <charconv>
#include <cstdio>

#include "core/log.hpp"
#include "store/pg_pool.hpp"

namespace keygate::store {
namespace asio = boost::asio;

namespace {

const PgStatement& load_statement() {
  static const PgStatement statement{
      "keygate_quota_load",
      "SELECT used FROM api_key_quota_usage "
      "WHERE api_key_id = $1::uuid AND period_start = to_timestamp($2::bigint)"};
  return statement;
}

// One upsert for a whole batch. A count only replaces a stored one of the same period when it
// is larger (several writers), and a newer period replaces an older one; keys deleted meanwhile
// are skipped by the join.
const PgStatement& flush_statement() {
  static const PgStatement statement{
      "keygate_quota_flush",
      "INSERT INTO api_key_quota_usage AS q (api_key_id, period_start, used) "
      "SELECT u.id, to_timestamp(u.start), u.used "
      "FROM unnest($1::uuid[], $2::bigint[], $3::bigint[]) AS u(id, start, used) "
      "JOIN api_keys k ON k.id = u.id "
      "ON CONFLICT (api_key_id) DO UPDATE SET "
      "used = CASE WHEN q.period_start = EXCLUDED.period_start "
      "THEN GREATEST(q.used, EXCLUDED.used) ELSE EXCLUDED.used END, "
      "period_start = EXCLUDED.period_start, updated_at = now() "
      "WHERE q.period_start <= EXCLUDED.period_start"};
  return statement;
}

void log_warning(const std::string& message) { core::log("warn", "quota: " + message); }

}  // namespace

PgQuotaLedger::PgQuotaLedger(asio::any_io_executor executor, PgPool& pool, QuotaLedgerOptions options)
    : executor_(executor), pool_(pool), options_(options), timer_(executor) {}

PgQuotaLedger::~PgQuotaLedger() {
  state_->destroyed = true;
  timer_.cancel();
}

void PgQuotaLedger::start() { asio::co_spawn(executor_, run(), asio::detached); }

void PgQuotaLedger::stop() {
  state_->stopping = true;
  timer_.cancel();
}

asio::awaitable<void> PgQuotaLedger::run() {
  const std::shared_ptr<LoopState> state = state_;
  for (;;) {
    timer_.expires_after(options_.flush_interval);
    co_await timer_.async_wait(asio::as_tuple(asio::use_awaitable));
    if (state->destroyed) co_return;  // `this` is gone
    const bool last = state->stopping;
    if (!pending_.empty()) co_await flush();
    if (last) co_return;
  }
}

asio::awaitable<std::optional<std::int64_t>> PgQuotaLedger::load(std::string key_id,
                                                                 std::int64_t period_start_s) {
  PgParams params;
  params.emplace_back(key_id);
  params.emplace_back(std::to_string(period_start_s));
  const PgResult result = co_await pool_.query_prepared(load_statement(), std::move(params));
  if (!result.ok()) {
    log_warning("could not load a quota count: " + result.error());
    co_return std::nullopt;
  }
  std::int64_t used = 0;
  if (result.rows() > 0) {
    const std::string_view text = result.get(0, 0);
    std::from_chars(text.data(), text.data() + text.size(), used);
  }
  // What this worker saw but has not written yet is newer than PostgreSQL's copy.
  if (const auto it = pending_.find(key_id);
      it != pending_.end() && it->second.period_start_s == period_start_s) {
    used = std::max(used, it->second.used);
  }
  co_return used;
}

void PgQuotaLedger::merge(std::unordered_map<std::string, Count>& into, const std::string& key_id,
                          Count count) {
  auto [it, inserted] = into.try_emplace(key_id, count);
  if (inserted) return;
  Count& have = it->second;
  if (count.period_start_s > have.period_start_s) {
    have = count;
  } else if (count.period_start_s == have.period_start_s) {
    have.used = std::max(have.used, count.used);
  }
}

void PgQuotaLedger::note(const std::string& key_id, std::int64_t period_start_s, std::int64_t used) {
  if (pending_.size() >= options_.max_pending && !pending_.contains(key_id)) return;
  merge(pending_, key_id, {period_start_s, used});
}

asio::awaitable<bool> PgQuotaLedger::flush() {
  if (pending_.empty()) co_return true;
  std::unordered_map<std::string, Count> batch;
  batch.swap(pending_);
  std::string ids = "{";
  std::string starts = "{";
  std::string useds = "{";
  for (const auto& [id, count] : batch) {
    if (ids.size() > 1) {
      ids += ',';
      starts += ',';
      useds += ',';
    }
    ids += id;  // a uuid: no character needs quoting
    starts += std::to_string(count.period_start_s);
    useds += std::to_string(count.used);
  }
  ids += '}';
  starts += '}';
  useds += '}';
  PgParams params;
  params.emplace_back(std::move(ids));
  params.emplace_back(std::move(starts));
  params.emplace_back(std::move(useds));
  const PgResult result = co_await pool_.query_prepared(flush_statement(), std::move(params));
  if (result.ok()) co_return true;
  if (result.status() == PgStatus::query_error) {
    // The statement itself failed (e.g. schema not migrated): retrying cannot help.
    log_warning("dropped " + std::to_string(batch.size()) +
                " quota counts: " + result.error());
    co_return false;
  }
  for (const auto& [id, count] : batch) merge(pending_, id, count);  // kept for the next flush
  co_return false;
}

}  // namespace keygate::store
