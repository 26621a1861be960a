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
  CHECK(c.tls.min_version == "1.2");
  CHECK(c.upstream_tls.verify);
  CHECK(c.upstream_tls.ca_file.empty());
  CHECK(c.upstream_tls.server_name.empty());
  CHECK(c.access_log.mode == "off");
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
  CHECK(c.tls.min_version == "1.3");
  CHECK_FALSE(c.upstream_tls.verify);
  CHECK(c.upstream_tls.ca_file == file.path);
  CHECK(c.upstream_tls.server_name == "api.internal");
  CHECK(c.access_log.mode == "sampled");
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

TEST_CASE("a reload applies routes, pepper, certificates and the access log") {
  TempFile file;
  const Config running = parse("routes:\n  - { path: /a/*, scopes: [x] }\n");
  const Config next = parse("routes:\n  - { path: /a/*, scopes: [y] }\nkeys:\n  pepper: p\n"
                            "access_log:\n  mode: all\n");
  CHECK(options_needing_restart(running, next).empty());
  // New certificate files while TLS stays on: applied too.
  const std::string tls = "tls:\n  cert_file: " + file.path + "\n  key_file: " + file.path + "\n";
  Config rotated = parse(tls);
  rotated.tls.cert_file += ".new";
  CHECK(options_needing_restart(parse(tls), rotated).empty());
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
