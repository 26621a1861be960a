// The usage writer's custom target (store.schema: custom) against a real PostgreSQL, each case
// on a scratch database holding only the operator's tables, exactly as seed 003 (usage rows,
// integer ids) and seed 002 (a uuid id, `last_used TIMESTAMP` without time zone) create them:
// rows and fields, last-used times, refused rows, PostgreSQL away and back, a COMMIT with no
// answer, and the spill file's replay position across a restart.
#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "store/metrics.hpp"
#include "store/usage_encoding.hpp"
#include "store/usage_queue.hpp"
#include "store/usage_writer.hpp"
#include "support/scratch_database.hpp"

using namespace std::chrono_literals;
using keygate::core::IpAddress;
using keygate::store::CustomUsageTarget;
using keygate::store::metrics;
using keygate::store::UsageFacts;
using keygate::store::UsageQueue;
using keygate::store::UsageWriter;
using keygate::store::UsageWriterOptions;
using keygate::test::run_sql;
using keygate::test::ScratchDatabase;

namespace {

// Seed 003's two tables, word for word, in a schema of their own.
constexpr const char* seed003_tables =
    "CREATE SCHEMA seed003; SET search_path = seed003;"
    "CREATE TABLE api_keys (id SERIAL PRIMARY KEY, user_id UUID NOT NULL, key_hash VARCHAR(255) NOT NULL, "
    "key_prefix VARCHAR(20) NOT NULL, name VARCHAR(255) NOT NULL, description TEXT, scopes TEXT[] DEFAULT '{}', "
    "is_active BOOLEAN DEFAULT true, expires_at TIMESTAMPTZ, last_used_at TIMESTAMPTZ, "
    "created_at TIMESTAMPTZ DEFAULT now(), revoked_at TIMESTAMPTZ);"
    "CREATE TABLE api_key_usage (id SERIAL PRIMARY KEY, api_key_id INTEGER REFERENCES api_keys(id) ON DELETE CASCADE, "
    "endpoint VARCHAR(255), method VARCHAR(10), status_code INTEGER, ip_address INET, user_agent TEXT, "
    "response_time_ms INTEGER, created_at TIMESTAMPTZ DEFAULT now());";

// Seed 002's key table (its foreign key to the user table left out: no such table here).
constexpr const char* seed002_table =
    "CREATE SCHEMA api;"
    "CREATE TABLE api.user_api_key (api_key_id UUID PRIMARY KEY, key_name TEXT NOT NULL, key_id TEXT NOT NULL, "
    "user_id UUID NOT NULL, last_used TIMESTAMP, is_active BOOLEAN NOT NULL DEFAULT TRUE, "
    "created_at TIMESTAMP NOT NULL DEFAULT NOW(), updated_at TIMESTAMP NOT NULL DEFAULT NOW())";

struct CustomDatabase : ScratchDatabase {
  std::filesystem::path folder;

  CustomDatabase() {
    std::random_device random;
    folder = std::filesystem::temp_directory_path() / ("kg-usage-custom-" + std::to_string(random()));
    std::filesystem::create_directories(folder);
  }
  ~CustomDatabase() {
    std::error_code ignored;
    std::filesystem::remove_all(folder, ignored);
  }

  std::string new_seed003_key() const {
    return std::string(sql("INSERT INTO seed003.api_keys (user_id, key_hash, key_prefix, name) "
                           "VALUES (gen_random_uuid(), 'h', 'p', 'n') RETURNING id").get(0, 0));
  }
  long long number(const std::string& query) const { return std::stoll(std::string(sql(query).get(0, 0))); }
  long long rows() const { return number("SELECT count(*) FROM seed003.api_key_usage"); }
  long long distinct_agents() const {
    return number("SELECT count(DISTINCT user_agent) FROM seed003.api_key_usage");
  }

  UsageWriterOptions options(CustomUsageTarget target) const {
    UsageWriterOptions o;
    o.dsn = dsn();
    o.connect_timeout = 2s;
    o.query_timeout = 5s;
    o.batch_size = 500;
    o.flush_interval = 50ms;
    o.spill_path = spill_path();
    o.last_used_interval = 1h;  // the drain sets the last-used times
    o.retry_min = 20ms;
    o.retry_max = 200ms;
    o.custom = std::move(target);
    return o;
  }
  UsageWriterOptions seed003_options() const {
    return options({"seed003.api_keys", "id", "integer", "last_used_at", "timestamptz", "seed003.api_key_usage"});
  }
  std::string spill_path() const { return (folder / "usage.spill").string(); }
  std::uintmax_t spill_size() const {
    std::error_code ec;
    const auto size = std::filesystem::file_size(spill_path(), ec);
    return ec ? 0 : size;
  }
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

bool eventually(const std::function<bool()>& predicate, std::chrono::milliseconds limit = 20s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (predicate()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
}

// Request i: its user agent names it, so every row can be told apart.
struct Request {
  std::string key_id, agent;
  UsageFacts facts;
  Request(std::string key, int i) : key_id(std::move(key)), agent("agent-" + std::to_string(i)) {
    facts.key_id = key_id;
    facts.method = i % 2 == 0 ? "GET" : "POST";
    facts.endpoint = "/inventory/items";
    facts.user_agent = agent;
    facts.client_ip = *IpAddress::parse(i % 3 == 0 ? "2001:db8::7" : "192.0.2.10");
    facts.status = i % 5 == 0 ? 403 : 200;
    facts.duration = std::chrono::microseconds(1000 * (i % 100) + 400);
  }
};

void record(UsageQueue& queue, const std::string& key_id, int from, int to) {
  for (int i = from; i < to; ++i) REQUIRE(queue.record(0, Request(key_id, i).facts));
}

struct MetricsDelta {
  std::uint64_t written = metrics().usage_written, dropped = metrics().usage_dropped,
                refused = metrics().usage_refused, spilled = metrics().usage_spilled,
                doubled = metrics().usage_possibly_duplicated;
  std::uint64_t written_since() const { return metrics().usage_written - written; }
  std::uint64_t dropped_since() const { return metrics().usage_dropped - dropped; }
  std::uint64_t refused_since() const { return metrics().usage_refused - refused; }
  std::uint64_t spilled_since() const { return metrics().usage_spilled - spilled; }
  std::uint64_t doubled_since() const { return metrics().usage_possibly_duplicated - doubled; }
};

}  // namespace

TEST_CASE("custom target: every event becomes one row of seed 003's api_key_usage and last_used_at is the latest") {
  CustomDatabase db;
  db.sql(seed003_tables);
  const std::string a = db.new_seed003_key(), b = db.new_seed003_key();
  MetricsDelta delta;
  UsageQueue queue(1, 10000);
  UsageWriter writer(db.seed003_options(), queue);
  writer.start();
  record(queue, a, 0, 1200);
  record(queue, b, 1200, 1300);
  REQUIRE_MESSAGE(eventually([&] { return db.rows() == 1300; }), "rows: " << db.rows());
  CHECK(db.number("SELECT count(*) FROM seed003.api_keys WHERE last_used_at IS NOT NULL") == 0);  // 1 h
  const auto drained = writer.stop_and_drain(5s);
  CHECK(drained.complete());
  CHECK(db.rows() == 1300);
  CHECK(db.distinct_agents() == 1300);
  CHECK(delta.written_since() == 1300);
  CHECK(delta.dropped_since() == 0);
  CHECK(db.number("SELECT count(*) FROM seed003.api_key_usage WHERE api_key_id = " + b) == 100);

  // Request 10: GET, 403, IPv4, 10.4 ms.
  auto row = db.sql(
      "SELECT api_key_id, endpoint, method, status_code, host(ip_address), response_time_ms, "
      "created_at > now() - interval '1 minute' AND created_at <= now() "
      "FROM seed003.api_key_usage WHERE user_agent = 'agent-10'");
  REQUIRE(row.rows() == 1);
  CHECK(row.get(0, 0) == a);
  CHECK(row.get(0, 1) == "/inventory/items");
  CHECK(row.get(0, 2) == "GET");
  CHECK(row.get(0, 3) == "403");
  CHECK(row.get(0, 4) == "192.0.2.10");
  CHECK(row.get(0, 5) == "10");
  CHECK(row.get(0, 6) == "t");
  CHECK(db.number("SELECT count(*) FROM seed003.api_key_usage WHERE host(ip_address) = '2001:db8::7'") == 434);

  CHECK(db.number("SELECT count(*) FROM seed003.api_keys k WHERE last_used_at = (SELECT max(created_at) "
                  "FROM seed003.api_key_usage u WHERE u.api_key_id = k.id)") == 2);
  // Nothing of keygate's own schema was made or needed.
  CHECK(db.number("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                  "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'seed003') "
                  "AND n.nspname NOT LIKE 'pg_temp%' AND n.nspname NOT LIKE 'pg_toast_temp%'") == 0);
}

TEST_CASE("custom target: a last-used column without time zone gets the UTC time, and is never moved back") {
  CustomDatabase db;
  db.sql(seed002_table);
  // The session's time zone must not matter: the column holds UTC wall times.
  db.sql("ALTER DATABASE " + db.name() + " SET timezone = 'America/New_York'");
  db.sql("INSERT INTO api.user_api_key (api_key_id, key_name, key_id, user_id, last_used) VALUES "
         "('0b6f8c1e-2a47-4d1c-9f3e-5a6b7c8d9e0f', 'a', 'ka', gen_random_uuid(), NULL), "
         "('00000000-0000-4000-8000-000000000001', 'b', 'kb', gen_random_uuid(), '2030-01-01 00:00:00')");
  UsageQueue queue(1, 1000);
  UsageWriter writer(db.options({"api.user_api_key", "api_key_id", "uuid", "last_used", "timestamp", ""}), queue);
  writer.start();
  const auto at = [](const char* utc_us) {
    return std::chrono::system_clock::time_point(std::chrono::microseconds(std::stoll(utc_us)));
  };
  for (const char* key : {"0b6f8c1e-2a47-4d1c-9f3e-5a6b7c8d9e0f", "00000000-0000-4000-8000-000000000001"}) {
    Request r(key, 1);
    r.facts.duration = 0us;
    r.facts.finished_at = at("1709294400000000");  // 2024-03-01 12:00:00 UTC
    REQUIRE(queue.record(0, r.facts));
    r.facts.finished_at = at("1709208000000000");  // a day earlier: not the latest
    REQUIRE(queue.record(0, r.facts));
  }
  const auto drained = writer.stop_and_drain(5s);
  CHECK(drained.complete());
  CHECK(db.sql("SELECT last_used::text FROM api.user_api_key WHERE key_name = 'a'").get(0, 0) ==
        "2024-03-01 12:00:00");
  CHECK(db.sql("SELECT last_used::text FROM api.user_api_key WHERE key_name = 'b'").get(0, 0) ==
        "2030-01-01 00:00:00");
  CHECK(db.number("SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', "
                  "'information_schema', 'api')") == 0);  // no usage table: no rows anywhere
}

TEST_CASE("custom target: rows PostgreSQL refuses are dropped alone and counted, the others are written") {
  CustomDatabase db;
  db.sql(seed003_tables);
  const std::string key = db.new_seed003_key();
  MetricsDelta delta;
  UsageQueue queue(1, 10000);
  UsageWriter writer(db.seed003_options(), queue);
  writer.start();
  const std::string long_endpoint(300, 'e');  // the event keeps 256 bytes: too long for varchar(255)
  for (int i = 0; i < 400; ++i) {
    Request r(key, i);
    if (i == 37) r.facts.endpoint = long_endpoint;
    if (i == 301) {  // no such key: the foreign key refuses it
      r.key_id = "999999";
      r.facts.key_id = r.key_id;
    }
    if (i == 350) {  // not an integer at all
      r.key_id = "k-350";
      r.facts.key_id = r.key_id;
    }
    REQUIRE(queue.record(0, r.facts));
  }
  REQUIRE_MESSAGE(eventually([&] { return db.rows() == 397; }), "rows: " << db.rows());
  writer.stop_and_drain(5s);
  CHECK(db.rows() == 397);
  CHECK(db.distinct_agents() == 397);
  CHECK(db.number("SELECT count(*) FROM seed003.api_key_usage WHERE user_agent IN "
                  "('agent-37', 'agent-301', 'agent-350')") == 0);
  CHECK(delta.refused_since() == 3);
  CHECK(delta.dropped_since() == 3);
  CHECK(delta.written_since() == 397);
}

TEST_CASE("custom target: with PostgreSQL gone and back and sessions cut, no usage row is lost") {
  CustomDatabase db;
  db.sql(seed003_tables);
  const std::string key = db.new_seed003_key();
  MetricsDelta delta;
  auto options = db.seed003_options();
  options.queue_size = 300;  // past it: the spill file
  UsageQueue queue(1, 100000);
  UsageWriter writer(options, queue);
  writer.start();
  record(queue, key, 0, 1000);
  REQUIRE(eventually([&] { return db.rows() >= 500; }));
  db.refuse_connections();  // PostgreSQL down, as a client sees it
  record(queue, key, 1000, 3000);
  REQUIRE_MESSAGE(eventually([&] { return delta.spilled_since() >= 1500; }), "spilled: " << delta.spilled_since());
  db.allow_connections();  // and up again
  for (int round = 0; round < 5; ++round) {
    record(queue, key, 3000 + round * 400, 3400 + round * 400);
    db.terminate_sessions();  // whatever the writer was doing, its connection is gone
  }
  REQUIRE_MESSAGE(eventually([&] { return db.distinct_agents() == 5000; }), "distinct: " << db.distinct_agents());
  CHECK(eventually([&] { return db.spill_size() == 0; }));
  writer.stop_and_drain(5s);
  CHECK(delta.dropped_since() == 0);
  CHECK(db.distinct_agents() == 5000);
  // At-least-once: a row twice only where a COMMIT got no answer, and then counted.
  CHECK(static_cast<std::uint64_t>(db.rows() - 5000) <= delta.doubled_since());
}

TEST_CASE("custom target: a batch whose COMMIT got no answer is written again and counted as possibly duplicated") {
  CustomDatabase db;
  db.sql(seed003_tables);
  const std::string key = db.new_seed003_key();
  // The first COMMIT outlives the writer's query timeout (a deferred trigger), then commits.
  db.sql("CREATE TABLE slow_once (x integer); INSERT INTO slow_once VALUES (1);"
         "CREATE FUNCTION slow_once() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
         "PERFORM 1 FROM slow_once FOR UPDATE SKIP LOCKED; "  // the retry does not wait for it
         "IF FOUND THEN DELETE FROM slow_once; PERFORM pg_sleep(1.5); "
         "END IF; RETURN NULL; END $$;"
         "CREATE CONSTRAINT TRIGGER slow_once AFTER INSERT ON seed003.api_key_usage "
         "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_once()");
  MetricsDelta delta;
  auto options = db.seed003_options();
  options.query_timeout = 500ms;
  UsageQueue queue(1, 10000);
  UsageWriter writer(options, queue);
  writer.start();
  record(queue, key, 0, 1000);
  REQUIRE_MESSAGE(eventually([&] {
                    return db.number("SELECT count(*) FROM slow_once") == 0 && db.distinct_agents() == 1000 &&
                           delta.written_since() >= 1000;
                  }),
                  "distinct: " << db.distinct_agents());
  writer.stop_and_drain(5s);
  CHECK(delta.doubled_since() > 0);  // the first batch: its rows are there twice
  CHECK(eventually([&] { return db.rows() == 1000 + static_cast<long long>(delta.doubled_since()); }));
  CHECK(db.rows() == 1000 + static_cast<long long>(delta.doubled_since()));
  CHECK(delta.dropped_since() == 0);
}

TEST_CASE("custom target: a restart mid-replay of the spill file replays only what was not stored") {
  CustomDatabase db;
  db.sql(seed003_tables);
  const std::string key = db.new_seed003_key();
  std::string lines;
  for (int i = 0; i < 2000; ++i) {
    keygate::store::UsageEvent e;
    fill_usage_event(e, Request(key, i).facts);
    REQUIRE(keygate::store::append_custom_usage_line(lines, e));
  }
  std::ofstream(db.spill_path()) << lines;
  // Past 1000 rows the table fails every insert (not a row error: the writer keeps retrying).
  db.sql("CREATE FUNCTION stop_at_1000() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
         "IF (SELECT count(*) FROM seed003.api_key_usage) >= 1000 THEN "
         "RAISE EXCEPTION 'full' USING ERRCODE = '53100'; END IF; RETURN NEW; END $$;"
         "CREATE TRIGGER stop_at_1000 BEFORE INSERT ON seed003.api_key_usage "
         "FOR EACH STATEMENT EXECUTE FUNCTION stop_at_1000()");
  {
    UsageQueue queue(1, 1000);
    UsageWriter writer(db.seed003_options(), queue);  // batches of 500
    writer.start();
    REQUIRE_MESSAGE(eventually([&] { return db.rows() == 1000; }), "rows: " << db.rows());
    std::this_thread::sleep_for(200ms);  // it retries the third batch: still 1000
    writer.stop_and_drain(200ms);        // the process ends with the replay half done
  }
  CHECK(db.rows() == 1000);
  CHECK(db.spill_size() == lines.size());  // the file is whole; its first half punched out
  db.sql("DROP TRIGGER stop_at_1000 ON seed003.api_key_usage");
  UsageQueue queue(1, 1000);
  UsageWriter writer(db.seed003_options(), queue);
  writer.start();
  REQUIRE_MESSAGE(eventually([&] { return db.spill_size() == 0; }), "spill: " << db.spill_size());
  writer.stop_and_drain(5s);
  CHECK(db.rows() == 2000);
  CHECK(db.distinct_agents() == 2000);
}

TEST_CASE("custom target: a spill file of keygate's own format is not written into the custom table") {
  CustomDatabase db;
  db.sql(seed003_tables);
  const std::string key = db.new_seed003_key();
  MetricsDelta delta;
  std::string lines;
  for (int i = 0; i < 30; ++i) {
    keygate::store::UsageEvent e;
    fill_usage_event(e, Request("0b6f8c1e-2a47-4d1c-9f3e-5a6b7c8d9e0f", i).facts);
    e.sequence = static_cast<std::uint64_t>(i + 1);
    REQUIRE(keygate::store::append_usage_line(lines, e, 7));
    fill_usage_event(e, Request(key, 100 + i).facts);
    REQUIRE(keygate::store::append_custom_usage_line(lines, e));
  }
  std::ofstream(db.spill_path()) << lines;
  UsageQueue queue(1, 1000);
  UsageWriter writer(db.seed003_options(), queue);
  writer.start();
  REQUIRE_MESSAGE(eventually([&] { return db.spill_size() == 0; }), "spill: " << db.spill_size());
  writer.stop_and_drain(5s);
  CHECK(db.rows() == 30);
  CHECK(delta.dropped_since() == 30);
  CHECK(delta.refused_since() == 0);  // told apart before PostgreSQL saw them
}
