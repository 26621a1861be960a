// proxy::Server with TLS (issue #7): the listener's certificate (verified by the client, TLS
// version floor, reload without touching open connections, a broken file rejected), TLS to the
// upstream (verified against a CA and a name, or 502), and the drain's idle grace. The
// certificates are made here with OpenSSL (a CA and a server certificate for 127.0.0.1).
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <filesystem>

#include "proxy/ops_metrics.hpp"
#include "tests/integration/proxy_harness.hpp"

namespace keygate::test {
namespace {

// ---- certificates -------------------------------------------------------------------------

struct Pem {
  std::string cert_file, key_file;
};

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "kg-tls-XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
  std::filesystem::path path;
};

void add_extension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  REQUIRE(ext != nullptr);
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// A certificate for `cn`; self-signed (a CA) when `issuer` is null, else signed by it.
struct Issued {
  EVP_PKEY* key = nullptr;
  X509* cert = nullptr;
  Pem pem;
  ~Issued() {
    EVP_PKEY_free(key);
    X509_free(cert);
  }
};

std::unique_ptr<Issued> issue(const TempDir& dir, const std::string& cn, const Issued* issuer,
                              const char* san = "IP:127.0.0.1,DNS:localhost") {
  static long serial = 1;
  auto out = std::make_unique<Issued>();
  out->key = EVP_EC_gen("P-256");
  REQUIRE(out->key != nullptr);
  out->cert = X509_new();
  X509_set_version(out->cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(out->cert), ++serial);
  X509_gmtime_adj(X509_getm_notBefore(out->cert), -60);
  X509_gmtime_adj(X509_getm_notAfter(out->cert), 86400);
  X509_set_pubkey(out->cert, out->key);
  X509_NAME* name = X509_get_subject_name(out->cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509* issuer_cert = issuer ? issuer->cert : out->cert;
  X509_set_issuer_name(out->cert, X509_get_subject_name(issuer_cert));
  if (issuer == nullptr) {
    add_extension(out->cert, issuer_cert, NID_basic_constraints, "critical,CA:TRUE");
    add_extension(out->cert, issuer_cert, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_extension(out->cert, issuer_cert, NID_basic_constraints, "CA:FALSE");
    add_extension(out->cert, issuer_cert, NID_subject_alt_name, san);
    add_extension(out->cert, issuer_cert, NID_ext_key_usage, "serverAuth");
  }
  REQUIRE(X509_sign(out->cert, issuer ? issuer->key : out->key, EVP_sha256()) > 0);
  out->pem = {dir.file(cn + ".pem"), dir.file(cn + ".key")};
  std::FILE* f = std::fopen(out->pem.cert_file.c_str(), "w");
  REQUIRE(f != nullptr);
  PEM_write_X509(f, out->cert);
  std::fclose(f);
  f = std::fopen(out->pem.key_file.c_str(), "w");
  REQUIRE(f != nullptr);
  PEM_write_PrivateKey(f, out->key, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(f);
  return out;
}

// ---- a blocking TLS client (OpenSSL's C API; every wait bounded by socket timeouts) --------

int connect_loopback(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  timeval limit{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  return fd;
}

class TlsClient {
 public:
  TlsClient(std::uint16_t port, const std::string& ca_file, int max_version = 0) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
    SSL_CTX_load_verify_locations(ctx_, ca_file.c_str(), nullptr);
    if (max_version != 0) SSL_CTX_set_max_proto_version(ctx_, max_version);
    fd_ = connect_loopback(port);
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd_);
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), "127.0.0.1");
    connected = SSL_connect(ssl_) == 1;
    ERR_clear_error();
  }
  ~TlsClient() {
    SSL_free(ssl_);
    SSL_CTX_free(ctx_);
    ::close(fd_);
  }

  // One request; the reply (status, headers, body) parsed from what arrives within the socket
  // timeouts, or nullopt.
  std::optional<Reply> exchange(const std::string& request) {
    if (SSL_write(ssl_, request.data(), static_cast<int>(request.size())) <= 0) return std::nullopt;
    http::response_parser<http::string_body> parser;
    parser.eager(true);
    for (;;) {
      char chunk[16384];
      const int n = SSL_read(ssl_, chunk, sizeof chunk);
      if (n <= 0) return std::nullopt;
      beast::error_code ec;
      std::size_t offset = 0;
      while (offset < static_cast<std::size_t>(n) && !parser.is_done()) {
        const std::size_t used = parser.put(asio::buffer(chunk + offset, n - offset), ec);
        if (ec == http::error::need_more) break;
        if (ec) return std::nullopt;
        offset += used;
      }
      if (parser.is_done()) break;
    }
    Reply reply;
    reply.status = parser.get().result_int();
    for (const auto& field : parser.get()) {
      std::string name(field.name_string());
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      reply.headers.emplace_back(name, std::string(field.value()));
    }
    reply.body = parser.get().body();
    return reply;
  }

  // The subject CN of the certificate the server presented.
  std::string peer_cn() const {
    X509* cert = SSL_get1_peer_certificate(ssl_);
    if (cert == nullptr) return {};
    char cn[256] = {};
    X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
    X509_free(cert);
    return cn;
  }

  bool connected = false;

 private:
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  int fd_ = -1;
};

// ---- a TLS upstream: one connection at a time, each request answered "tls ok" --------------

class TlsUpstream {
 public:
  explicit TlsUpstream(const Pem& pem) {
    ctx_ = SSL_CTX_new(TLS_server_method());
    REQUIRE(SSL_CTX_use_certificate_file(ctx_, pem.cert_file.c_str(), SSL_FILETYPE_PEM) == 1);
    REQUIRE(SSL_CTX_use_PrivateKey_file(ctx_, pem.key_file.c_str(), SSL_FILETYPE_PEM) == 1);
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    REQUIRE(::listen(listener_, 16) == 0);
    socklen_t length = sizeof address;
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length);
    port = ntohs(address.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~TlsUpstream() {
    stopping_ = true;
    thread_.join();
    ::close(listener_);
    SSL_CTX_free(ctx_);
  }

  std::uint16_t port = 0;
  std::atomic<int> requests{0};
  std::atomic<int> failed_handshakes{0};

 private:
  void serve() {
    while (!stopping_) {
      pollfd p{listener_, POLLIN, 0};
      if (::poll(&p, 1, 50) != 1) continue;
      const int fd = ::accept(listener_, nullptr, nullptr);
      if (fd < 0) continue;
      timeval limit{2, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
      SSL* ssl = SSL_new(ctx_);
      SSL_set_fd(ssl, fd);
      if (SSL_accept(ssl) == 1) {
        std::string pending;
        char chunk[4096];
        while (!stopping_) {
          const int n = SSL_read(ssl, chunk, sizeof chunk);
          if (n <= 0) break;
          pending.append(chunk, static_cast<std::size_t>(n));
          std::size_t end;
          while ((end = pending.find("\r\n\r\n")) != std::string::npos) {
            pending.erase(0, end + 4);
            ++requests;
            const std::string answer = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\ntls ok";
            SSL_write(ssl, answer.data(), static_cast<int>(answer.size()));
          }
        }
      } else {
        ++failed_handshakes;
      }
      ERR_clear_error();
      SSL_free(ssl);
      ::close(fd);
    }
  }

  SSL_CTX* ctx_ = nullptr;
  int listener_ = -1;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

struct Certificates {
  TempDir dir;
  std::unique_ptr<Issued> ca = issue(dir, "kg-test-ca", nullptr);
  std::unique_ptr<Issued> other_ca = issue(dir, "kg-other-ca", nullptr);
  std::unique_ptr<Issued> server = issue(dir, "server-one", ca.get());
};

proxy::ProxyOptions tls_options(std::uint16_t upstream_port, const Pem& pem) {
  auto options = test_options(upstream_port);
  options.tls.cert_file = pem.cert_file;
  options.tls.key_file = pem.key_file;
  return options;
}

}  // namespace

TEST_SUITE("proxy tls") {

TEST_CASE("a client verifying with the CA reaches the upstream, which sees https") {
  Certificates certs;
  TestUpstream upstream;
  ProxyUnderTest proxy(tls_options(upstream.port, certs.server->pem));
  TlsClient client(proxy.port, certs.ca->pem.cert_file);
  REQUIRE(client.connected);
  CHECK(client.peer_cn() == "server-one");
  const auto reply = client.exchange(get("/tls", bearer(good_key)));
  REQUIRE(reply);
  CHECK(reply->status == 200);
  CHECK(reply->body == "upstream ok");
  // Keep-alive over TLS: a second request on the same connection.
  const auto again = client.exchange(get("/tls-again", bearer(good_key)));
  REQUIRE(again);
  CHECK(again->status == 200);
  REQUIRE(upstream.wait_for_requests(2));
  const auto received = upstream.received();
  CHECK(received[0].header("x-forwarded-proto") == "https");
  CHECK_FALSE(received[0].has("authorization"));
}

TEST_CASE("a client verifying with another CA fails the handshake, which is counted") {
  Certificates certs;
  TestUpstream upstream;
  ProxyUnderTest proxy(tls_options(upstream.port, certs.server->pem));
  const auto failures_before = count(proxy::ops_metrics().tls_handshake_failures_client);
  TlsClient client(proxy.port, certs.other_ca->pem.cert_file);
  CHECK_FALSE(client.connected);
  // Plain HTTP on the TLS port gets no HTTP answer.
  RawClient plain(proxy.port);
  REQUIRE(plain.send(get("/plain", bearer(good_key))));
  CHECK_FALSE(plain.read_reply(2s));
  CHECK(upstream.received().empty());
  for (int i = 0; i < 100 && count(proxy::ops_metrics().tls_handshake_failures_client) <
                                 failures_before + 2; ++i) {
    std::this_thread::sleep_for(20ms);
  }
  CHECK(count(proxy::ops_metrics().tls_handshake_failures_client) >= failures_before + 2);
}

TEST_CASE("min_version 1.3 refuses a TLS 1.2 client and serves a TLS 1.3 one") {
  Certificates certs;
  TestUpstream upstream;
  auto options = tls_options(upstream.port, certs.server->pem);
  options.tls.min_version = proxy::TlsOptions::Version::tls1_3;
  ProxyUnderTest proxy(options);
  TlsClient old_client(proxy.port, certs.ca->pem.cert_file, TLS1_2_VERSION);
  CHECK_FALSE(old_client.connected);
  TlsClient client(proxy.port, certs.ca->pem.cert_file);
  REQUIRE(client.connected);
  CHECK(client.exchange(get("/v13", bearer(good_key)))->status == 200);
}

TEST_CASE("reload_tls: new connections get the new certificate, open ones keep working") {
  Certificates certs;
  TestUpstream upstream;
  ProxyUnderTest proxy(tls_options(upstream.port, certs.server->pem));
  TlsClient open(proxy.port, certs.ca->pem.cert_file);
  REQUIRE(open.connected);

  // A file that is not a certificate: refused, the running one kept.
  const std::string broken = certs.dir.file("broken.pem");
  std::ofstream(broken) << "not a certificate\n";
  proxy::TlsOptions bad;
  bad.cert_file = broken;
  bad.key_file = certs.server->pem.key_file;
  const std::string error = proxy.server().reload_tls(bad);
  CHECK(error.find(broken) != std::string::npos);
  // A key that does not belong to the certificate: refused too.
  auto rotated = issue(certs.dir, "server-two", certs.other_ca.get());
  proxy::TlsOptions mismatched{rotated->pem.cert_file, certs.server->pem.key_file};
  CHECK(proxy.server().reload_tls(mismatched).find("does not belong") != std::string::npos);
  {
    TlsClient still(proxy.port, certs.ca->pem.cert_file);
    REQUIRE(still.connected);
    CHECK(still.peer_cn() == "server-one");
  }

  proxy::TlsOptions next{rotated->pem.cert_file, rotated->pem.key_file};
  CHECK(proxy.server().reload_tls(next).empty());
  bool switched = false;
  for (int i = 0; i < 100 && !switched; ++i) {  // the workers take it from their queues
    TlsClient fresh(proxy.port, certs.other_ca->pem.cert_file);
    switched = fresh.connected && fresh.peer_cn() == "server-two";
    if (!switched) std::this_thread::sleep_for(20ms);
  }
  CHECK(switched);
  const auto reply = open.exchange(get("/still-open", bearer(good_key)));
  REQUIRE(reply);
  CHECK(reply->status == 200);
}

TEST_CASE("reload_tls cannot turn TLS on for a plain listener") {
  Certificates certs;
  TestUpstream upstream;
  ProxyUnderTest proxy(test_options(upstream.port));
  proxy::TlsOptions tls{certs.server->pem.cert_file, certs.server->pem.key_file};
  CHECK(proxy.server().reload_tls(tls).find("restart") != std::string::npos);
  CHECK(proxy.server().reload_tls(proxy::TlsOptions{}).empty());  // off and off: nothing to do
}

TEST_CASE("a certificate file that cannot be used stops the server from starting") {
  Certificates certs;
  proxy::ProxyOptions options = test_options(1);
  options.tls.cert_file = certs.dir.file("missing.pem");
  options.tls.key_file = certs.server->pem.key_file;
  CHECK_THROWS_WITH_AS(proxy::Server(options, [](asio::io_context&, unsigned) {
                         return proxy::WorkerServices{};
                       }, nullptr),
                       doctest::Contains("missing.pem"), std::runtime_error);
}

TEST_CASE("an https upstream verified against its CA and address is reached") {
  Certificates certs;
  TlsUpstream upstream(certs.server->pem);
  auto options = test_options(upstream.port);
  options.upstream_tls.enabled = true;
  options.upstream_tls.ca_file = certs.ca->pem.cert_file;
  ProxyUnderTest proxy(options);
  for (int i = 0; i < 3; ++i) {
    const auto reply = round_trip(proxy.port, get("/up", bearer(good_key)));
    REQUIRE(reply);
    CHECK(reply->status == 200);
    CHECK(reply->body == "tls ok");
  }
  CHECK(upstream.requests == 3);
}

TEST_CASE("an https upstream that does not verify gets 502: other CA, or another name") {
  Certificates certs;
  TlsUpstream upstream(certs.server->pem);
  SUBCASE("a certificate of another CA") {
    auto options = test_options(upstream.port);
    options.upstream_tls.enabled = true;
    options.upstream_tls.ca_file = certs.other_ca->pem.cert_file;
    ProxyUnderTest proxy(options);
    const auto before = count(proxy::ops_metrics().tls_handshake_failures_upstream);
    const auto reply = round_trip(proxy.port, get("/up", bearer(good_key)));
    REQUIRE(reply);
    CHECK(reply->status == 502);
    CHECK(reply->body.find("upstream_unavailable") != std::string::npos);
    CHECK(count(proxy::ops_metrics().tls_handshake_failures_upstream) == before + 1);
  }
  SUBCASE("a name the certificate does not carry") {
    auto options = test_options(upstream.port);
    options.upstream_tls.enabled = true;
    options.upstream_tls.ca_file = certs.ca->pem.cert_file;
    options.upstream_tls.server_name = "api.other.example";
    ProxyUnderTest proxy(options);
    CHECK(round_trip(proxy.port, get("/up", bearer(good_key)))->status == 502);
  }
  SUBCASE("verify off: encrypted, not authenticated") {
    auto options = test_options(upstream.port);
    options.upstream_tls.enabled = true;
    options.upstream_tls.verify = false;
    options.upstream_tls.ca_file = certs.other_ca->pem.cert_file;
    ProxyUnderTest proxy(options);
    CHECK(round_trip(proxy.port, get("/up", bearer(good_key)))->status == 200);
  }
  CHECK(upstream.requests <= 1);
}

}  // TEST_SUITE

TEST_SUITE("proxy drain") {

TEST_CASE("during the drain's idle grace, a request on an idle connection is served with close") {
  TestUpstream upstream;
  ProxyUnderTest proxy(test_options(upstream.port));
  RawClient idle(proxy.port);
  REQUIRE(idle.send(get("/before", bearer(good_key))));
  const auto first = idle.read_reply();
  REQUIRE(first);
  CHECK_FALSE(first->has("connection"));  // keep-alive
  auto stopped = std::async(std::launch::async, [&] { proxy.stop(); });
  std::this_thread::sleep_for(100ms);  // the drain has begun; the connection is idle
  REQUIRE(idle.send(get("/during", bearer(good_key))));
  const auto reply = idle.read_reply();
  REQUIRE(reply);
  CHECK(reply->status == 200);
  CHECK(reply->header("connection") == "close");
  CHECK(idle.closed_by_peer());
  CHECK(stopped.wait_for(5s) == std::future_status::ready);
}

}  // TEST_SUITE

}  // namespace keygate::test
