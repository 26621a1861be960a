#include "proxy/tls.hpp"

// Asio's OpenSSL glue is compiled once, here (BOOST_ASIO_SEPARATE_COMPILATION).
#include <boost/asio/ssl/impl/src.hpp>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "proxy/stream.hpp"

namespace keygate::proxy {

namespace ssl = boost::asio::ssl;

namespace {

// "cert.pem: <OpenSSL's reason>", and OpenSSL's error queue emptied.
std::string failure(const std::string& what, const boost::system::error_code& ec) {
  std::string reason = ec ? ec.message() : std::string();
  if (const unsigned long code = ERR_peek_last_error(); code != 0) {
    char text[256];
    ERR_error_string_n(code, text, sizeof text);
    if (reason.empty() || reason == "unspecified system error") reason = text;
  }
  ERR_clear_error();
  if (reason.empty()) reason = "unusable";
  return what + ": " + reason;
}

bool is_ip_address(const std::string& text) {
  boost::system::error_code ec;
  boost::asio::ip::make_address(text, ec);
  return !ec;
}

}  // namespace

TlsContext make_server_context(const TlsOptions& options) {
  auto context = std::make_shared<ssl::context>(ssl::context::tls_server);
  SSL_CTX* native = context->native_handle();
  const int version =
      options.min_version == TlsOptions::Version::tls1_3 ? TLS1_3_VERSION : TLS1_2_VERSION;
  SSL_CTX_set_min_proto_version(native, version);
  SSL_CTX_set_options(native, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                  SSL_OP_CIPHER_SERVER_PREFERENCE);
  // The key first: a certificate loaded after it that does not match drops it, which the
  // check below names (OpenSSL's own "key values mismatch" says less).
  boost::system::error_code ec;
  context->use_private_key_file(options.key_file, ssl::context::pem, ec);
  if (ec) return {nullptr, failure("tls.key_file " + options.key_file, ec)};
  context->use_certificate_chain_file(options.cert_file, ec);
  if (ec) return {nullptr, failure("tls.cert_file " + options.cert_file, ec)};
  ERR_clear_error();
  if (SSL_CTX_check_private_key(native) != 1) {
    return {nullptr, failure("tls.key_file " + options.key_file +
                                 " (does not belong to tls.cert_file)", {})};
  }
  ERR_clear_error();
  return {std::move(context), {}};
}

TlsContext make_client_context(const UpstreamTlsOptions& options) {
  auto context = std::make_shared<ssl::context>(ssl::context::tls_client);
  SSL_CTX* native = context->native_handle();
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  SSL_CTX_set_options(native, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  boost::system::error_code ec;
  if (!options.verify) {
    context->set_verify_mode(ssl::verify_none, ec);
  } else {
    context->set_verify_mode(ssl::verify_peer, ec);
    if (!options.ca_file.empty()) {
      context->load_verify_file(options.ca_file, ec);
      if (ec) return {nullptr, failure("upstream_tls.ca_file " + options.ca_file, ec)};
    } else {
      context->set_default_verify_paths(ec);
      if (ec) return {nullptr, failure("the system's trust store", ec)};
    }
  }
  ERR_clear_error();
  return {std::move(context), {}};
}

void expect_server_name(Stream& stream, const std::string& server_name, bool verify) {
  SSL* native = stream.tls().native_handle();
  const bool address = is_ip_address(server_name);
  if (!address) SSL_set_tlsext_host_name(native, server_name.c_str());
  if (!verify) return;
  X509_VERIFY_PARAM* param = SSL_get0_param(native);
  if (address) {
    X509_VERIFY_PARAM_set1_ip_asc(param, server_name.c_str());
  } else {
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    X509_VERIFY_PARAM_set1_host(param, server_name.c_str(), 0);
  }
}

}  // namespace keygate::proxy
