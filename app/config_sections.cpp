// The sections of config.yaml (see config_sections.hpp): one table of handlers per section,
// one line per option, plus the checks that span options (a certificate needs its key).
#include "app/config_sections.hpp"

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

void read_section(const Reader& r, const Entry& section, store::RedisOptions& redis) {
  r.read_mapping(section, {
      {"url", [&](const Entry& e) { set_redis_url(redis, r.text(e), r.at(e)); }},
      {"connect_timeout", duration_into(r, redis.connect_timeout)},
      {"command_timeout", duration_into(r, redis.command_timeout)},
  });
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
      {"threads", parsed_into(r, config.threads, thread_count)},
      {"trusted_proxies", list_into(r, config.trusted_proxies, network)},
      {"routes_default", choice_into(r, config.routes_default, routes_default_choices)},
      {"on_store_error", choice_into(r, config.on_store_error, on_store_error_choices)},
      {"shutdown_timeout", duration_into(r, config.shutdown_timeout)},
      {"routes", read_routes},
      {"postgres", section_into(r, config.postgres)},
      {"redis", section_into(r, config.redis)},
      {"keys", section_into(r, config.keys)},
      {"cache", section_into(r, config.cache)},
      {"rate_limit", section_into(r, config.rate_limit)},
      {"limits", section_into(r, config.limits)},
      {"usage", section_into(r, config.usage)},
      {"tls", section_into(r, config.tls)},
      {"upstream_tls", section_into(r, config.upstream_tls)},
      {"access_log", section_into(r, config.access_log)},
  });
  return config;
}

}  // namespace keygate::app::configuration
