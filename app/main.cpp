// keygate: one binary, several subcommands (see `keygate --help`).
#include <cstdio>
#include <exception>
#include <filesystem>
#include <string>
#include <vector>

#include "app/cli_args.hpp"
#include "app/commands.hpp"
#include "app/config.hpp"

namespace {

constexpr const char* usage_text =
    "usage: keygate [--config FILE] COMMAND ...\n"
    "\n"
    "commands:\n"
    "  serve                       run the proxy (or the authz-only filter, mode: authz)\n"
    "  migrate [up|down|status]    apply or roll back the SQL migrations\n"
    "  keys create --owner TYPE:ID --name NAME [--scopes a,b] [--expires-in 30d]\n"
    "              [--rate-limit 100/60s] [--quota N] [--allowed-ips CIDR,...]\n"
    "              [--description TEXT] [--json]\n"
    "  keys list [--owner TYPE:ID] [--json]\n"
    "  keys show ID [--json]\n"
    "  keys revoke ID\n"
    "  keys rotate ID [--grace 24h] [--json]\n"
    "  keys ... --preset NAME      the same against a preset's own table (store.schema: custom)\n"
    "  usage ID [--since 1h] [--json]\n"
    "\n"
    "The config file is --config FILE, else $KEYGATE_CONFIG, else ./config.yaml if present.\n";

struct CommandLine {
  std::string config_path;  // empty: not given
  std::string command;
  std::vector<std::string> args;
};

// --config may stand anywhere; everything else is left in order for the subcommand.
CommandLine split_command_line(int argc, char** argv) {
  CommandLine line;
  std::vector<std::string> rest;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--config") {
      if (i + 1 >= argc) throw keygate::app::UsageError("--config: missing file name");
      line.config_path = argv[++i];
    } else if (arg.starts_with("--config=")) {
      line.config_path = arg.substr(9);
    } else {
      rest.push_back(std::move(arg));
    }
  }
  if (line.config_path.empty()) {
    if (const char* env = std::getenv("KEYGATE_CONFIG"); env != nullptr && *env != '\0') {
      line.config_path = env;
    }
  }
  if (!rest.empty()) {
    line.command = rest.front();
    line.args.assign(rest.begin() + 1, rest.end());
  }
  return line;
}

keygate::app::Config load_config(const std::string& explicit_path) {
  const auto environment = keygate::app::process_environment();
  if (!explicit_path.empty()) return keygate::app::load_config_file(explicit_path, environment);
  if (std::filesystem::exists("config.yaml")) {
    return keygate::app::load_config_file("config.yaml", environment);
  }
  return keygate::app::default_config(environment);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace keygate::app;
  try {
    CommandLine line = split_command_line(argc, argv);
    if (line.command.empty() || line.command == "help" || line.command == "--help" ||
        line.command == "-h") {
      std::fputs(usage_text, line.command.empty() ? stderr : stdout);
      return line.command.empty() ? exit_usage : exit_ok;
    }
    if (line.command == "version" || line.command == "--version") {
      std::puts("keygate 0.1.0");
      return exit_ok;
    }
    int (*run)(const Config&, Args) = nullptr;
    if (line.command == "serve") run = run_serve;
    else if (line.command == "migrate") run = run_migrate;
    else if (line.command == "keys") run = run_keys;
    else if (line.command == "usage") run = run_usage;
    else throw UsageError("unknown command " + quoted_argument(line.command) + " (try keygate --help)");

    const Config config = load_config(line.config_path);
    return run(config, line.args);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "keygate: %s\n", e.what());
    return exit_usage;
  } catch (const ConfigError& e) {
    std::fprintf(stderr, "keygate: %s\n", e.what());
    return exit_usage;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "keygate: %s\n", e.what());
    return exit_failure;
  }
}
