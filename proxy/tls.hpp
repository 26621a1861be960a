#pragma once
// Internal to proxy/: OpenSSL contexts for the listener (edge mode) and for the upstream, built
// from the options, with results as values (a reload must never throw the running one away).
#include <memory>
#include <string>

#include "proxy/server.hpp"

namespace boost::asio::ssl {
class context;
}

namespace keygate::proxy {

class Stream;

struct TlsContext {
  std::shared_ptr<boost::asio::ssl::context> context;  // null when `error` says why
  std::string error;
};

// TLS 1.2+ (or 1.3+) server context with the certificate chain and its key; fails when a file
// cannot be read or parsed, or the key does not belong to the certificate.
TlsContext make_server_context(const TlsOptions& options);
// Client context: TLS 1.2+, peer verification (unless verify is off) against ca_file or the
// system's trust store.
TlsContext make_client_context(const UpstreamTlsOptions& options);
// Per connection, before the client handshake: SNI (for a name, not an address) and the name
// or address the upstream's certificate must carry.
void expect_server_name(Stream& stream, const std::string& server_name, bool verify);

}  // namespace keygate::proxy
