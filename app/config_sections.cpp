// The sections of config.yaml (see config_sections.hpp): one table of handlers per section,
// one line per option, plus the checks that span options (a certificate needs its key).
#include "app/config_sections.hpp"

#include <functional>
#include <optional>

namespace keygate::app::configuration {
namespace {

void read_section(const Reader& r, const Entry& section, Config::Postgres& postgres) {
  r.read_mapping(section, {
      {"dsn", required_into(r, postgres.dsn)},
      {"pool_size", number_into(r, postgres.pool_size, 1, 64)},
      {"connect_timeout", duration_into(r, postgres.connect_timeout)},
      {"query_timeout", duration_into(r, postgres.query_timeout)},
  });
}

// redis: one server (url) or a cluster (cluster: its seed nodes, with username / password).
void read_redis(const Reader& r, const Entry& section, Config& config) {
  store::RedisOptions& redis = config.redis;
  int url_line = 0;
  int cluster_line = 0;
  int credentials_line = 0;
  std::string credentials_option;
  std::optional<std::string> username;
  std::optional<std::string> password;
  auto credential_into = [&](std::optional<std::string>& target) {
    return [&](const Entry& e) {
      target = r.text(e);
      if (credentials_line == 0) {
        credentials_line = e.line;
        credentials_option = e.option;
      }
    };
  };
  r.read_mapping(section, {
      {"url", [&](const Entry& e) {
         set_redis_url(redis, r.text(e), r.at(e));
         url_line = e.line;
       }},
      {"cluster", [&](const Entry& e) {
         const std::vector<Entry> items = r.items(e);
         std::vector<std::string> texts;
         for (const Entry& item : items) texts.push_back(r.text(item));
         config.redis_cluster = redis_nodes(texts, [&](std::size_t i) {
           return i < items.size() ? r.at(items[i]) : r.at(e);
         });
         cluster_line = e.line;
       }},
      {"username", credential_into(username)},
      {"password", credential_into(password)},
      {"connect_timeout", duration_into(r, redis.connect_timeout)},
      {"command_timeout", duration_into(r, redis.command_timeout)},
  });
  if (url_line != 0 && cluster_line != 0) {
    r.at(cluster_line, "redis.cluster")
        .fail("redis.url is set too (line " + std::to_string(url_line) +
              "); a cluster is named by its seed nodes alone: remove redis.url, and put its "
              "credentials in redis.username / redis.password");
  }
  if (credentials_line != 0 && cluster_line == 0) {
    r.at(credentials_line, credentials_option)
        .fail("is for redis.cluster; one server's credentials go in redis.url "
              "(redis://USER:PASSWORD@host:6379)");
  }
  if (username && !username->empty() && (!password || password->empty())) {
    r.at(credentials_line, "redis.password").fail("missing: redis.username needs a password");
  }
  if (cluster_line != 0) {
    redis.username = username.value_or("");
    redis.password = password.value_or("");
  }
}

void read_section(const Reader& r, const Entry& section, Config::Keys& keys) {
  int headers_line = section.line;
  const Handler read_headers = list_into(r, keys.headers, header_name);
  r.read_mapping(section, {
      {"headers", [&](const Entry& e) {
         headers_line = e.line;
         read_headers(e);
       }},
      {"query_parameter", parsed_into(r, keys.query_parameter, query_parameter)},
      {"prefix", parsed_into(r, keys.prefix, key_prefix)},
      {"pepper", text_into(r, keys.pepper)},
      {"hide_credentials", boolean_into(r, keys.hide_credentials)},
  });
  if (keys.headers.empty() && keys.query_parameter.empty()) {
    r.at(headers_line, "keys.headers")
        .fail("no header (and no keys.query_parameter) to take keys from; list at least one");
  }
}

void read_section(const Reader& r, const Entry& section, Config::Cache& cache) {
  r.read_mapping(section, {
      {"ttl", duration_into(r, cache.ttl, true)},
      {"negative_ttl", duration_into(r, cache.negative_ttl, true)},
      {"max_entries", number_into(r, cache.max_entries, 1)},
      {"redis_ttl", duration_into(r, cache.redis_ttl)},
  });
}

void read_section(const Reader& r, const Entry& section, Config::RateLimit& limits) {
  r.read_mapping(section, {
      {"default", parsed_into(r, limits.default_limit, rate_limit)},
      {"on_redis_error", parsed_into(r, limits.on_redis_error, redis_error_policy)},
      {"replicas", number_into(r, limits.replicas, 1)},
      {"lease", number_into(r, limits.lease, 1, 100000)},
  });
}

void read_section(const Reader& r, const Entry& section, Config::Limits& limits) {
  r.read_mapping(section, {
      {"max_header_bytes", number_into(r, limits.max_header_bytes, 1)},
      {"max_body_bytes", number_into(r, limits.max_body_bytes, 0)},
      {"header_timeout", duration_into(r, limits.header_timeout)},
      {"body_timeout", duration_into(r, limits.body_timeout)},
      {"idle_timeout", duration_into(r, limits.idle_timeout)},
      {"upstream_connect_timeout", duration_into(r, limits.upstream_connect_timeout)},
      {"upstream_response_timeout", duration_into(r, limits.upstream_response_timeout)},
      {"max_connections", number_into(r, limits.max_connections, 1)},
      {"upstream_pool_size", number_into(r, limits.upstream_pool_size, 0)},
  });
}

void read_section(const Reader& r, const Entry& section, Config::Usage& usage) {
  r.read_mapping(section, {
      {"enabled", boolean_into(r, usage.enabled)},
      {"batch_size", number_into(r, usage.batch_size, 1)},
      {"flush_interval", duration_into(r, usage.flush_interval)},
      {"queue_size", number_into(r, usage.queue_size, 1)},
      {"spill_path", required_into(r, usage.spill_path)},
      {"last_used_interval", duration_into(r, usage.last_used_interval)},
      {"retention_days", number_into(r, usage.retention_days, 1)},
  });
}

authz::Route read_route(const Reader& r, const Entry& item) {
  if (!item.value.IsMap()) {
    r.at(item).fail("expected a mapping like { path: /inventory/*, scopes: [inventory:read] }, "
                    "got " + describe(item.value));
  }
  authz::Route route;
  bool has_path = false;
  int scopes_line = item.line;
  const Handler read_scopes = list_into(r, route.scopes, required);
  auto read_rate_limit = [&](const Entry& e) { route.rate_limit = rate_limit(r.text(e), r.at(e)); };
  r.read_mapping(item, {
      {"path", [&](const Entry& e) {
         route.pattern = route_path(r.text(e), r.at(e));
         has_path = true;
       }},
      {"methods", list_into(r, route.methods, method_name)},
      {"scopes", [&](const Entry& e) {
         scopes_line = e.line;
         read_scopes(e);
       }},
      {"public", boolean_into(r, route.is_public)},
      {"rate_limit", read_rate_limit},
  });
  if (!has_path) {
    r.at(item.line, item.option + ".path")
        .fail("missing: every route needs a path like /inventory/*");
  }
  if (route.is_public && !route.scopes.empty()) {
    r.at(scopes_line, item.option + ".scopes")
        .fail("a public route takes no key, so it cannot require scopes");
  }
  return route;
}

void read_section(const Reader& r, const Entry& section, proxy::TlsOptions& tls) {
  int cert_line = section.line;
  int key_line = section.line;
  r.read_mapping(section, {
      {"cert_file", [&](const Entry& e) {
         cert_line = e.line;
         tls.cert_file = readable_file(r.text(e), r.at(e));
       }},
      {"key_file", [&](const Entry& e) {
         key_line = e.line;
         tls.key_file = readable_file(r.text(e), r.at(e));
       }},
      {"min_version", choice_into(r, tls.min_version, tls_version_choices)},
  });
  if (!tls.cert_file.empty() && tls.key_file.empty()) {
    r.at(cert_line, "tls.key_file").fail("missing: tls.cert_file needs its private key");
  }
  if (tls.cert_file.empty() && !tls.key_file.empty()) {
    r.at(key_line, "tls.cert_file").fail("missing: tls.key_file needs its certificate");
  }
}

void read_section(const Reader& r, const Entry& section, Config::UpstreamTls& tls) {
  r.read_mapping(section, {
      {"verify", boolean_into(r, tls.verify)},
      {"ca_file", parsed_into(r, tls.ca_file, readable_file)},
      {"server_name", parsed_into(r, tls.server_name, server_name)},
  });
}

void read_section(const Reader& r, const Entry& section, Config::Api& api) {
  r.read_mapping(section, {
      {"scopes", list_into(r, api.scopes, scope_name)},
      {"leaks", [&](const Entry& e) {
         r.read_mapping(e, {
             {"public_keys_file", parsed_into(r, api.leaks.public_keys_file, leak_keys_file)},
             {"action", choice_into(r, api.leaks.action, leak_action_choices)},
         });
       }},
  });
}

void read_section(const Reader& r, const Entry& section, proxy::AccessLogOptions& log) {
  r.read_mapping(section, {
      {"mode", choice_into(r, log.mode, access_log_mode_choices)},
      {"sample_rate", parsed_into(r, log.sample_rate, share)},
      {"path", required_into(r, log.path)},
  });
}

// A section's handler: its own table (the read_section for its type), read into its part of
// the Config.
template <typename Section>
Handler section_into(const Reader& r, Section& target) {
  return [&r, &target](const Entry& e) { read_section(r, e, target); };
}

}  // namespace

Config read_config(const Reader& r, const Entry& root) {
  Config config;
  auto read_routes = [&](const Entry& e) {
    for (const Entry& item : r.items(e)) config.routes.push_back(read_route(r, item));
  };
  // The top-level values first, then the sections (each in config.yaml's order).
  r.read_mapping(root, {
      {"mode", choice_into(r, config.mode, mode_choices)},
      {"listen", parsed_into(r, config.listen, host_port)},
      {"upstream", parsed_into(r, config.upstream, upstream_url)},
      {"admin_listen", parsed_into(r, config.admin_listen, host_port)},
      {"api_listen", [&](const Entry& e) {
         const std::string text = r.text(e);
         if (text == "off") config.api_listen.reset();
         else config.api_listen = host_port(text, r.at(e));
       }},
      {"threads", parsed_into(r, config.threads, thread_count)},
      {"trusted_proxies", list_into(r, config.trusted_proxies, network)},
      {"routes_default", choice_into(r, config.routes_default, routes_default_choices)},
      {"on_store_error", choice_into(r, config.on_store_error, on_store_error_choices)},
      {"shutdown_timeout", duration_into(r, config.shutdown_timeout)},
      {"routes", read_routes},
      {"store", [&](const Entry& e) { read_store(r, e, config.store); }},
      {"postgres", section_into(r, config.postgres)},
      {"redis", [&](const Entry& e) { read_redis(r, e, config); }},
      {"keys", section_into(r, config.keys)},
      {"cache", section_into(r, config.cache)},
      {"rate_limit", section_into(r, config.rate_limit)},
      {"limits", section_into(r, config.limits)},
      {"usage", section_into(r, config.usage)},
      {"tls", section_into(r, config.tls)},
      {"upstream_tls", section_into(r, config.upstream_tls)},
      {"access_log", section_into(r, config.access_log)},
      {"api", section_into(r, config.api)},
  });
  if (config.store.schema == Config::Store::Schema::custom &&
      config.store.custom.encoding == store::CredentialEncoding::hmac_sha256 && config.keys.pepper.empty()) {
    r.at(root.line, "keys.pepper").fail("missing: store.credential.encoding hmac-sha256 needs the pepper its hashes were made with");
  }
  if (config.api_listen && config.store.schema == Config::Store::Schema::custom) {
    r.at(root.line, "api_listen").fail("the key-management API serves keygate's own api_keys: it needs store.schema: native");
  }
  return config;
}

}  // namespace keygate::app::configuration
