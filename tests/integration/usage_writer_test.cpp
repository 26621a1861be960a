// The usage writer against a real PostgreSQL with the real schema, each case on a scratch
// database: rows and fields, retries without duplicates, the spill file and its replay, the
// drain at shutdown, last_used_at coalescing and the day partitions.
#include <doctest/doctest.h>

#include <boost/asio/this_coro.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "store/metrics.hpp"
#include "store/migrator.hpp"
#include "store/usage_queue.hpp"
#include "store/usage_writer.hpp"
#include "support/run_coro.hpp"
#include "support/scratch_database.hpp"

namespace asio = boost::asio;
using namespace std::chrono_literals;
using keygate::store::IpAddress;
using keygate::store::metrics;
using keygate::store::PgConnection;
using keygate::store::UsageFacts;
using keygate::store::UsageQueue;
using keygate::store::UsageWriter;
using keygate::store::UsageWriterOptions;
using keygate::test::run_coro;
using keygate::test::run_sql;
using keygate::test::ScratchDatabase;

namespace {

// A migrated scratch database with one key, and a spill folder of its own.
struct UsageDatabase : ScratchDatabase {
  std::string key_id;
  std::filesystem::path folder;

  UsageDatabase() {
    migrate_up();
    key_id = std::string(new_key().get(0, 0));
    std::random_device random;
    folder = std::filesystem::temp_directory_path() / ("kg-usage-test-" + std::to_string(random()));
    std::filesystem::create_directories(folder);
  }
  ~UsageDatabase() {
    std::error_code ignored;
    std::filesystem::remove_all(folder, ignored);
  }

  keygate::store::PgResult new_key() const {
    return sql(
        "INSERT INTO api_keys (owner_type, owner_id, name, key_prefix, key_hash) "
        "VALUES ('user', '1', 'usage', 'kg_test_abcd', "
        "decode(md5(random()::text) || md5(random()::text), 'hex')) RETURNING id");
  }

  long long number(const std::string& query) const { return std::stoll(std::string(sql(query).get(0, 0))); }
  long long rows() const { return number("SELECT count(*) FROM api_key_usage"); }
  long long distinct_events() const { return number("SELECT count(DISTINCT event_id) FROM api_key_usage"); }

  UsageWriterOptions options() const {
    UsageWriterOptions o;
    o.dsn = dsn();
    o.connect_timeout = 2s;
    o.query_timeout = 5s;
    o.batch_size = 500;
    o.flush_interval = 50ms;
    o.queue_size = 100000;
    o.spill_path = (folder / "usage.spill").string();
    o.retry_min = 20ms;
    o.retry_max = 200ms;
    return o;
  }
  std::uintmax_t spill_size() const {
    std::error_code ec;
    const auto size = std::filesystem::file_size(folder / "usage.spill", ec);
    return ec ? 0 : size;
  }
  // Keeps every new session out (the superuser too): PostgreSQL as seen by a client that
  // cannot reach it. Existing sessions are ended.
  void refuse_connections() const {
    run_sql(keygate::test::postgres_dsn(), "ALTER DATABASE " + name() + " ALLOW_CONNECTIONS false");
    terminate_sessions();
  }
  void allow_connections() const {
    run_sql(keygate::test::postgres_dsn(), "ALTER DATABASE " + name() + " ALLOW_CONNECTIONS true");
  }
  void terminate_sessions() const {
    run_sql(keygate::test::postgres_dsn(),
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '" + name() +
                "' AND pid <> pg_backend_pid()");
  }
};

// Calls predicate until it holds or `limit` passes (a bounded wait, not a readiness sleep).
bool eventually(const std::function<bool()>& predicate, std::chrono::milliseconds limit = 20s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (predicate()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
}

UsageFacts request(const std::string& key_id, int i) {
  UsageFacts f;
  f.key_id = key_id;
  f.method = i % 2 == 0 ? "GET" : "POST";
  f.endpoint = "/inventory/items";
  f.user_agent = "usage-test/1.0";
  f.client_ip = *IpAddress::parse(i % 3 == 0 ? "2001:db8::7" : "192.0.2.10");
  f.status = i % 5 == 0 ? 403 : 200;
  f.duration = std::chrono::microseconds(1000 + i);
  return f;
}

// Records n requests from `threads` producer threads (shard = thread).
void record_requests(UsageQueue& queue, const std::string& key_id, int n, unsigned threads = 2) {
  std::vector<std::thread> producers;
  for (unsigned t = 0; t < threads; ++t) {
    producers.emplace_back([&, t] {
      for (int i = static_cast<int>(t); i < n; i += static_cast<int>(threads)) {
        CHECK(queue.record(t, request(key_id, i)));
      }
    });
  }
  for (auto& p : producers) p.join();
}

struct MetricsDelta {
  std::uint64_t queued = metrics().usage_queued, written = metrics().usage_written,
                spilled = metrics().usage_spilled, replayed = metrics().usage_replayed,
                dropped = metrics().usage_dropped;
  std::uint64_t queued_since() const { return metrics().usage_queued - queued; }
  std::uint64_t written_since() const { return metrics().usage_written - written; }
  std::uint64_t spilled_since() const { return metrics().usage_spilled - spilled; }
  std::uint64_t replayed_since() const { return metrics().usage_replayed - replayed; }
  std::uint64_t dropped_since() const { return metrics().usage_dropped - dropped; }
};

}  // namespace

TEST_CASE("every recorded keyed request becomes exactly one usage row with its fields") {
  UsageDatabase db;
  MetricsDelta delta;
  UsageQueue queue(2, 100000);
  UsageWriter writer(db.options(), queue);
  writer.start();
  const auto before = std::chrono::system_clock::now();
  record_requests(queue, db.key_id, 3000);
  REQUIRE_MESSAGE(eventually([&] { return db.rows() == 3000; }), "rows: " << db.rows());
  auto drained = writer.stop_and_drain(5s);
  CHECK(drained.complete());
  CHECK(db.rows() == 3000);
  CHECK(db.distinct_events() == 3000);
  CHECK(delta.queued_since() == 3000);
  CHECK(delta.written_since() == 3000);
  CHECK(delta.dropped_since() == 0);

  // Request 10: GET, 403, IPv4, 1010 us.
  auto row = db.sql(
      "SELECT api_key_id, endpoint, method, status_code, host(ip_address), user_agent, "
      "response_time_ms, response_time_us, created_at >= now() - interval '1 minute' "
      "FROM api_key_usage WHERE response_time_us = 1010");
  REQUIRE(row.rows() == 1);
  CHECK(row.get(0, 0) == db.key_id);
  CHECK(row.get(0, 1) == "/inventory/items");
  CHECK(row.get(0, 2) == "GET");
  CHECK(row.get(0, 3) == "403");
  CHECK(row.get(0, 4) == "192.0.2.10");
  CHECK(row.get(0, 5) == "usage-test/1.0");
  CHECK(row.get(0, 6) == "1");
  CHECK(row.get(0, 8) == "t");
  CHECK(db.number("SELECT count(*) FROM api_key_usage WHERE host(ip_address) = '2001:db8::7'") == 1000);
  CHECK(db.number("SELECT count(*) FROM api_key_usage WHERE status_code = 403") == 600);
  // created_at is when the request started: finished (after `before`) minus its duration.
  const auto since = std::chrono::duration_cast<std::chrono::microseconds>(
                         before.time_since_epoch()).count() - 5000;
  CHECK(db.number("SELECT count(*) FROM api_key_usage WHERE created_at < to_timestamp(" +
                  std::to_string(since) + " / 1e6)") == 0);
}

TEST_CASE("usage batches cut by broken connections are retried with nothing lost or doubled") {
  UsageDatabase db;
  UsageQueue queue(2, 200000);
  UsageWriter writer(db.options(), queue);
  writer.start();
  for (int round = 0; round < 10; ++round) {
    record_requests(queue, db.key_id, 2000);
    db.terminate_sessions();  // whatever the writer was doing, its connection is gone
  }
  REQUIRE_MESSAGE(eventually([&] { return db.rows() == 20000; }), "rows: " << db.rows());
  writer.stop_and_drain(5s);
  CHECK(db.rows() == 20000);
  CHECK(db.distinct_events() == 20000);
}

TEST_CASE("while PostgreSQL refuses connections usage events are kept, spilled past the bound, and replayed") {
  UsageDatabase db;
  MetricsDelta delta;
  db.refuse_connections();
  auto options = db.options();
  options.queue_size = 500;
  UsageQueue queue(2, 100000);
  UsageWriter writer(options, queue);
  writer.start();
  record_requests(queue, db.key_id, 3000);
  REQUIRE_MESSAGE(eventually([&] { return delta.spilled_since() >= 2500; }),
                  "spilled: " << delta.spilled_since());
  CHECK(db.spill_size() > 0);
  CHECK(delta.dropped_since() == 0);
  db.allow_connections();
  REQUIRE_MESSAGE(eventually([&] { return db.rows() == 3000; }), "rows: " << db.rows());
  CHECK(eventually([&] { return db.spill_size() == 0; }));  // emptied once replayed
  CHECK(delta.replayed_since() == delta.spilled_since());
  writer.stop_and_drain(5s);
  CHECK(db.rows() == 3000);
  CHECK(db.distinct_events() == 3000);
}

TEST_CASE("stop_and_drain writes everything queued before it returns") {
  UsageDatabase db;
  auto options = db.options();
  options.flush_interval = 1h;  // only the drain writes
  options.batch_size = 100000;
  UsageQueue queue(2, 100000);
  UsageWriter writer(options, queue);
  writer.start();
  record_requests(queue, db.key_id, 5000);
  const auto result = writer.stop_and_drain(10s);
  CHECK(result.written == 5000);
  CHECK(result.spilled == 0);
  CHECK(db.rows() == 5000);
  CHECK_FALSE(queue.record(0, request(db.key_id, 1)));  // closed: nothing can slip in unseen
}

TEST_CASE("with PostgreSQL away, stop_and_drain spills within its timeout and the next writer replays") {
  UsageDatabase db;
  db.refuse_connections();
  {
    UsageQueue queue(2, 100000);
    UsageWriter writer(db.options(), queue);
    writer.start();
    record_requests(queue, db.key_id, 2000);
    const auto started = std::chrono::steady_clock::now();
    const auto result = writer.stop_and_drain(500ms);
    CHECK(std::chrono::steady_clock::now() - started < 4s);
    CHECK(result.spilled == 2000);
    CHECK(result.dropped == 0);
  }
  CHECK(db.spill_size() > 0);
  db.allow_connections();
  UsageQueue queue(2, 100000);
  UsageWriter writer(db.options(), queue);
  writer.start();
  REQUIRE_MESSAGE(eventually([&] { return db.rows() == 2000; }), "rows: " << db.rows());
  writer.stop_and_drain(5s);
  CHECK(db.distinct_events() == 2000);
  CHECK(db.spill_size() == 0);
}

TEST_CASE("a spill file replayed twice adds no row twice; a torn tail and a refused line are dropped") {
  UsageDatabase db;
  MetricsDelta delta;
  std::string lines;
  for (int i = 0; i < 50; ++i) {
    keygate::store::UsageEvent e;
    fill_usage_event(e, request(db.key_id, i));
    e.sequence = static_cast<std::uint64_t>(i + 1);
    REQUIRE(keygate::store::append_usage_line(lines, e, 777));
    if (i == 20) lines += "not-a-uuid\t" + db.key_id + "\t/x\tGET\t200\t10.0.0.1\t\\N\t5\t2024-01-01 00:00:00+00\n";
  }
  const std::string path = db.options().spill_path;
  for (int copy = 0; copy < 2; ++copy) {  // every line twice: a replay cut short, then redone
    std::ofstream(path, std::ios::app) << lines;
  }
  std::ofstream(path, std::ios::app) << "torn-line-without-newline\t";
  UsageQueue queue(1, 1000);
  UsageWriter writer(db.options(), queue);
  writer.start();
  REQUIRE_MESSAGE(eventually([&] { return db.spill_size() == 0; }), "spill: " << db.spill_size());
  writer.stop_and_drain(5s);
  CHECK(db.rows() == 50);
  CHECK(db.distinct_events() == 50);
  CHECK(delta.dropped_since() == 2);  // the refused line, in each copy
}

TEST_CASE("usage rows for a key that no longer exists are skipped without holding up the batch") {
  UsageDatabase db;
  const std::string gone = "00000000-0000-4000-8000-000000000001";
  UsageQueue queue(1, 1000);
  UsageWriter writer(db.options(), queue);
  writer.start();
  for (int i = 0; i < 10; ++i) {
    REQUIRE(queue.record(0, request(db.key_id, i)));
    REQUIRE(queue.record(0, request(gone, i)));
  }
  REQUIRE(eventually([&] { return db.rows() == 10; }));
  writer.stop_and_drain(5s);
  CHECK(db.rows() == 10);
}

TEST_CASE("last_used_at is set once per interval, to the latest request, not per request") {
  UsageDatabase db;
  const std::string other = std::string(db.new_key().get(0, 0));
  auto options = db.options();
  options.last_used_interval = 1h;
  UsageQueue queue(1, 1000);
  UsageWriter writer(options, queue);
  writer.start();
  for (int i = 0; i < 20; ++i) REQUIRE(queue.record(0, request(db.key_id, i)));
  REQUIRE(queue.record(0, request(other, 0)));
  REQUIRE(eventually([&] { return db.rows() == 21; }));
  // Rows are written, but the interval has not passed: no UPDATE yet.
  CHECK(db.number("SELECT count(*) FROM api_keys WHERE last_used_at IS NOT NULL") == 0);
  writer.stop_and_drain(5s);  // the drain flushes what is pending
  CHECK(db.number("SELECT count(*) FROM api_keys WHERE last_used_at IS NOT NULL") == 2);
  CHECK(db.number("SELECT count(*) FROM api_keys k WHERE last_used_at = (SELECT max(created_at) "
                  "FROM api_key_usage u WHERE u.api_key_id = k.id)") == 2);
}

TEST_CASE("the writer creates day partitions ahead and drops those past retention") {
  UsageDatabase db;
  db.sql("CREATE TABLE api_key_usage_p20000101 PARTITION OF api_key_usage "
         "FOR VALUES FROM ('2000-01-01 00:00:00+00') TO ('2000-01-02 00:00:00+00')");
  db.sql("INSERT INTO api_key_usage (api_key_id, created_at) VALUES ('" + db.key_id +
         "', '2000-01-01 12:00:00+00')");
  db.sql("DROP TABLE api_key_usage_p" + std::string(db.sql(
             "SELECT to_char((now() AT TIME ZONE 'UTC')::date + 7, 'YYYYMMDD')").get(0, 0)));
  auto options = db.options();
  options.retention_days = 30;
  options.partitions_ahead_days = 10;
  UsageQueue queue(1, 1000);
  UsageWriter writer(options, queue);
  writer.start();
  const std::string ahead =
      "SELECT count(*) FROM pg_inherits WHERE inhparent = 'api_key_usage'::regclass AND "
      "inhrelid::regclass::text = 'api_key_usage_p' || "
      "to_char((now() AT TIME ZONE 'UTC')::date + ";
  REQUIRE(eventually([&] { return db.number(ahead + "10, 'YYYYMMDD')") == 1; }));
  CHECK(db.number(ahead + "7, 'YYYYMMDD')") == 1);  // re-created
  CHECK(db.number("SELECT count(*) FROM pg_class WHERE relname = 'api_key_usage_p20000101'") == 0);
  CHECK(db.rows() == 0);
  writer.stop_and_drain(5s);
}
