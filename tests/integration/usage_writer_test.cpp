// The usage writer against a real PostgreSQL with the real schema, each case on a scratch
// database: rows and fields, retries without duplicates, the spill file and its replay, the
// drain at shutdown, last_used_at coalescing and the day partitions.
#include <doctest/doctest.h>

#include <boost/asio/this_coro.hpp>

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "store/metrics.hpp"
#include "store/migrator.hpp"
#include "store/usage_encoding.hpp"
#include "store/usage_queue.hpp"
#include "store/usage_writer.hpp"
#include "support/run_coro.hpp"
#include "support/scratch_database.hpp"

namespace asio = boost::asio;
using namespace std::chrono_literals;
using keygate::core::IpAddress;
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

TEST_CASE("a spill file replayed twice adds no row twice, and a torn tail and a refused line are dropped") {
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

TEST_CASE("a batch whose COMMIT landed but whose answer never came is retried through staging, not doubled") {
  UsageDatabase db;
  // The first transaction that inserts usage rows outlives the writer's query timeout in its
  // COMMIT (a deferred trigger), then commits: the writer sees a timeout after sending COMMIT
  // (the outcome unknown to it) while the rows are there.
  db.sql("CREATE TABLE slow_once (x integer); INSERT INTO slow_once VALUES (1);"
         "CREATE FUNCTION slow_once() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
         "IF EXISTS (SELECT 1 FROM slow_once) THEN DELETE FROM slow_once; PERFORM pg_sleep(1.5); "
         "END IF; RETURN NULL; END $$;"
         "CREATE CONSTRAINT TRIGGER slow_once AFTER INSERT ON api_key_usage "
         "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_once()");
  auto options = db.options();
  options.query_timeout = 500ms;
  UsageQueue queue(2, 100000);
  UsageWriter writer(options, queue);
  writer.start();
  record_requests(queue, db.key_id, 1000);
  REQUIRE_MESSAGE(eventually([&] { return db.number("SELECT count(*) FROM slow_once") == 0 && db.rows() == 1000; }),
                  "rows: " << db.rows());
  record_requests(queue, db.key_id, 500);  // later batches go the direct way again
  REQUIRE_MESSAGE(eventually([&] { return db.rows() == 1500; }), "rows: " << db.rows());
  writer.stop_and_drain(5s);
  CHECK(db.rows() == 1500);
  CHECK(db.distinct_events() == 1500);
}

TEST_CASE("deleting a key deletes its usage rows, and its id cannot change while rows refer to it") {
  UsageDatabase db;
  const std::string other = std::string(db.new_key().get(0, 0));
  UsageQueue queue(1, 1000);
  UsageWriter writer(db.options(), queue);
  writer.start();
  for (int i = 0; i < 10; ++i) {
    REQUIRE(queue.record(0, request(db.key_id, i)));
    REQUIRE(queue.record(0, request(other, i)));
  }
  REQUIRE(eventually([&] { return db.rows() == 20; }));
  writer.stop_and_drain(5s);
  db.sql("DELETE FROM api_keys WHERE id = '" + other + "'");
  CHECK(db.rows() == 10);
  CHECK(db.number("SELECT count(*) FROM api_key_usage WHERE api_key_id = '" + other + "'") == 0);
  CHECK_THROWS(db.sql("UPDATE api_keys SET id = gen_random_uuid() WHERE id = '" + db.key_id + "'"));
  db.sql("TRUNCATE api_keys CASCADE");
  CHECK(db.rows() == 0);
}

TEST_CASE("the binary and the text encodings of a usage event store the same row") {
  UsageDatabase db;
  std::vector<UsageFacts> facts;
  const std::string odd = "/caf\xc3\xa9/\t\\back\nslash\r\x01\x7f/\xff\xe2\x82/cut\xe2\x82";
  const std::string emoji = "agent \xf0\x9f\x98\x80 \xed\xa0\x80 \xc0\xaf";
  for (int i = 0; i < 6; ++i) facts.push_back(request(db.key_id, i));
  facts[1].endpoint = odd;
  facts[1].user_agent = emoji;
  facts[2].user_agent = "";  // NULL
  facts[2].method = "";
  facts[3].client_ip = IpAddress{};  // "::"
  facts[3].duration = std::chrono::microseconds(0xffffffffLL);  // saturates; ms without overflow
  facts[4].duration = std::chrono::microseconds(1499);
  facts[5].client_ip = *IpAddress::parse("::ffff:10.1.2.3");
  std::string text, binary;
  keygate::store::append_usage_binary_header(binary);
  for (std::size_t i = 0; i < facts.size(); ++i) {
    keygate::store::UsageEvent e;
    fill_usage_event(e, facts[i]);
    e.sequence = i + 1;
    REQUIRE(keygate::store::append_usage_line(text, e, 0x0123456789abcdefULL));
    REQUIRE(keygate::store::append_usage_binary_row(binary, e, 0x0123456789abcdefULL));
  }
  keygate::store::append_usage_binary_trailer(binary);
  const std::string columns =
      "event_id uuid, api_key_id uuid, endpoint text, method text, status_code integer, "
      "ip_address inet, user_agent text, response_time_ms integer, response_time_us integer, "
      "created_at timestamptz";
  db.sql("CREATE TABLE from_text (" + columns + "); CREATE TABLE from_binary (" + columns + ")");
  run_coro([&]() -> asio::awaitable<void> {
    PgConnection c(co_await asio::this_coro::executor);
    auto connected = co_await c.connect(db.dsn(), 5s);
    REQUIRE(connected.ok());
    std::string copy_text =
        "COPY from_text (event_id, api_key_id, endpoint, method, status_code, ip_address, "
        "user_agent, response_time_us, created_at) FROM STDIN";
    auto t = co_await c.copy_in(std::move(copy_text), text, 5s);
    REQUIRE_MESSAGE(t.ok(), t.error());
    std::string copy_binary =
        "COPY from_binary (event_id, api_key_id, endpoint, method, status_code, ip_address, "
        "user_agent, response_time_ms, response_time_us, created_at) FROM STDIN (FORMAT binary)";
    auto b = co_await c.copy_in(std::move(copy_binary), binary, 5s);
    REQUIRE_MESSAGE(b.ok(), b.error());
  }());
  // The staging INSERT's rounding for the text form.
  db.sql("UPDATE from_text SET response_time_ms = ((response_time_us::bigint + 500) / 1000)::integer");
  CHECK(db.number("SELECT count(*) FROM from_binary") == 6);
  CHECK(db.number("SELECT count(*) FROM (SELECT * FROM from_text EXCEPT SELECT * FROM from_binary) d") == 0);
  CHECK(db.number("SELECT count(*) FROM (SELECT * FROM from_binary EXCEPT SELECT * FROM from_text) d") == 0);
  CHECK(db.sql("SELECT event_id FROM from_binary WHERE response_time_us = 1000").get(0, 0) ==
        keygate::store::usage_event_id(0x0123456789abcdefULL, 1));
  CHECK(db.number("SELECT count(*) FROM from_binary WHERE user_agent IS NULL AND method IS NULL") == 1);
  CHECK(db.number("SELECT response_time_ms FROM from_binary WHERE response_time_us = 2147483647") == 2147484);
  CHECK(db.number("SELECT response_time_ms FROM from_binary WHERE response_time_us = 1499") == 1);
  CHECK(db.sql("SELECT ip_address FROM from_binary WHERE response_time_us = 2147483647").get(0, 0) == "::");
  const std::string bad = "\xef\xbf\xbd";  // U+FFFD
  CHECK(db.sql("SELECT endpoint FROM from_binary WHERE response_time_us = 1001").get(0, 0) ==
        "/caf\xc3\xa9/\t\\back\nslash\r?" "?/" + bad + bad + bad + "/cut" + bad + bad);
}

// ---- a measurement, not a test: bench/usage_rows runs it with --no-skip --------------------

namespace {

// CPU seconds (user + system) of the PostgreSQL server whose postmaster is `postmaster`: its
// own, what it reaped from its finished children, and its live children's (backends, WAL
// writer, checkpointer, autovacuum). Read from /proc, so the server must run on this machine.
double postgres_cpu_seconds(long postmaster) {
  auto stat = [](long pid) -> std::vector<std::string> {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto paren = text.rfind(')');
    if (paren == std::string::npos) return {};
    std::vector<std::string> fields;  // fields[0] is the state (field 3 of proc(5))
    std::istringstream rest(text.substr(paren + 2));
    for (std::string f; rest >> f;) fields.push_back(f);
    return fields;
  };
  const auto own = stat(postmaster);
  if (own.size() < 15) throw std::runtime_error("no /proc entry for the postmaster");
  const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
  long long ticks = std::stoll(own[11]) + std::stoll(own[12]) + std::stoll(own[13]) + std::stoll(own[14]);
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    const auto child = stat(std::stol(name));
    if (child.size() >= 15 && std::stol(child[1]) == postmaster) {
      ticks += std::stoll(child[11]) + std::stoll(child[12]);
    }
  }
  return static_cast<double>(ticks) / tick;
}

double process_cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

std::size_t env_number(const char* name, std::size_t fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? std::stoull(value) : fallback;
}

}  // namespace

TEST_CASE("usage writer cost: PostgreSQL CPU per usage row (measurement)" * doctest::skip()) {
  const std::size_t n = env_number("KEYGATE_USAGE_BENCH_EVENTS", 200000);
  const std::size_t keys = env_number("KEYGATE_USAGE_BENCH_KEYS", 1000);
  UsageDatabase db;
  db.sql("INSERT INTO api_keys (owner_type, owner_id, name, key_prefix, key_hash) "
         "SELECT 'user', g::text, 'bench', 'kg_test_abcd', "
         "decode(md5(g::text) || md5(random()::text), 'hex') FROM generate_series(2, " +
         std::to_string(keys) + ") g");
  auto ids = db.sql("SELECT id FROM api_keys ORDER BY id");
  std::vector<std::string> key_ids;
  for (int r = 0; r < ids.rows(); ++r) key_ids.emplace_back(ids.get(r, 0));

  auto options = db.options();
  options.batch_size = env_number("KEYGATE_USAGE_BENCH_BATCH", 5000);
  options.flush_interval = 1s;
  options.queue_size = n + 1;
  options.query_timeout = 60s;
  MetricsDelta delta;
  UsageQueue queue(2, n + 2);
  UsageWriter writer(options, queue);
  std::mt19937 random(42);
  for (std::size_t i = 0; i < n; ++i) {
    UsageFacts f = request(key_ids[random() % key_ids.size()], static_cast<int>(i));
    const std::string endpoint = "/inventory/items/" + std::to_string(i % 500);
    f.endpoint = endpoint;
    f.user_agent = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) bench/1.0";
    REQUIRE(queue.record(static_cast<unsigned>(i % 2), f));
  }
  // The postmaster's pid: the first line of postmaster.pid in the data directory.
  std::ifstream pid_file(std::string(db.sql("SHOW data_directory").get(0, 0)) + "/postmaster.pid");
  long postmaster = 0;
  pid_file >> postmaster;
  REQUIRE(postmaster > 0);
  // The writer's partitions first, so the measured window holds only the rows' work.
  {
    UsageQueue warm_queue(1, 10);
    UsageWriter warm(options, warm_queue);
    warm.start();
    REQUIRE(warm_queue.record(0, request(db.key_id, 0)));
    REQUIRE(eventually([&] { return delta.written_since() == 1; }));
    warm.stop_and_drain(5s);
  }
  const double pg_before = postgres_cpu_seconds(postmaster);
  const double own_before = process_cpu_seconds();
  const auto started = std::chrono::steady_clock::now();
  writer.start();
  REQUIRE(eventually([&] { return delta.written_since() == n + 1; }, 600s));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const double pg_cpu = postgres_cpu_seconds(postmaster) - pg_before;
  const double own_cpu = process_cpu_seconds() - own_before;
  writer.stop_and_drain(10s);
  CHECK(db.rows() == static_cast<long long>(n + 1));
  CHECK(delta.dropped_since() == 0);
  std::printf("usage_rows: rows=%zu batch=%zu keys=%zu seconds=%.2f rows_per_s=%.0f "
              "pg_cpu_us_per_row=%.2f writer_process_cpu_us_per_row=%.2f\n",
              n, options.batch_size, key_ids.size(), seconds, static_cast<double>(n) / seconds,
              pg_cpu * 1e6 / static_cast<double>(n), own_cpu * 1e6 / static_cast<double>(n));
}
