// store/pg_text.hpp and store/pg_dsn.hpp: PostgreSQL's text forms, libpq's messages as one
// line, and connection strings taken apart and put back with resolved addresses. No server.
#include <doctest/doctest.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "store/host_resolution.hpp"
#include "store/pg_dsn.hpp"
#include "store/pg_text.hpp"

using namespace keygate::store;

namespace {

PgDsn parsed(const std::string& dsn) {
  std::string error;
  auto result = parse_pg_dsn(dsn, &error);
  REQUIRE_MESSAGE(result.has_value(), error);
  return *result;
}

std::vector<PgHost> hosts_of(const std::string& dsn) {
  auto hosts = pg_hosts(parsed(dsn));
  REQUIRE(hosts.has_value());
  return *hosts;
}

}  // namespace

TEST_CASE("PostgreSQL array and bytea text forms are parsed with quoting, NULL and empty arrays") {
  using Elements = std::vector<std::optional<std::string>>;
  CHECK(parse_pg_array("{}") == Elements{});
  CHECK(parse_pg_array("{a,b}") == Elements{"a", "b"});
  CHECK(parse_pg_array("{\"a b\",\"c,d\",\"e\\\"f\",\"g\\\\h\"}") ==
        Elements{"a b", "c,d", "e\"f", "g\\h"});
  CHECK(parse_pg_array("{NULL,\"NULL\",null}") == Elements{std::nullopt, "NULL", std::nullopt});
  CHECK(parse_pg_array("{10.0.0.0/8,2001:db8::/32}") == Elements{"10.0.0.0/8", "2001:db8::/32"});
  CHECK(parse_pg_array("[0:1]={x,y}") == Elements{"x", "y"});
  CHECK_FALSE(parse_pg_array("").has_value());
  CHECK_FALSE(parse_pg_array("{a,}").has_value());
  CHECK_FALSE(parse_pg_array("{\"a}").has_value());
  CHECK_FALSE(parse_pg_array("{{a},{b}}").has_value());
  CHECK_FALSE(parse_pg_array("a,b").has_value());
  CHECK(format_pg_array({"a b", "q\"", "s\\"}) == "{\"a b\",\"q\\\"\",\"s\\\\\"}");
  CHECK(parse_pg_bytea("\\x00ff10") == std::vector<std::uint8_t>{0x00, 0xff, 0x10});
  CHECK_FALSE(parse_pg_bytea("\\x0g").has_value());
  CHECK_FALSE(parse_pg_bytea("00ff").has_value());
}

TEST_CASE("bytea is formatted in hex output form") {
  const std::uint8_t bytes[] = {0x00, 0xab, 0x10};
  CHECK(format_pg_bytea(bytes, 3) == "\\x00ab10");
  CHECK(format_pg_bytea(bytes, 0) == "\\x");
}

TEST_CASE("libpq messages become one lower-case line without the level or the preamble") {
  CHECK(one_line_reason("connection to server at \"127.0.0.1\", port 5999 failed: Connection "
                        "refused\n\tIs the server running on that host?\n") == "connection refused");
  CHECK(one_line_reason("FATAL:  database \"x\" does not exist\n") == "database \"x\" does not exist");
  CHECK(one_line_reason("ERROR:  relation \"t\" does not exist") == "relation \"t\" does not exist");
  CHECK(one_line_reason("SSL SYSCALL error: EOF detected  \r\n") == "SSL SYSCALL error: EOF detected");
  CHECK(one_line_reason("\n") == "unknown error");
}

TEST_CASE("a secret is hidden wherever it appears, and an empty secret hides nothing") {
  CHECK(hide_secret("pw=s3cret and s3cret again", "s3cret") == "pw=*** and *** again");
  CHECK(hide_secret("a**b", "*") == "a******b");
  CHECK(hide_secret("nothing here", "") == "nothing here");
}

TEST_CASE("libpq's quoted pieces of a connection string are hidden, its format's own quotes kept") {
  const std::string dsn = "host=a password=my secret";
  CHECK(hide_quoted_parts("missing \"=\" after \"secret\" in connection info string", dsn) ==
        "missing \"=\" after \"***\" in connection info string");
  CHECK(hide_quoted_parts("invalid percent-encoded token: \"pa%zzss\"", dsn) ==
        "invalid percent-encoded token: \"***\"");
  CHECK(hide_quoted_parts("unexpected character \"x\" at position 9 in URI (expected \":\" or \"/\"): "
                          "\"postgresql://u:pw@h/d\"", dsn) ==
        "unexpected character \"***\" at position 9 in URI (expected \":\" or \"/\"): \"***\"");
  CHECK(hide_quoted_parts("unterminated quoted string in connection info string", dsn) ==
        "unterminated quoted string in connection info string");
  CHECK(hide_quoted_parts("a \"b\" and \"unpaired", dsn) == "a \"***\" and \"***\"");
  // A '"' in the string itself: the quotes cannot be paired, so all between the first and the
  // last one goes (a password 'a"b' would otherwise leave "b" outside a pair).
  CHECK(hide_quoted_parts("missing \"=\" after \"a\"b\" in connection info string", "x a\"b") ==
        "missing \"***\" in connection info string");
}

TEST_CASE("a connection string libpq cannot parse is refused without quoting its password") {
  const char* malformed[] = {
      "host=127.0.0.1 user=u password=Sup3r Secr3tPw",     // unquoted space: 'missing "=" after ...'
      "postgresql://u:Sup3rSecr3tPw%zz@127.0.0.1:1/db",      // raw '%' in the password
      "postgresql://u:Sup3rSecr3tPw@[::1:5432/db",           // the whole URI is quoted
      "postgresql://u:Sup3rSecr3tPw@127.0.0.1/db?Secr3tPw",  // a query without '='
      "postgresql://u:Sup3r\"Secr3tPw@[::1/db",              // a '"' in the password
  };
  for (const char* dsn : malformed) {
    CAPTURE(dsn);
    std::string error;
    CHECK_FALSE(parse_pg_dsn(dsn, &error).has_value());
    CHECK_FALSE(error.empty());
    CHECK(error.find("Secr3tPw") == std::string::npos);
    CHECK(error.find("Sup3r") == std::string::npos);
  }
}

TEST_CASE("connection strings parse in URI and key=value form, with every host in order") {
  const PgDsn uri = parsed("postgresql://kg:p%40ss@db-a.internal:5433,[::1]:5434/keygate?sslmode=require");
  CHECK(uri.value("user") == "kg");
  CHECK(uri.value("password") == "p@ss");
  CHECK(uri.value("dbname") == "keygate");
  CHECK(uri.value("sslmode") == "require");
  CHECK(hosts_of("postgresql://kg@db-a.internal:5433,[::1]:5434/keygate") ==
        std::vector<PgHost>{{"db-a.internal", "", "5433"}, {"::1", "", "5434"}});
  CHECK(hosts_of("host=db-a,db-b port=6000 dbname=x") ==
        std::vector<PgHost>{{"db-a", "", "6000"}, {"db-b", "", "6000"}});
  CHECK(hosts_of("host=db hostaddr=10.0.0.7 dbname=x") ==
        std::vector<PgHost>{{"db", "10.0.0.7", ""}});
  CHECK(hosts_of("hostaddr=10.0.0.7,10.0.0.8") ==
        std::vector<PgHost>{{"", "10.0.0.7", ""}, {"", "10.0.0.8", ""}});
  CHECK(hosts_of("dbname=x") == std::vector<PgHost>{{"", "", ""}});
  // Lists that do not pair up are left to libpq, which refuses them before resolving anything.
  CHECK_FALSE(pg_hosts(parsed("host=a,b port=1,2,3")).has_value());
  CHECK_FALSE(pg_hosts(parsed("host=a,b hostaddr=10.0.0.1")).has_value());

  std::string error;
  CHECK_FALSE(parse_pg_dsn("host=a dbname", &error).has_value());
  CHECK(error.find('\n') == std::string::npos);
  CHECK_FALSE(error.empty());
}

TEST_CASE("only a name with no hostaddr is looked up: not literals, sockets or defaults") {
  CHECK(needs_lookup({"db.internal", "", ""}));
  CHECK(needs_lookup({"localhost", "", "5432"}));
  CHECK_FALSE(needs_lookup({"db.internal", "10.0.0.7", ""}));
  CHECK_FALSE(needs_lookup({"127.0.0.1", "", ""}));
  CHECK_FALSE(needs_lookup({"::1", "", ""}));
  CHECK_FALSE(needs_lookup({"/var/run/postgresql", "", ""}));
  CHECK_FALSE(needs_lookup({"@abstract", "", ""}));
  CHECK_FALSE(needs_lookup({"", "", ""}));
  CHECK(is_ip_literal("10.1.2.3"));
  CHECK(is_ip_literal("2001:db8::1"));
  CHECK_FALSE(is_ip_literal("db.internal"));
  CHECK_FALSE(is_ip_literal("10.1.2"));
  CHECK_FALSE(is_ip_literal(""));
}

TEST_CASE("resolved hosts go back as parallel host, hostaddr and port lists") {
  PgDsn dsn = parsed("postgresql://kg@db.internal:5433,%2Ftmp%2Fsock/keygate");
  set_pg_hosts(dsn, {{"db.internal", "10.0.0.7", "5433"},
                     {"db.internal", "10.0.0.8", "5433"},
                     {"/tmp/sock", "", "5433"}});
  CHECK(dsn.value("host") == "db.internal,db.internal,/tmp/sock");
  CHECK(dsn.value("hostaddr") == "10.0.0.7,10.0.0.8,");
  CHECK(dsn.value("port") == "5433,5433,5433");
  CHECK(dsn.value("user") == "kg");
  CHECK(dsn.value("dbname") == "keygate");

  PgDsn no_port = parsed("host=db dbname=x");
  set_pg_hosts(no_port, {{"db", "10.0.0.7", ""}});
  CHECK(no_port.value("hostaddr") == "10.0.0.7");
  CHECK_FALSE(no_port.has("port"));  // libpq's default (or PGPORT) still applies
}

TEST_CASE("pg_address names the first host and its port, never the password") {
  CHECK(pg_address("postgresql://kg:s3cret@db-a:5433,db-b:5434/x") == "db-a:5433");
  CHECK(pg_address("host=::1 port=6000") == "[::1]:6000");
  CHECK(pg_address("hostaddr=10.0.0.7") == "10.0.0.7:5432");
  CHECK(pg_address("dbname=x") == "localhost:5432");
  CHECK(pg_address("not a dsn") == "localhost:5432");
}
