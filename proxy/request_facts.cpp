#include "proxy/request_facts.hpp"

#include <boost/beast/core/string.hpp>

#include <string>

#include "authz/client_address.hpp"
#include "proxy/server.hpp"

namespace keygate::proxy {

namespace {

// All of the request's values of `name`, joined with ',' (a list header sent several times).
std::string_view joined_values(const Request& request, std::string_view name, std::string& out) {
  std::string_view first;
  std::size_t count = 0;
  for (const auto& field : request) {
    if (!beast::iequals(field.name_string(), name)) continue;
    if (count++ == 0) {
      first = field.value();
    } else {
      if (count == 2) out.assign(first);
      out += ',';
      out += field.value();
    }
  }
  return count > 1 ? std::string_view(out) : first;
}

std::string_view first_value(const Request& request, std::string_view a, std::string_view b) {
  if (auto it = request.find(a); it != request.end()) return it->value();
  if (auto it = request.find(b); it != request.end()) return it->value();
  return {};
}

// Every configured header (each time it is sent) and the query parameter, when enabled.
authz::PresentedKey presented_key(const Request& request, const ProxyOptions& options,
                                  const std::optional<authz::NormalizedTarget>& target) {
  authz::PresentedKey presented;
  for (const auto& field : request) {
    for (const std::string& name : options.credential_headers) {
      if (!beast::iequals(field.name_string(), name)) continue;
      if (const auto key = authz::credential_from_header(name, field.value())) presented.add(*key);
    }
  }
  if (target) authz::add_query_credentials(target->query, options.credential_query_parameter, presented);
  return presented;
}

}  // namespace

RequestFacts describe_request(const Request& request, const ProxyOptions& options,
                              const Peer& peer) {
  RequestFacts facts;
  facts.method = request.method_string();
  std::string_view target = request.target();
  if (options.mode == ProxyOptions::Mode::authz && peer.trusted) {
    const auto method = first_value(request, "x-original-method", "x-forwarded-method");
    const auto uri = first_value(request, "x-original-uri", "x-forwarded-uri");
    if (!method.empty()) facts.method = method;
    if (!uri.empty()) target = uri;
  }
  facts.target = authz::normalize_target(target);
  facts.credential = presented_key(request, options, facts.target);

  std::string joined;
  const auto forwarded_for =
      peer.trusted ? joined_values(request, "x-forwarded-for", joined) : std::string_view();
  facts.client_ip = authz::client_address(peer.address, forwarded_for, options.trusted_proxies);
  return facts;
}

}  // namespace keygate::proxy
