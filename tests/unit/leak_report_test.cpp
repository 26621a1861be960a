#include "authz/leak_report.hpp"

#include <doctest/doctest.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <array>
#include <memory>
#include <regex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "authz/key_format.hpp"

using keygate::authz::classify_leaked_token;
using keygate::authz::generate_key;
using keygate::authz::leak_answer_json;
using keygate::authz::LeakedTokenKind;
using keygate::authz::LeakKeys;
using keygate::authz::LeakLabel;
using keygate::authz::LeakVerdict;
using keygate::authz::parse_leak_keys;
using keygate::authz::parse_leak_report;
using keygate::authz::scanner_regex;
using keygate::authz::scanner_regex_kg_live;
using keygate::authz::SignatureCheck;
using keygate::authz::verify_signature;

namespace {

struct PkeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

// A key pair made for the test, signing as GitHub does: ECDSA, SHA-256, DER, base64.
class TestSigner {
 public:
  explicit TestSigner(const char* curve = "P-256")
      : key_(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", curve)) {
    if (!key_) throw std::runtime_error("EC key generation failed");
  }
  explicit TestSigner(Pkey key) : key_(std::move(key)) {}

  std::string public_pem() const {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
    REQUIRE(PEM_write_bio_PUBKEY(bio.get(), key_.get()) == 1);
    char* data = nullptr;
    const long size = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<std::size_t>(size));
  }

  std::string sign_der(std::string_view body) const {
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(),
                                                                 &EVP_MD_CTX_free);
    REQUIRE(EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key_.get()) == 1);
    std::size_t size = 0;
    const auto* data = reinterpret_cast<const unsigned char*>(body.data());
    REQUIRE(EVP_DigestSign(ctx.get(), nullptr, &size, data, body.size()) == 1);
    std::string der(size, '\0');
    REQUIRE(EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(der.data()), &size, data,
                           body.size()) == 1);
    der.resize(size);
    return der;
  }

  std::string sign(std::string_view body) const { return base64(sign_der(body)); }

  static std::string base64(std::string_view bytes) {
    std::string out(4 * ((bytes.size() + 2) / 3), '\0');
    const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                  reinterpret_cast<const unsigned char*>(bytes.data()),
                                  static_cast<int>(bytes.size()));
    out.resize(static_cast<std::size_t>(n));
    return out;
  }

 private:
  Pkey key_;
};

// GitHub's document shape: {"public_keys": [{"key_identifier", "key", "is_current"}]}.
std::string keys_document(const std::vector<std::pair<std::string, std::string>>& keys) {
  boost::json::array list;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    list.push_back(boost::json::object{{"key_identifier", keys[i].first},
                                       {"key", keys[i].second},
                                       {"is_current", i == 0}});
  }
  return boost::json::serialize(boost::json::object{{"public_keys", list}});
}

LeakKeys parsed_keys(const std::string& document) {
  auto parsed = parse_leak_keys(document);
  REQUIRE_MESSAGE(parsed.ok(), parsed.error);
  return std::move(parsed.keys);
}

// The error of a keys document that must be refused; always one line.
std::string keys_error(const std::string& document) {
  const auto parsed = parse_leak_keys(document);
  REQUIRE_FALSE(parsed.ok());
  CHECK(parsed.keys.keys().empty());
  CHECK(parsed.error.find('\n') == std::string::npos);
  return parsed.error;
}

const std::string key_id = "90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a";
const std::string body =
    R"([{"token":"kg_live_0123456789abcdefghijABCDEFGHIJKL4I5Av5","type":"keygate_api_key",)"
    R"("url":"https://github.com/octocat/Hello-World/blob/1234/foo/bar.txt","source":"content"}])";

}  // namespace

TEST_CASE("leak signature: a body signed by a key in the document verifies") {
  const TestSigner signer;
  const LeakKeys keys = parsed_keys(keys_document({{key_id, signer.public_pem()}}));
  CHECK(verify_signature(keys, key_id, signer.sign(body), body) == SignatureCheck::ok);
}

TEST_CASE("leak signature: a body changed by one byte is bad_signature") {
  const TestSigner signer;
  const LeakKeys keys = parsed_keys(keys_document({{key_id, signer.public_pem()}}));
  const std::string signature = signer.sign(body);
  for (std::size_t at : {std::size_t{0}, std::size_t{20}, body.size() - 1}) {
    std::string changed = body;
    changed[at] = static_cast<char>(changed[at] ^ 0x01);
    CHECK(verify_signature(keys, key_id, signature, changed) == SignatureCheck::bad_signature);
  }
  CHECK(verify_signature(keys, key_id, signature, body + " ") == SignatureCheck::bad_signature);
  CHECK(verify_signature(keys, key_id, signature, "") == SignatureCheck::bad_signature);
}

TEST_CASE("leak signature: a signature by a key other than the one named is bad_signature") {
  const TestSigner signer;
  const TestSigner stranger;
  const LeakKeys keys = parsed_keys(keys_document({{key_id, signer.public_pem()}}));
  CHECK(verify_signature(keys, key_id, stranger.sign(body), body) ==
        SignatureCheck::bad_signature);
}

TEST_CASE("leak signature: a key identifier not in the document is unknown_key_id") {
  const TestSigner signer;
  const LeakKeys keys = parsed_keys(keys_document({{key_id, signer.public_pem()}}));
  const std::string signature = signer.sign(body);
  CHECK(verify_signature(keys, "", signature, body) == SignatureCheck::unknown_key_id);
  CHECK(verify_signature(keys, "abcdef", signature, body) == SignatureCheck::unknown_key_id);
  CHECK(verify_signature(keys, key_id.substr(1), signature, body) ==
        SignatureCheck::unknown_key_id);
  CHECK(verify_signature(keys, key_id + "0", signature, body) == SignatureCheck::unknown_key_id);
  CHECK(verify_signature(LeakKeys{}, key_id, signature, body) == SignatureCheck::unknown_key_id);
}

TEST_CASE("leak signature: every key of the document verifies its own signatures") {
  const TestSigner current;
  const TestSigner previous;
  const LeakKeys keys = parsed_keys(
      keys_document({{"aa01", current.public_pem()}, {"bb02", previous.public_pem()}}));
  REQUIRE(keys.keys().size() == 2);
  CHECK(keys.keys()[0].is_current);
  CHECK_FALSE(keys.keys()[1].is_current);
  CHECK(verify_signature(keys, "bb02", previous.sign(body), body) == SignatureCheck::ok);
  CHECK(verify_signature(keys, "aa01", current.sign(body), body) == SignatureCheck::ok);
  CHECK(verify_signature(keys, "aa01", previous.sign(body), body) ==
        SignatureCheck::bad_signature);
}

TEST_CASE("leak signature: text that is not strict base64 of one DER signature is malformed") {
  const TestSigner signer;
  const LeakKeys keys = parsed_keys(keys_document({{key_id, signer.public_pem()}}));
  const std::string der = signer.sign_der(body);
  const std::string good = TestSigner::base64(der);
  const auto check = [&](const std::string& signature) {
    return verify_signature(keys, key_id, signature, body);
  };
  REQUIRE(check(good) == SignatureCheck::ok);

  SUBCASE("not base64") {
    CHECK(check("") == SignatureCheck::malformed_signature);
    CHECK(check("not base64!") == SignatureCheck::malformed_signature);
    CHECK(check(good.substr(0, good.size() - 1)) == SignatureCheck::malformed_signature);
    CHECK(check(" " + good) == SignatureCheck::malformed_signature);
    CHECK(check(good + "\n") == SignatureCheck::malformed_signature);
    CHECK(check(good.substr(0, 8) + "\n" + good.substr(8)) ==
          SignatureCheck::malformed_signature);
    CHECK(check("====") == SignatureCheck::malformed_signature);
    CHECK(check("AA=A") == SignatureCheck::malformed_signature);
    CHECK(check(std::string(300, 'A')) == SignatureCheck::malformed_signature);
    std::string url_safe = good;
    for (char& c : url_safe) c = c == '+' ? '-' : c == '/' ? '_' : c;
    if (url_safe != good) CHECK(check(url_safe) == SignatureCheck::malformed_signature);
  }
  SUBCASE("base64, but not a DER ECDSA signature") {
    CHECK(check("AAAA") == SignatureCheck::malformed_signature);
    CHECK(check(TestSigner::base64("hello, world")) == SignatureCheck::malformed_signature);
    CHECK(check(TestSigner::base64(der + '\0')) == SignatureCheck::malformed_signature);
    CHECK(check(TestSigner::base64(der.substr(0, der.size() - 1))) ==
          SignatureCheck::malformed_signature);
    // The same SEQUENCE with its length in the long form: valid BER, not DER.
    REQUIRE(static_cast<unsigned char>(der[1]) < 0x80);
    const std::string ber = der.substr(0, 1) + "\x81" + der.substr(1);
    CHECK(check(TestSigner::base64(ber)) == SignatureCheck::malformed_signature);
  }
}

TEST_CASE("leak signature: GitHub's published test key, signature and payload verify") {
  // From GitHub's secret scanning partner program documentation ("derived from a test key").
  const std::string pem =
      "-----BEGIN PUBLIC KEY-----\n"
      "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEsz9ugWDj5jK5ELBK42ynytbo38gP\n"
      "HzZFI03Exwz8Lh/tCfL3YxwMdLjB+bMznsanlhK0RwcGP3IDb34kQDIo3Q==\n"
      "-----END PUBLIC KEY-----\n";
  const std::string id = "f9525bf080f75b3506ca1ead061add62b8633a346606dc5fe544e29231c6ee0d";
  const std::string signature =
      "MEUCIFLZzeK++IhS+y276SRk2Pe5LfDrfvTXu6iwKKcFGCrvAiEAhHN2kDOhy2I6eGkOFmxNkOJ+L2y8oQ9A2T9GGJo6WJY=";
  const std::string payload =
      R"([{"token":"some_token","type":"some_type","url":"some_url","source":"some_source"}])";
  const LeakKeys keys = parsed_keys(keys_document({{id, pem}}));
  CHECK(verify_signature(keys, id, signature, payload) == SignatureCheck::ok);
  CHECK(verify_signature(keys, id, signature, payload + "\n") == SignatureCheck::bad_signature);
}

TEST_CASE("leak signature: checks leave the thread's OpenSSL error queue empty") {
  ERR_clear_error();
  const TestSigner signer;
  const LeakKeys keys = parsed_keys(keys_document({{key_id, signer.public_pem()}}));
  CHECK(verify_signature(keys, key_id, "AAAA", body) == SignatureCheck::malformed_signature);
  CHECK(verify_signature(keys, key_id, TestSigner::base64(signer.sign_der("x")), body) ==
        SignatureCheck::bad_signature);
  CHECK_FALSE(parse_leak_keys(keys_document({{key_id, "-----BEGIN PUBLIC KEY-----\nAAAA\n"}})).ok());
  CHECK(ERR_peek_error() == 0);
}

TEST_CASE("leak keys: a document that cannot be used is refused with one line naming the part") {
  const TestSigner signer;
  const std::string pem = signer.public_pem();

  CHECK(keys_error("{\"public_keys\": [") ==
        "the document is not JSON (at byte 17: incomplete JSON)");
  CHECK(keys_error("[]") == "the document must be a JSON object with \"public_keys\"");
  CHECK(keys_error("{}") == "public_keys: missing");
  CHECK(keys_error(R"({"public_keys": {}})") == "public_keys: must be an array");
  CHECK(keys_error(R"({"public_keys": []})") ==
        "public_keys: is empty (no report could be verified)");
  CHECK(keys_error(R"({"public_keys": [7]})") == "public_keys[0]: must be an object");

  std::vector<std::pair<std::string, std::string>> many;
  for (int i = 0; i < 33; ++i) many.emplace_back("a" + std::to_string(i), pem);
  CHECK(keys_error(keys_document(many)) == "public_keys: has 33 keys, over the limit of 32");
  many.pop_back();
  CHECK(parse_leak_keys(keys_document(many)).ok());

  CHECK(keys_error(R"({"public_keys": [{"key": "x"}]})") ==
        "public_keys[0].key_identifier: missing");
  CHECK(keys_error(R"({"public_keys": [{"key_identifier": 12, "key": "x"}]})") ==
        "public_keys[0].key_identifier: must be a string");
  CHECK(keys_error(keys_document({{"", pem}})) ==
        "public_keys[0].key_identifier: must not be empty");
  CHECK(keys_error(keys_document({{"abc", pem}, {"not-hex", pem}})) ==
        "public_keys[1].key_identifier: must be hex digits");
  CHECK(keys_error(keys_document({{std::string(129, 'a'), pem}})) ==
        "public_keys[0].key_identifier: is 129 bytes, over the limit of 128");
  CHECK(keys_error(keys_document({{"ab", pem}, {"cd", pem}, {"ab", pem}})) ==
        "public_keys[2].key_identifier: repeats public_keys[0]");

  CHECK(keys_error(R"({"public_keys": [{"key_identifier": "ab"}]})") ==
        "public_keys[0].key: missing");
  CHECK(keys_error(R"({"public_keys": [{"key_identifier": "ab", "key": ["x"]}]})") ==
        "public_keys[0].key: must be a string");
  CHECK(keys_error(keys_document({{"ab", std::string(5000, 'A')}})) ==
        "public_keys[0].key: is 5000 bytes, over the limit of 4096");
  CHECK(keys_error(keys_document({{"ab", "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE"}})) ==
        "public_keys[0].key: not a PEM public key (no start line)");
  CHECK(keys_error(keys_document({{"ab", pem.substr(0, pem.size() - 10)}})) ==
        "public_keys[0].key: not a PEM public key (bad end line)");
  CHECK(keys_error(keys_document({{"ab", "-----BEGIN PUBLIC KEY-----\nAA!A\n-----END PUBLIC KEY-----\n"}})) ==
        "public_keys[0].key: not a PEM public key (bad base64 decode)");
  CHECK(keys_error(keys_document({{"ab", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"}}))
            .starts_with("public_keys[0].key: holds no valid SubjectPublicKeyInfo ("));
  std::string certificate = pem;
  for (const char* word : {"BEGIN PUBLIC KEY", "END PUBLIC KEY"}) {
    const std::string from(word);
    const std::string to = from.substr(0, from.find(' ')) + " CERTIFICATE";
    certificate.replace(certificate.find(from), from.size(), to);
  }
  CHECK(keys_error(keys_document({{"ab", certificate}})) ==
        "public_keys[0].key: is a PEM \"CERTIFICATE\" block, not \"PUBLIC KEY\"");

  std::string with_current = keys_document({{"ab", pem}});
  with_current.replace(with_current.find("true"), 4, "\"yes\"");
  CHECK(keys_error(with_current) == "public_keys[0].is_current: must be true or false");

  CHECK(keys_error(std::string(64 * 1024 + 1, ' ')) ==
        "the document is 65537 bytes, over the limit of 65536");
}

TEST_CASE("leak keys: a key that is not ECDSA P-256 is refused, naming what it is") {
  const TestSigner p384("P-384");
  CHECK(keys_error(keys_document({{"ab", p384.public_pem()}})) ==
        "public_keys[0].key: is an EC key on secp384r1, not P-256");
  const TestSigner ed25519(Pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519")));
  CHECK(keys_error(keys_document({{"ab", ed25519.public_pem()}})) ==
        "public_keys[0].key: is a key of type ED25519, not ECDSA P-256");
}

TEST_CASE("leak keys: members the document adds are ignored") {
  const TestSigner signer;
  boost::json::object entry{{"key_identifier", "00ff"}, {"key", signer.public_pem()},
                            {"is_current", true}, {"algorithm", "ecdsa"}};
  const std::string document = boost::json::serialize(
      boost::json::object{{"public_keys", boost::json::array{entry}}, {"etag", "x"}});
  const LeakKeys keys = parsed_keys(document);
  REQUIRE(keys.keys().size() == 1);
  CHECK(keys.find("00ff") == &keys.keys()[0]);
  CHECK(keys.find("00FF") == nullptr);
}

TEST_CASE("leak report: GitHub's format gives each match's token, type, url and source") {
  const auto report = parse_leak_report(body);
  REQUIRE_MESSAGE(report.ok(), report.error);
  REQUIRE(report.tokens.size() == 1);
  CHECK(report.tokens[0].token == "kg_live_0123456789abcdefghijABCDEFGHIJKL4I5Av5");
  CHECK(report.tokens[0].type == "keygate_api_key");
  CHECK(report.tokens[0].url == "https://github.com/octocat/Hello-World/blob/1234/foo/bar.txt");
  CHECK(report.tokens[0].source == "content");

  const auto lean = parse_leak_report(
      R"([{"token":"a"},{"token":"b","url":null,"type":"t","extra":{"x":[1]}}])");
  REQUIRE_MESSAGE(lean.ok(), lean.error);
  REQUIRE(lean.tokens.size() == 2);
  CHECK(lean.tokens[0].type.empty());
  CHECK(lean.tokens[1].url.empty());
  CHECK(lean.tokens[1].type == "t");

  const auto empty = parse_leak_report(" [ ] ");
  CHECK(empty.ok());
  CHECK(empty.tokens.empty());
}

TEST_CASE("leak report: a malformed report names the field and the index, never the token") {
  const auto error_of = [](const std::string& text, const std::string& field) {
    const auto report = parse_leak_report(text);
    CHECK_FALSE(report.ok());
    CHECK(report.tokens.empty());
    CHECK(report.field == field);
    CHECK(report.error.find('\n') == std::string::npos);
    CHECK(report.error.find("s3cr3t") == std::string::npos);
    return report.error;
  };

  CHECK(error_of(R"([{"token": "s3cr3t",}])", "") ==
        "the body is not JSON (at byte 20: syntax error)");
  CHECK(error_of("", "") == "the body is not JSON (at byte 0: incomplete JSON)");
  CHECK(error_of(R"([{"token":"s3cr3t"}] [])", "") ==
        "the body is not JSON (at byte 21: extra data)");
  CHECK(error_of(R"({"token": "s3cr3t"})", "") == "the body must be a JSON array of matches");
  CHECK(error_of(std::string(2000, '[') + std::string(2000, ']'), "").starts_with(
      "the body is not JSON"));

  CHECK(error_of(R"([{"token":"s3cr3t"}, "s3cr3t"])", "[1]") == "[1]: must be an object");
  CHECK(error_of(R"([{"token":"a"},{"token":"b"},{"type":"t","url":"s3cr3t"}])", "[2].token") ==
        "[2].token: missing");
  CHECK(error_of(R"([{"token": 42}])", "[0].token") == "[0].token: must be a string");
  CHECK(error_of(R"([{"token": null}])", "[0].token") == "[0].token: missing");
  CHECK(error_of(R"([{"token": ""}])", "[0].token") == "[0].token: must not be empty");
  CHECK(error_of(R"([{"token": "s3cr3t\u0000x"}])", "[0].token") ==
        "[0].token: contains a control character");
  CHECK(error_of("[{\"token\": \"" + std::string(1025, 'k') + "\"}]", "[0].token") ==
        "[0].token: is 1025 bytes, over the limit of 1024");
  CHECK(error_of(R"([{"token":"s3cr3t","type":["x"]}])", "[0].type") ==
        "[0].type: must be a string");
  CHECK(error_of(R"([{"token":"s3cr3t"},{"token":"s3cr3t","url":{}}])", "[1].url") ==
        "[1].url: must be a string");
  CHECK(error_of(R"([{"token":"s3cr3t","url":"https://x/\ny"}])", "[0].url") ==
        "[0].url: contains a control character");
  CHECK(error_of(R"([{"token":"s3cr3t","source":false}])", "[0].source") ==
        "[0].source: must be a string");
  CHECK(error_of("[{\"token\":\"s3cr3t\",\"url\":\"" + std::string(8193, 'u') + "\"}]",
                 "[0].url") == "[0].url: is 8193 bytes, over the limit of 8192");
}

TEST_CASE("leak report: at most 1000 matches") {
  std::string text = "[";
  for (int i = 0; i < 1000; ++i) text += std::string(i ? "," : "") + R"({"token":"t"})";
  const auto full = parse_leak_report(text + "]");
  CHECK(full.ok());
  CHECK(full.tokens.size() == 1000);
  const auto over = parse_leak_report(text + R"(,{"token":"t"}])");
  CHECK_FALSE(over.ok());
  CHECK(over.field.empty());
  CHECK(over.error == "the body has 1001 matches, over the limit of 1000");
}

TEST_CASE("leaked tokens: real keys are keygate keys, mistyped ones are not") {
  const std::string key = generate_key("kg_live");
  CHECK(classify_leaked_token(key) == LeakedTokenKind::keygate_key);
  CHECK(classify_leaked_token("kg_live_0123456789abcdefghijABCDEFGHIJKL4I5Av5") ==
        LeakedTokenKind::keygate_key);
  // A key made under another keys.prefix still authenticates, so it is still recognised.
  CHECK(classify_leaked_token(generate_key("acme_prod")) == LeakedTokenKind::keygate_key);

  // Any one character changed: CRC32 catches every error of a single character.
  for (std::size_t at = 8; at < key.size(); ++at) {
    std::string typo = key;
    typo[at] = typo[at] == 'a' ? 'b' : 'a';
    CHECK(classify_leaked_token(typo) == LeakedTokenKind::bad_checksum);
  }
  std::string swapped = key;
  std::swap(swapped[10], swapped[11]);
  if (swapped != key) CHECK(classify_leaked_token(swapped) == LeakedTokenKind::bad_checksum);

  CHECK(classify_leaked_token(key.substr(0, key.size() - 1)) == LeakedTokenKind::not_a_key);
  CHECK(classify_leaked_token(key + "A") == LeakedTokenKind::not_a_key);
  CHECK(classify_leaked_token(key.substr(0, 20) + "-" + key.substr(21)) ==
        LeakedTokenKind::not_a_key);
  CHECK(classify_leaked_token("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") ==
        LeakedTokenKind::not_a_key);
  CHECK(classify_leaked_token("") == LeakedTokenKind::not_a_key);
}

TEST_CASE("scanner regex: the registered pattern matches generated keys and only that length") {
  CHECK(scanner_regex("kg_live") == scanner_regex_kg_live);
  CHECK(scanner_regex("kg_live") == "kg_live_[0-9A-Za-z]{38}");
  CHECK(scanner_regex("acme") == "acme_[0-9A-Za-z]{38}");
  CHECK_THROWS_AS(scanner_regex(""), std::invalid_argument);
  CHECK_THROWS_AS(scanner_regex("Kg.live"), std::invalid_argument);

  const std::regex pattern(scanner_regex("kg_live"));
  for (int i = 0; i < 50; ++i) {
    const std::string key = generate_key("kg_live");
    CHECK(std::regex_match(key, pattern));
    CHECK_FALSE(std::regex_match(key.substr(0, key.size() - 1), pattern));
    CHECK_FALSE(std::regex_match(key + "x", pattern));
  }
  CHECK_FALSE(std::regex_match(generate_key("kg_test"), pattern));
  CHECK_FALSE(std::regex_match("kg_live_" + std::string(37, 'a') + "-", pattern));

  const std::string key = generate_key("kg_live");
  std::smatch found;
  const std::string text = "API_KEY=\"" + key + "\"\n";
  REQUIRE(std::regex_search(text, found, pattern));
  CHECK(found.str() == key);
}

TEST_CASE("leak answer: each token's SHA-256, its type and its label, never the token") {
  const std::string key = "kg_live_0123456789abcdefghijABCDEFGHIJKL4I5Av5";
  const std::array<LeakVerdict, 2> verdicts{{
      {key, "keygate_api_key", LeakLabel::true_positive},
      {"kg_live_typo", "odd \"type\"", LeakLabel::false_positive},
  }};
  const std::string answer = leak_answer_json(verdicts);
  CHECK(answer.find(key) == std::string::npos);
  CHECK(answer.find("kg_live_typo") == std::string::npos);

  const boost::json::value parsed = boost::json::parse(answer);
  const boost::json::array& list = parsed.as_array();
  REQUIRE(list.size() == 2);
  const boost::json::object& first = list[0].as_object();
  CHECK(first.size() == 3);
  // printf %s KEY | sha256sum
  CHECK(first.at("token_hash").as_string() ==
        "a6ee9d723823b807a1dd9f16d165bca8c9669b7226008e4eafa14559089dc8fe");
  CHECK(first.at("token_type").as_string() == "keygate_api_key");
  CHECK(first.at("label").as_string() == "true_positive");
  CHECK_FALSE(first.contains("token_raw"));
  CHECK(list[1].as_object().at("token_type").as_string() == "odd \"type\"");
  CHECK(list[1].as_object().at("label").as_string() == "false_positive");

  CHECK(leak_answer_json({}) == "[]");
}
