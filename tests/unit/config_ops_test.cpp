// app/config, the operations options (issue #7): tls, upstream_tls and access_log with their
// defaults and their one-line messages, and which changed options a SIGHUP cannot apply.
#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "app/config.hpp"
#include "core/log.hpp"

namespace {

using keygate::app::Config;
using keygate::app::ConfigError;
using keygate::app::options_needing_restart;
using keygate::app::parse_config;
using keygate::app::reload_refusal;
using TlsVersion = keygate::proxy::TlsOptions::Version;
using LogMode = keygate::proxy::AccessLogOptions::Mode;
using Names = std::vector<std::string>;

Config parse(const std::string& yaml) { return parse_config(yaml, "config.yaml", {}); }

std::string error_of(const std::string& yaml) {
  try {
    parse(yaml);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

const std::filesystem::path source_dir =
    std::filesystem::path(__FILE__).parent_path().parent_path().parent_path();

// A small readable file for the options that must name one.
struct TempFile {
  TempFile() {
    path = (std::filesystem::temp_directory_path() /
            ("kg-config-ops-" + std::to_string(::getpid()) + ".pem"))
               .string();
    std::ofstream(path) << "-----BEGIN CERTIFICATE-----\n";
  }
  ~TempFile() { std::remove(path.c_str()); }
  std::string path;
};

}  // namespace

TEST_SUITE("config ops") {

TEST_CASE("defaults: no TLS, upstream TLS verified with the system's store, no access log") {
  const Config c;
  CHECK(c.tls.cert_file.empty());
  CHECK(c.tls.key_file.empty());
  CHECK(c.tls.min_version == TlsVersion::tls1_2);
  CHECK(c.upstream_tls.verify);
  CHECK(c.upstream_tls.ca_file.empty());
  CHECK(c.upstream_tls.server_name.empty());
  CHECK(c.access_log.mode == LogMode::off);
  CHECK(c.access_log.sample_rate == doctest::Approx(0.01));
  CHECK(c.access_log.path == "stderr");
}

TEST_CASE("the shipped config.yaml documents the operations options with their defaults") {
  const Config shipped =
      keygate::app::load_config_file((source_dir / "config.yaml").string(), {});
  const Config defaults;
  CHECK(shipped.tls.cert_file == defaults.tls.cert_file);
  CHECK(shipped.tls.key_file == defaults.tls.key_file);
  CHECK(shipped.tls.min_version == defaults.tls.min_version);
  CHECK(shipped.upstream_tls.verify == defaults.upstream_tls.verify);
  CHECK(shipped.upstream_tls.ca_file == defaults.upstream_tls.ca_file);
  CHECK(shipped.upstream_tls.server_name == defaults.upstream_tls.server_name);
  CHECK(shipped.access_log.mode == defaults.access_log.mode);
  CHECK(shipped.access_log.sample_rate == doctest::Approx(defaults.access_log.sample_rate));
  CHECK(shipped.access_log.path == defaults.access_log.path);
}

TEST_CASE("every operations option maps to its field") {
  TempFile file;
  const Config c = parse("tls:\n  cert_file: " + file.path + "\n  key_file: " + file.path +
                         "\n  min_version: \"1.3\"\n"
                         "upstream_tls:\n  verify: false\n  ca_file: " + file.path +
                         "\n  server_name: api.internal\n"
                         "access_log:\n  mode: sampled\n  sample_rate: 0.25\n  path: /var/log/kg.log\n");
  CHECK(c.tls.cert_file == file.path);
  CHECK(c.tls.key_file == file.path);
  CHECK(c.tls.min_version == TlsVersion::tls1_3);
  CHECK_FALSE(c.upstream_tls.verify);
  CHECK(c.upstream_tls.ca_file == file.path);
  CHECK(c.upstream_tls.server_name == "api.internal");
  CHECK(c.access_log.mode == LogMode::sampled);
  CHECK(c.access_log.sample_rate == doctest::Approx(0.25));
  CHECK(c.access_log.path == "/var/log/kg.log");
  CHECK(parse("upstream_tls:\n  server_name: 10.0.0.7\n").upstream_tls.server_name == "10.0.0.7");
}

TEST_CASE("mistakes in the operations options: file:line: option: problem") {
  TempFile file;
  CHECK(error_of("tls:\n  cert_file: /nonexistent/cert.pem\n") ==
        "config.yaml:2: tls.cert_file: cannot read \"/nonexistent/cert.pem\": No such file or "
        "directory");
  CHECK(error_of("tls:\n  cert_file: " + file.path + "\n") ==
        "config.yaml:2: tls.key_file: missing: tls.cert_file needs its private key");
  CHECK(error_of("tls:\n  key_file: " + file.path + "\n") ==
        "config.yaml:2: tls.cert_file: missing: tls.key_file needs its certificate");
  CHECK(error_of("tls:\n  min_version: \"1.1\"\n") ==
        "config.yaml:2: tls.min_version: expected 1.2 or 1.3, got \"1.1\"");
  CHECK(error_of("tls:\n  cert: x\n") ==
        "config.yaml:2: tls.cert: unknown option");
  CHECK(error_of("tls:\n  certfile: x\n") ==
        "config.yaml:2: tls.certfile: unknown option (did you mean tls.cert_file?)");
  CHECK(error_of("upstream_tls:\n  verify: sometimes\n") ==
        "config.yaml:2: upstream_tls.verify: expected true or false, got \"sometimes\"");
  CHECK(error_of("upstream_tls:\n  ca_file: /nonexistent/ca.pem\n") ==
        "config.yaml:2: upstream_tls.ca_file: cannot read \"/nonexistent/ca.pem\": No such file "
        "or directory");
  CHECK(error_of("upstream_tls:\n  server_name: \"bad name\"\n") ==
        "config.yaml:2: upstream_tls.server_name: expected a host name or address like "
        "api.internal, got \"bad name\"");
  CHECK(error_of("access_log:\n  mode: some\n") ==
        "config.yaml:2: access_log.mode: expected off, sampled or all, got \"some\"");
  CHECK(error_of("access_log:\n  sample_rate: 2\n") ==
        "config.yaml:2: access_log.sample_rate: expected a number from 0 to 1 like 0.01, got "
        "\"2\"");
  CHECK(error_of("access_log:\n  sample_rate: 10%\n") ==
        "config.yaml:2: access_log.sample_rate: expected a number from 0 to 1 like 0.01, got "
        "\"10%\"");
  CHECK(error_of("access_log:\n  path: \"\"\n") ==
        "config.yaml:2: access_log.path: must not be empty");
}

TEST_CASE("a reload applies routes, the route and store-error defaults, certificates and the access log") {
  TempFile file;
  const Config running = parse("routes:\n  - { path: /a/*, scopes: [x] }\n");
  const Config next = parse("routes:\n  - { path: /a/*, scopes: [y] }\nroutes_default: key\n"
                            "on_store_error: open\naccess_log:\n  mode: all\n");
  CHECK(options_needing_restart(running, next).empty());
  CHECK(reload_refusal(running, next).empty());
  // New certificate files while TLS stays on: applied too.
  const std::string tls = "tls:\n  cert_file: " + file.path + "\n  key_file: " + file.path + "\n";
  Config rotated = parse(tls);
  rotated.tls.cert_file += ".new";
  CHECK(options_needing_restart(parse(tls), rotated).empty());
}

TEST_CASE("a reload that changes keys.pepper is refused with one line naming it, never the pepper") {
  const Config running = parse("keys:\n  pepper: old-secret-pepper\n");
  const std::string refusal = reload_refusal(running, parse("keys:\n  pepper: new-secret-pepper\n"));
  CHECK(refusal ==
        "config.yaml: keys.pepper: changed; every stored key hash was made with the running "
        "pepper, so a new one would make every key invalid: restart keygate to change it");
  CHECK(refusal.find("secret") == std::string::npos);
  CHECK_FALSE(reload_refusal(running, parse("")).empty());  // removing it is a change too
  CHECK_FALSE(reload_refusal(parse(""), running).empty());
  CHECK(reload_refusal(running, running).empty());
}

TEST_CASE("every option is either applied by a reload or named as needing a restart") {
  TempFile file;
  // One change a line, against the defaults; every option of config.yaml is here.
  const std::vector<std::pair<std::string, Names>> cases{
      {"mode: authz\n", {"mode"}},
      {"listen: 127.0.0.1:1\n", {"listen"}},
      {"upstream: http://127.0.0.1:1\n", {"upstream"}},
      {"upstream: https://127.0.0.1:9000\n", {"upstream"}},
      {"admin_listen: 127.0.0.1:1\n", {"admin_listen"}},
      {"threads: 3\n", {"threads"}},
      {"postgres:\n  dsn: host=elsewhere\n", {"postgres"}},
      {"postgres:\n  pool_size: 5\n", {"postgres"}},
      {"postgres:\n  connect_timeout: 1s\n", {"postgres"}},
      {"postgres:\n  query_timeout: 1s\n", {"postgres"}},
      {"redis:\n  url: redis://:pw@127.0.0.1:6379\n", {"redis"}},
      {"redis:\n  url: redis://127.0.0.1:6379/1\n", {"redis"}},
      {"redis:\n  url: redis://127.0.0.1\n", {}},  // the default, written another way
      {"redis:\n  connect_timeout: 2s\n", {"redis"}},
      {"redis:\n  command_timeout: 1s\n", {"redis"}},
      {"keys:\n  headers: [x-key]\n", {"keys.headers"}},
      {"keys:\n  query_parameter: key\n", {"keys.query_parameter"}},
      {"keys:\n  prefix: kg_test\n", {}},  // read by keys create / rotate only
      {"keys:\n  pepper: p\n", {}},        // refused as a whole (reload_refusal)
      {"keys:\n  hide_credentials: false\n", {"keys.hide_credentials"}},
      {"cache:\n  ttl: 1s\n", {"cache"}},
      {"cache:\n  negative_ttl: 1s\n", {"cache"}},
      {"cache:\n  max_entries: 5\n", {"cache"}},
      {"cache:\n  redis_ttl: 1s\n", {"cache"}},
      {"rate_limit:\n  default: 5/1s\n", {"rate_limit"}},
      {"rate_limit:\n  on_redis_error: error\n", {"rate_limit"}},
      {"rate_limit:\n  replicas: 2\n", {"rate_limit"}},
      {"rate_limit:\n  lease: 1\n", {"rate_limit"}},
      {"limits:\n  max_header_bytes: 1000\n", {"limits"}},
      {"limits:\n  max_body_bytes: 1000\n", {"limits"}},
      {"limits:\n  header_timeout: 1s\n", {"limits"}},
      {"limits:\n  body_timeout: 1s\n", {"limits"}},
      {"limits:\n  idle_timeout: 1s\n", {"limits"}},
      {"limits:\n  upstream_connect_timeout: 1s\n", {"limits"}},
      {"limits:\n  upstream_response_timeout: 1s\n", {"limits"}},
      {"limits:\n  max_connections: 5\n", {"limits"}},
      {"limits:\n  upstream_pool_size: 5\n", {"limits"}},
      {"trusted_proxies: [10.0.0.0/8]\n", {"trusted_proxies"}},
      {"routes:\n  - { path: /a }\n", {}},
      {"routes_default: key\n", {}},
      {"on_store_error: open\n", {}},
      {"usage:\n  enabled: false\n", {"usage"}},
      {"usage:\n  batch_size: 5\n", {"usage"}},
      {"usage:\n  flush_interval: 5s\n", {"usage"}},
      {"usage:\n  queue_size: 5\n", {"usage"}},
      {"usage:\n  spill_path: /tmp/elsewhere\n", {"usage"}},
      {"usage:\n  last_used_interval: 5s\n", {"usage"}},
      {"usage:\n  retention_days: 5\n", {"usage"}},
      {"shutdown_timeout: 5s\n", {"shutdown_timeout"}},
      {"tls:\n  cert_file: " + file.path + "\n  key_file: " + file.path + "\n", {"tls"}},
      {"tls:\n  min_version: \"1.3\"\n", {}},
      {"upstream_tls:\n  verify: false\n", {"upstream_tls"}},
      {"upstream_tls:\n  ca_file: " + file.path + "\n", {"upstream_tls"}},
      {"upstream_tls:\n  server_name: api.internal\n", {"upstream_tls"}},
      {"access_log:\n  mode: all\n", {}},
      {"access_log:\n  sample_rate: 0.5\n", {}},
      {"access_log:\n  path: stdout\n", {}},
  };
  const Config defaults = parse("");
  for (const auto& [yaml, expected] : cases) {
    CAPTURE(yaml);
    CHECK(options_needing_restart(defaults, parse(yaml)) == expected);
  }
}

TEST_CASE("a reload names, in file order, the options that need a restart") {
  TempFile file;
  const Config running = parse("");
  const Config next = parse(
      "listen: 127.0.0.1:9999\nthreads: 3\nredis:\n  url: redis://10.0.0.1:6379\n"
      "limits:\n  idle_timeout: 5s\nrate_limit:\n  default: 5/1s\n"
      "tls:\n  cert_file: " + file.path + "\n  key_file: " + file.path + "\n"
      "upstream_tls:\n  verify: false\n");
  const std::vector<std::string> expected{"listen", "threads", "redis", "rate_limit", "limits",
                                          "tls", "upstream_tls"};
  CHECK(options_needing_restart(running, next) == expected);
  CHECK(options_needing_restart(next, next).empty());
}

TEST_CASE("log lines are one JSON object with ts, level, msg and the fields") {
  const std::string line = keygate::core::format_log_line(
      "error", "reload rejected", {{"error", "config.yaml:3: \"x\"\tbad\n"}, {"routes", 3}});
  CHECK(line.starts_with("{\"ts\":\""));
  CHECK(line.ends_with("}\n"));
  CHECK(line.find("\"level\":\"error\",\"msg\":\"reload rejected\"") != std::string::npos);
  CHECK(line.find("\"error\":\"config.yaml:3: \\\"x\\\"\\u0009bad\\u000a\"") != std::string::npos);
  CHECK(line.find("\"routes\":3}") != std::string::npos);
  CHECK(line.find('\n') == line.size() - 1);
}

}  // TEST_SUITE
