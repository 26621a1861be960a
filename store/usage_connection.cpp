#include "store/usage_connection.hpp"

#include <boost/asio/this_coro.hpp>

#include <algorithm>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "core/log.hpp"
#include "core/text.hpp"
#include "store/usage_custom.hpp"
#include "store/usage_encoding.hpp"

namespace keygate::store {

namespace asio = boost::asio;
using std::chrono::milliseconds;
using Written = UsageConnection::Written;

UsageConnection::UsageConnection(const UsageWriterOptions& options, std::uint64_t process_id)
    : options_(options),
      custom_(options.custom ? &*options.custom : nullptr),
      process_id_(process_id),
      partitions_(options.partitions_ahead_days, options.retention_days) {}

UsageConnection::~UsageConnection() = default;

bool UsageConnection::connected() const { return pg_ && pg_->connected(); }

bool UsageConnection::maintenance_due(SteadyTime now) const {
  return custom_ == nullptr && partitions_.maintenance_due(usage_today(), now);
}

void UsageConnection::close() {
  if (pg_) pg_->close();
}

void UsageConnection::drop() {
  close();
  partitions_.forget();
}

namespace {

// What is left before `deadline`, at most `cap` and at least 1 ms.
milliseconds time_left(UsageConnection::SteadyTime deadline, milliseconds cap) {
  const auto left = std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
  return std::clamp(left, milliseconds(1), cap);
}

}  // namespace

milliseconds UsageConnection::time_left(SteadyTime deadline) const {
  return store::time_left(deadline, options_.query_timeout);
}

void UsageConnection::note_failure(const std::string& what) {
  if (what != last_failure_) {
    core::log_warn("usage: cannot write usage events to PostgreSQL yet; keeping them and retrying",
                   {{"detail", what}});
    last_failure_ = what;
  }
}

Written UsageConnection::stored(std::uint64_t rows) {
  if (!last_failure_.empty()) {
    core::log_info("usage: writing usage events to PostgreSQL again");
    last_failure_.clear();
  }
  return {Written::Outcome::stored, rows, {}};
}

Written UsageConnection::failed(const PgResult& result) {
  note_failure(result.error());
  return {Written::Outcome::retry, 0, {}};
}

// ---- connecting and the day partitions ------------------------------------------------------

asio::awaitable<bool> UsageConnection::ensure_ready(SteadyTime deadline) {
  if (!connected()) {
    const bool opened = co_await connect(deadline);
    if (!opened) co_return false;
  }
  if (maintenance_due(std::chrono::steady_clock::now())) {
    if (!co_await maintain_partitions(deadline)) {
      if (!pg_->connected()) co_return false;
      partitions_.postpone_maintenance(std::chrono::steady_clock::now());
    }
  }
  co_return true;
}

asio::awaitable<bool> UsageConnection::connect(SteadyTime deadline) {
  if (!pg_) pg_ = std::make_unique<PgConnection>(co_await asio::this_coro::executor);
  PgResult connected = co_await pg_->connect(options_.dsn, store::time_left(deadline, options_.connect_timeout));
  if (!connected.ok()) {
    note_failure(connected.error());
    co_return false;
  }
  if (custom_ != nullptr) co_return true;  // no staging table, no partitions
  std::string staging = "CREATE TEMP TABLE IF NOT EXISTS keygate_usage_staging ("
                        "event_id uuid, api_key_id uuid, endpoint text, method text, "
                        "status_code integer, ip_address inet, user_agent text, "
                        "response_time_us integer, created_at timestamptz) ON COMMIT DELETE ROWS";
  PgResult created = co_await pg_->execute(std::move(staging), time_left(deadline));
  if (!created.ok()) {
    note_failure(created.error());
    drop();
    co_return false;
  }
  partitions_.reset();  // a new session: read what exists, and maintain at once
  co_return true;
}

asio::awaitable<bool> UsageConnection::maintain_partitions(SteadyTime deadline) {
  const std::int32_t today = usage_today();
  partitions_.forget();  // re-read what exists
  if (!co_await ensure_partitions(partitions_.days_ahead(today), deadline)) co_return false;
  const std::vector<std::int32_t> old = partitions_.days_past_retention(today);
  if (!old.empty()) {
    PgResult dropped = co_await pg_->execute(drop_usage_partitions_sql(old), time_left(deadline));
    if (!dropped.ok()) {
      core::log_error("usage: could not drop partitions past retention", {{"detail", dropped.error()}});
      co_return false;
    }
    core::log_info("usage: dropped partitions past retention", {{"detail", usage_partition_list(old)}});
    partitions_.dropped(old);
  }
  partitions_.maintained(today);
  co_return true;
}

asio::awaitable<bool> UsageConnection::ensure_partitions(const std::set<std::int32_t>& days,
                                                         SteadyTime deadline) {
  if (partitions_.unknown()) {
    PgResult existing = co_await pg_->execute(std::string(usage_partitions_query), time_left(deadline));
    if (!existing.ok()) {
      note_failure(existing.error());
      co_return false;
    }
    std::vector<std::string> names;
    for (int r = 0; r < existing.rows(); ++r) names.emplace_back(existing.get(r, 0));
    partitions_.learn(names);
  }
  const std::vector<std::int32_t> missing = partitions_.missing(days);
  if (missing.empty()) co_return true;
  PgResult result = co_await pg_->execute(create_usage_partitions_sql(missing), time_left(deadline));
  if (!result.ok()) {
    note_failure(result.error());
    co_return false;
  }
  partitions_.created(missing);
  co_return true;
}

// ---- a batch --------------------------------------------------------------------------------

asio::awaitable<Written> UsageConnection::write(UsageBatch& batch, SteadyTime deadline) {
  if (batch.lines() == 0) co_return stored(0);
  if (custom_ != nullptr) co_return co_await write_custom(batch, deadline);
  if (!partitions_.missing(batch.days).empty()) {
    // A statement of its own: `a && co_await b` in a condition crashes g++ 12 here.
    const bool created = co_await ensure_partitions(batch.days, deadline);
    if (!created) {
      if (!pg_->connected()) drop();
      co_return Written{};  // retry (the failure is noted)
    }
  }
  if (batch.direct()) co_return co_await write_direct(batch, deadline);
  co_return co_await write_staged(batch, deadline);
}

asio::awaitable<Written> UsageConnection::write_direct(UsageBatch& batch, SteadyTime deadline) {
  // The fast path, for a batch never sent before: in one transaction, lock its keys, then one
  // binary COPY straight into api_key_usage. It needs no staging table: if anything fails
  // before the COMMIT is sent, nothing of the batch is committed (PostgreSQL rolls back a
  // refused statement's transaction, and a broken connection's), so the batch may go again
  // as it is. Only when the COMMIT was sent and no answer came (the connection broke or
  // timed out) is the outcome unknown; from then on the batch takes the staging path,
  // whose ON CONFLICT DO NOTHING on the event ids makes a second write of a committed row a
  // no-op, like every replay from the spill file. (A direct retry could not double a row
  // either, the event id being the primary key: it would be refused, costing a COPY.) This
  // spares PostgreSQL the staging table's COPY and the INSERT..SELECT's second pass over
  // each row (issue #5: PostgreSQL's CPU per usage row).
  //
  // The keys: api_key_usage has no foreign key to api_keys (its per-row check was half of
  // PostgreSQL's CPU per row; migration 0004). Instead each key of the batch is locked once
  // (FOR KEY SHARE, as the foreign key's check did per row), so a concurrent DELETE waits
  // for this COMMIT and its trigger then deletes these rows too, and the rows of a key that
  // is already gone are left out, as the staging path's EXISTS does.
  PgConnection& c = *pg_;
  const std::vector<std::string> keys = usage_batch_key_ids(batch);
  bool commit_sent = false;
  std::uint64_t copied_rows = 0;
  PgResult step = co_await c.execute("BEGIN", time_left(deadline));
  if (step.ok()) {
    PgParams params;
    params.emplace_back(format_pg_array(keys));
    step = co_await c.query("SELECT id FROM api_keys WHERE id = ANY($1::uuid[]) FOR KEY SHARE",
                            std::move(params), time_left(deadline));
  }
  if (step.ok()) {
    std::unordered_set<std::string> existing;
    for (int r = 0; r < step.rows(); ++r) existing.emplace(step.get(r, 0));
    std::string data;
    data.reserve(batch.events.size() * 256 + 32);
    append_usage_binary_header(data);
    std::size_t rows = 0;
    for (const UsageEvent& e : batch.events) {
      if (existing.size() != keys.size() && !existing.contains(core::to_lower_ascii(e.key_id.view()))) continue;
      append_usage_binary_row(data, e, process_id_);
      ++rows;
    }
    append_usage_binary_trailer(data);
    if (rows > 0) {
      std::string copy = "COPY api_key_usage (" + std::string(usage_row_columns) + ") FROM STDIN (FORMAT binary)";
      step = co_await c.copy_in(std::move(copy), std::move(data), time_left(deadline));
      copied_rows = step.ok() ? step.affected_rows() : 0;
    }
  }
  if (step.ok()) {
    commit_sent = true;
    step = co_await c.execute("COMMIT", time_left(deadline));
  }
  if (step.ok()) co_return stored(copied_rows);
  if (step.status() != PgStatus::query_error) {
    drop();
    if (commit_sent) batch.stage(process_id_);  // the outcome is unknown
    co_return failed(step);
  }
  // Refused, so nothing was committed: leave the connection clean, then decide.
  if (c.connected()) {
    PgResult rolled_back = co_await c.execute("ROLLBACK", time_left(deadline));
    if (!rolled_back.ok()) drop();
  }
  if (!is_usage_row_error(step.sqlstate())) {
    if (is_missing_partition(step.sqlstate())) partitions_.forget();  // look again
    co_return failed(step);
  }
  // A row PostgreSQL refuses: the staging path isolates it.
  batch.stage(process_id_);
  co_return Written{Written::Outcome::restaged, 0, {}};
}

asio::awaitable<Written> UsageConnection::write_staged(UsageBatch& batch, SteadyTime deadline) {
  PgConnection& c = *pg_;
  PgResult result = co_await c.execute("BEGIN", time_left(deadline));
  if (result.ok()) {
    std::string copy = "COPY keygate_usage_staging (" + std::string(usage_line_columns) + ") FROM STDIN";
    result = co_await c.copy_in(std::move(copy), batch.data, time_left(deadline));
  }
  std::uint64_t inserted = 0;
  if (result.ok()) {
    // Locks the batch's keys first, as the direct path does (see there).
    std::string insert =
        "SELECT 1 FROM api_keys k WHERE k.id IN (SELECT api_key_id FROM keygate_usage_staging) "
        "FOR KEY SHARE OF k; "
        "INSERT INTO api_key_usage (" + std::string(usage_row_columns) + ") "
        "SELECT s.event_id, s.api_key_id, s.endpoint, s.method, s.status_code, s.ip_address, "
        "s.user_agent, ((s.response_time_us::bigint + 500) / 1000)::integer, s.response_time_us, "
        "s.created_at "
        "FROM keygate_usage_staging s "
        "WHERE EXISTS (SELECT 1 FROM api_keys k WHERE k.id = s.api_key_id) "
        "ON CONFLICT DO NOTHING";
    result = co_await c.execute(std::move(insert), time_left(deadline));
    inserted = result.ok() ? result.affected_rows() : 0;
  }
  if (result.ok()) result = co_await c.execute("COMMIT", time_left(deadline));
  if (result.ok()) co_return stored(inserted);

  // Failed: nothing of this batch is committed (or the COMMIT's fate is unknown, which the
  // event ids make harmless). Leave the connection clean, then decide.
  if (result.status() == PgStatus::query_error && c.connected()) {
    PgResult rolled_back = co_await c.execute("ROLLBACK", time_left(deadline));
    if (!rolled_back.ok()) drop();
  } else {
    drop();
  }
  if (result.status() != PgStatus::query_error || !is_usage_row_error(result.sqlstate())) {
    if (is_missing_partition(result.sqlstate())) partitions_.forget();  // look again, then retry
    co_return failed(result);
  }
  // A row the server refuses (a hand-edited spill line, a key deleted meanwhile).
  co_return Written{Written::Outcome::refused, 0, result.error()};
}

namespace {

// Any data exception or integrity violation: on a custom table, 23514 is a CHECK constraint,
// not a missing partition.
bool is_custom_row_error(std::string_view sqlstate) {
  return sqlstate.size() == 5 && (sqlstate.starts_with("22") || sqlstate.starts_with("23"));
}

}  // namespace

asio::awaitable<Written> UsageConnection::write_custom(UsageBatch& batch, SteadyTime deadline) {
  // The operator's table has no event id to make a second write a no-op, so there is one path
  // for every batch, and a COMMIT without an answer is retried as it is (usage_custom.hpp:
  // at-least-once). The transaction around the COPY narrows the doubt to the COMMIT: a failure
  // before it was sent commits nothing, so only then is the retry counted as possibly doubled.
  PgConnection& c = *pg_;
  bool commit_sent = false;
  std::uint64_t copied_rows = 0;
  PgResult step = co_await c.execute("BEGIN", time_left(deadline));
  if (step.ok()) {
    step = co_await c.copy_in(custom_usage_copy_sql(*custom_), batch.data, time_left(deadline));
    copied_rows = step.ok() ? step.affected_rows() : 0;
  }
  if (step.ok()) {
    commit_sent = true;
    step = co_await c.execute("COMMIT", time_left(deadline));
  }
  if (step.ok()) co_return stored(copied_rows);
  if (step.status() != PgStatus::query_error) {
    drop();
    Written retry = failed(step);
    retry.commit_unknown = commit_sent;
    co_return retry;
  }
  // Refused (a COMMIT refused too, by a deferred constraint), so nothing was committed.
  if (c.connected()) {
    PgResult rolled_back = co_await c.execute("ROLLBACK", time_left(deadline));
    if (!rolled_back.ok()) drop();
  }
  if (!is_custom_row_error(step.sqlstate())) co_return failed(step);  // the table missing, ...
  co_return Written{Written::Outcome::refused, 0, step.error()};
}

// ---- last_used_at ---------------------------------------------------------------------------

asio::awaitable<UsageConnection::LastUsedOutcome> UsageConnection::update_last_used(
    const LastUsedTimes::Rows& rows, SteadyTime deadline) {
  if (!pg_) co_return LastUsedOutcome::failed;
  PgParams params;
  params.emplace_back(format_pg_array(rows.key_ids));
  params.emplace_back(format_pg_array(rows.times));
  std::string update =
      custom_ != nullptr
          ? custom_last_used_sql(*custom_)
          : "UPDATE api_keys AS k SET last_used_at = v.used_at "
            "FROM unnest($1::uuid[], $2::timestamptz[]) AS v(id, used_at) "
            "WHERE k.id = v.id AND (k.last_used_at IS NULL OR k.last_used_at < v.used_at)";
  PgResult result = co_await pg_->query(std::move(update), std::move(params), time_left(deadline));
  if (!result.ok()) {
    if (result.status() != PgStatus::query_error) drop();
    if (custom_ != nullptr && result.status() == PgStatus::query_error &&
        is_custom_row_error(result.sqlstate())) {
      core::log_error("usage: PostgreSQL refuses the last-used times of these keys; not sent again",
                      {{"detail", result.error()}});
      co_return LastUsedOutcome::refused;
    }
    note_failure(result.error());
    co_return LastUsedOutcome::failed;
  }
  co_return LastUsedOutcome::updated;
}

}  // namespace keygate::store
