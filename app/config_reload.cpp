// SIGHUP: what a new configuration may change in a running process (see config.hpp).
#include <boost/pfr/ops.hpp>

#include <utility>

#include "app/config.hpp"

namespace keygate::app {

std::string reload_refusal(const Config& running, const Config& next) {
  // A new pepper would turn every key into an unknown key at once; refused as a whole, so
  // nothing changes half-way. Neither value is shown.
  if (next.keys.pepper != running.keys.pepper) {
    return next.source + ": keys.pepper: changed; every stored key hash was made with the "
           "running pepper, so a new one would make every key invalid: restart keygate to "
           "change it";
  }
  // The key table and the key text rule go together: a reload that changed one would judge
  // keys by one table's rule and look them up in another.
  if (next.store.schema != running.store.schema || next.store.preset != running.store.preset ||
      next.store.custom != running.store.custom || next.store.revocation != running.store.revocation ||
      next.store.poll_interval != running.store.poll_interval) {
    return next.source + ": store: changed; the key table is chosen at startup: restart keygate to change it";
  }
  return {};
}

std::vector<std::string> options_needing_restart(const Config& a, const Config& b) {
  // Values compare with !=, sections field by field (boost::pfr), so that a field added to a
  // section later is compared too.
  using boost::pfr::ne;
  const std::pair<const char*, bool> changes[] = {
      {"mode", a.mode != b.mode},
      {"listen", ne(a.listen, b.listen)},
      {"upstream", ne(a.upstream, b.upstream)},
      {"admin_listen", ne(a.admin_listen, b.admin_listen)},
      {"api_listen", a.api_listen.has_value() != b.api_listen.has_value() ||
                         (a.api_listen && ne(*a.api_listen, *b.api_listen))},
      {"threads", a.threads != b.threads},
      {"postgres", ne(a.postgres, b.postgres)},
      {"redis", ne(a.redis, b.redis) || a.redis_cluster != b.redis_cluster},
      {"keys.headers", a.keys.headers != b.keys.headers},
      {"keys.query_parameter", a.keys.query_parameter != b.keys.query_parameter},
      {"keys.hide_credentials", a.keys.hide_credentials != b.keys.hide_credentials},
      {"cache", ne(a.cache, b.cache)},
      {"rate_limit", ne(a.rate_limit, b.rate_limit)},
      {"limits", ne(a.limits, b.limits)},
      {"trusted_proxies", a.trusted_proxies != b.trusted_proxies},
      {"usage", ne(a.usage, b.usage)},
      {"shutdown_timeout", a.shutdown_timeout != b.shutdown_timeout},
      {"tls", a.tls.enabled() != b.tls.enabled()},  // on <-> off; new files are applied
      {"upstream_tls", ne(a.upstream_tls, b.upstream_tls)},
      {"api", a.api.scopes != b.api.scopes || ne(a.api.leaks, b.api.leaks)},
  };
  std::vector<std::string> names;
  for (const auto& [name, changed] : changes) {
    if (changed) names.emplace_back(name);
  }
  return names;
}

}  // namespace keygate::app
