// Reads config.yaml into app::Config in three steps: parse the YAML, read each section
// (config_sections.cpp; values parsed by config_values.hpp, ${VAR} expanded by the reader),
// then apply the KEYGATE_* overrides from the environment, here.
#include "app/config.hpp"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <sstream>
#include <string_view>

#include "app/config_sections.hpp"
#include "core/text.hpp"
#include "core/utf8.hpp"

extern char** environ;

namespace keygate::app {
namespace {

using configuration::Origin;

// Connection settings from the environment win over the file, as container operators expect.
// An empty variable counts as unset, so `KEYGATE_PEPPER=` cannot silently drop a pepper.
void apply_overrides(Config& config, const std::map<std::string, std::string>& environment) {
  auto value = [&](const char* name) -> std::optional<std::string> {
    const auto found = environment.find(name);
    if (found == environment.end() || found->second.empty()) return std::nullopt;
    return found->second;
  };
  auto at = [](const char* name, const char* option) {
    return Origin(std::string(name) + ": " + option);
  };
  if (auto v = value("KEYGATE_MODE")) {
    config.mode = configuration::choice(*v, configuration::mode_choices, at("KEYGATE_MODE", "mode"));
  }
  if (auto v = value("KEYGATE_LISTEN")) {
    config.listen = configuration::host_port(*v, at("KEYGATE_LISTEN", "listen"));
  }
  if (auto v = value("KEYGATE_UPSTREAM")) {
    config.upstream = configuration::upstream_url(*v, at("KEYGATE_UPSTREAM", "upstream"));
  }
  if (auto v = value("KEYGATE_ADMIN_LISTEN")) {
    config.admin_listen = configuration::host_port(*v, at("KEYGATE_ADMIN_LISTEN", "admin_listen"));
  }
  if (auto v = value("KEYGATE_API_LISTEN")) {
    if (*v == "off") config.api_listen.reset();
    else config.api_listen = configuration::host_port(*v, at("KEYGATE_API_LISTEN", "api_listen"));
  }
  if (auto v = value("KEYGATE_THREADS")) {
    config.threads = configuration::thread_count(*v, at("KEYGATE_THREADS", "threads"));
  }
  if (auto v = value("KEYGATE_POSTGRES_DSN")) config.postgres.dsn = *v;
  // Either names where Redis is, in place of the file's redis.url or redis.cluster.
  const auto redis_url = value("KEYGATE_REDIS_URL");
  const auto redis_cluster = value("KEYGATE_REDIS_CLUSTER");
  if (redis_url && redis_cluster) {
    at("KEYGATE_REDIS_CLUSTER", "redis.cluster")
        .fail("KEYGATE_REDIS_URL is set too; set one of them (one server, or a cluster's seed nodes)");
  }
  if (redis_url) {
    configuration::set_redis_url(config.redis, *redis_url, at("KEYGATE_REDIS_URL", "redis.url"));
    config.redis_cluster.clear();
  }
  if (redis_cluster) {
    std::vector<std::string> seeds = core::split_list(*redis_cluster);
    for (std::string& seed : seeds) seed = std::string(core::trim_blanks(seed));
    const Origin origin = at("KEYGATE_REDIS_CLUSTER", "redis.cluster");
    if (config.redis_cluster.empty()) {
      // The file named one server: its URL's credentials are not the cluster's.
      config.redis.username.clear();
      config.redis.password.clear();
    }
    config.redis_cluster = configuration::redis_nodes(seeds, [&origin](std::size_t) { return origin; });
  }
  if (auto v = value("KEYGATE_PEPPER")) config.keys.pepper = *v;
}

// Control characters as \n, \t or \xNN.
std::string one_line(std::string_view text) {
  std::string line;
  line.reserve(text.size());
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '\n') {
      line += "\\n";
    } else if (c == '\t') {
      line += "\\t";
    } else if (u < 0x20 || u == 0x7f) {
      constexpr char digits[] = "0123456789abcdef";
      line += "\\x";
      line += digits[u >> 4];
      line += digits[u & 0xf];
    } else {
      line += c;
    }
  }
  return line;
}

// Where each document's first node is, reading no further than asked. yaml-cpp 0.7's LoadAll
// never ends on some inputs: after a ',' outside a flow collection its scanner stops moving and
// every call yields one more empty document at the same place, until memory runs out
// (tests/fuzz/config.cpp found it with a file holding just ","). So documents are counted here,
// two at most, and a second one that starts where the first did is that error.
class DocumentStarts final : public YAML::EventHandler {
 public:
  std::vector<YAML::Mark> marks;

  void OnDocumentStart(const YAML::Mark&) override { awaiting_node_ = true; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { node_at(mark); }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { node_at(mark); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                const std::string&) override {
    node_at(mark);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    node_at(mark);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    node_at(mark);
  }
  void OnMapEnd() override {}

 private:
  void node_at(const YAML::Mark& mark) {
    if (awaiting_node_) marks.push_back(mark);
    awaiting_node_ = false;
  }
  bool awaiting_node_ = false;
};

}  // namespace

ConfigError::ConfigError(const std::string& message) : std::runtime_error(one_line(message)) {}

Config parse_config(const std::string& yaml_text, const std::string& source_name,
                    const std::map<std::string, std::string>& environment) {
  const configuration::Reader reader(source_name, environment);
  // yaml-cpp reads a file starting with NUL bytes as UTF-32 or UTF-16 and can then loop until
  // memory runs out (tests/fuzz/config.cpp found it): config files are UTF-8 text.
  if (const std::size_t bad = core::first_invalid_utf8(yaml_text); bad != std::string::npos) {
    const auto line = 1 + std::count(yaml_text.begin(), yaml_text.begin() + static_cast<std::ptrdiff_t>(bad), '\n');
    reader.at(static_cast<int>(line), "")
        .fail(std::string("not UTF-8 text (") +
              (yaml_text[bad] == '\0' ? "a NUL byte" : "a malformed UTF-8 sequence") + " at byte " +
              std::to_string(bad + 1) + "): save the file as UTF-8");
  }
  DocumentStarts starts;
  try {
    std::istringstream in(yaml_text);
    YAML::Parser parser(in);
    for (int n = 0; n < 2 && parser.HandleNextDocument(starts); ++n) {
    }
  } catch (const YAML::Exception& e) {
    reader.at(e.mark.line + 1, "").fail("invalid YAML: " + e.msg);
  }
  if (starts.marks.size() > 1) {
    const YAML::Mark& first = starts.marks[0];
    const YAML::Mark& second = starts.marks[1];
    if (second.pos == first.pos) {
      reader.at(first.line + 1, "").fail("invalid YAML: unexpected " +
                                         configuration::quoted(yaml_text.substr(first.pos, 1)));
    }
    reader.at(second.line + 1, "").fail("only one YAML document is allowed");
  }
  Config config;
  if (!starts.marks.empty()) {
    YAML::Node root;
    try {
      root = YAML::Load(yaml_text);  // the first document, the only one
    } catch (const YAML::Exception& e) {
      reader.at(e.mark.line + 1, "").fail("invalid YAML: " + e.msg);
    }
    const int line = std::max(configuration::line_of(root), 1);
    if (!root.IsNull() && !root.IsMap()) {
      reader.at(line, "").fail("expected a mapping of options (like listen: 0.0.0.0:8080), got " +
                               configuration::kind_of(root));
    }
    config = configuration::read_config(reader, configuration::Entry{"", root, line});
  }
  config.source = source_name;
  apply_overrides(config, environment);
  return config;
}

Config load_config_file(const std::string& path,
                        const std::map<std::string, std::string>& environment) {
  struct Closer {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  const std::unique_ptr<std::FILE, Closer> file(std::fopen(path.c_str(), "rb"));
  if (!file) throw ConfigError("cannot read config file " + path + ": " + std::strerror(errno));
  std::string text;
  char buffer[8192];
  while (const std::size_t n = std::fread(buffer, 1, sizeof buffer, file.get())) {
    text.append(buffer, n);
  }
  // A directory opens fine and fails on the first read (EISDIR).
  if (std::ferror(file.get())) {
    throw ConfigError("cannot read config file " + path + ": " + std::strerror(errno));
  }
  return parse_config(text, path, environment);
}

Config default_config(const std::map<std::string, std::string>& environment) {
  Config config;
  config.source = "(defaults)";
  apply_overrides(config, environment);
  return config;
}

std::map<std::string, std::string> process_environment() {
  std::map<std::string, std::string> environment;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    const std::size_t equals = text.find('=');
    if (equals == std::string_view::npos) continue;
    environment.emplace(std::string(text.substr(0, equals)), std::string(text.substr(equals + 1)));
  }
  return environment;
}

std::string_view name_of(proxy::ProxyOptions::Mode mode) {
  return configuration::name_in(configuration::mode_choices, mode);
}

}  // namespace keygate::app
