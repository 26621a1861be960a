#include "authz/leak_report.hpp"

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parser.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>
#include <stdexcept>

#include "authz/key_hash.hpp"
#include "core/hex.hpp"
#include "core/text.hpp"

namespace keygate::authz {
namespace {

// Both documents are two or three levels deep; the margin is for members GitHub may add.
constexpr std::size_t json_max_depth = 16;

// Errors OpenSSL queues while we look at untrusted input are ours to drop: a stale entry on a
// thread's queue would confuse the next SSL_get_error of a TLS connection on that thread.
class OpenSslErrorScope {
 public:
  OpenSslErrorScope() { ERR_set_mark(); }
  ~OpenSslErrorScope() { ERR_pop_to_mark(); }
  OpenSslErrorScope(const OpenSslErrorScope&) = delete;
  OpenSslErrorScope& operator=(const OpenSslErrorScope&) = delete;

  // The reason of the newest error queued since the scope began, for a message.
  static std::string last_reason() {
    const unsigned long code = ERR_peek_last_error();
    const char* reason = code != 0 ? ERR_reason_error_string(code) : nullptr;
    return reason != nullptr ? reason : "no reason given";
  }
};

struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct MdContextFree {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};
struct OpenSslFree {
  void operator()(void* memory) const { OPENSSL_free(memory); }
};
struct EcdsaSigFree {
  void operator()(ECDSA_SIG* sig) const { ECDSA_SIG_free(sig); }
};

struct JsonParse {
  boost::json::value value;
  std::string error;  // "not JSON (at byte 12: syntax error)"
};

JsonParse parse_json(std::string_view text) {
  boost::json::parse_options options;
  options.max_depth = json_max_depth;
  boost::json::parser parser({}, options);
  boost::system::error_code ec;
  const std::size_t used = parser.write(text.data(), text.size(), ec);
  if (ec) {
    return {{}, "not JSON (at byte " + std::to_string(used) + ": " + ec.message() + ")"};
  }
  return {parser.release(), {}};
}

std::string_view view_of(const boost::json::string& text) { return {text.data(), text.size()}; }

bool has_control_character(std::string_view text) {
  return std::any_of(text.begin(), text.end(), [](char c) {
    const auto byte = static_cast<unsigned char>(c);
    return byte < 0x20 || byte == 0x7f;
  });
}

std::string index_path(std::string_view array, std::size_t index) {
  return std::string(array) + "[" + std::to_string(index) + "]";
}

// A string member of `object` into `out`. Returns the problem ("missing", "must be a string",
// ...) or "" when the member is fine; an optional member that is absent or null leaves `out`
// empty. The message never quotes the value.
std::string read_text(const boost::json::object& object, std::string_view name, bool required,
                      std::size_t max_length, std::string& out) {
  const boost::json::value* member = object.if_contains(name);
  if (member == nullptr || member->is_null()) return required ? "missing" : "";
  if (!member->is_string()) return "must be a string";
  const std::string_view text = view_of(member->get_string());
  if (required && text.empty()) return "must not be empty";
  if (text.size() > max_length) {
    return "is " + std::to_string(text.size()) + " bytes, over the limit of " +
           std::to_string(max_length);
  }
  if (has_control_character(text)) return "contains a control character";
  out.assign(text);
  return "";
}

bool is_hex(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) { return core::hex_digit_value(c) >= 0; });
}

// A PEM "PUBLIC KEY" of ECDSA P-256 into `out`; returns the problem or "". The PEM block and
// the DER inside it are read separately: OpenSSL 3's all-in-one decoder reports every failure
// as "unsupported".
std::string read_public_key(std::string_view pem, PublicKey& out) {
  OpenSslErrorScope errors;
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return "could not be read (out of memory)";
  char* name = nullptr;
  char* headers = nullptr;
  unsigned char* der = nullptr;
  long der_length = 0;
  const bool read = PEM_read_bio(bio.get(), &name, &headers, &der, &der_length) == 1;
  const std::unique_ptr<char, OpenSslFree> owned_name(name);
  const std::unique_ptr<char, OpenSslFree> owned_headers(headers);
  const std::unique_ptr<unsigned char, OpenSslFree> owned_der(der);
  if (!read) return "not a PEM public key (" + OpenSslErrorScope::last_reason() + ")";
  if (std::string_view(name) != "PUBLIC KEY") {
    return "is a PEM \"" + std::string(name) + "\" block, not \"PUBLIC KEY\"";
  }
  if (headers != nullptr && headers[0] != '\0') return "has PEM headers (a public key has none)";
  const unsigned char* cursor = der;
  PublicKey key(d2i_PUBKEY(nullptr, &cursor, der_length));
  if (!key || cursor != der + der_length) {
    return "holds no valid SubjectPublicKeyInfo (" + OpenSslErrorScope::last_reason() + ")";
  }
  if (EVP_PKEY_is_a(key.get(), "EC") != 1) {
    const char* type = EVP_PKEY_get0_type_name(key.get());
    return std::string("is a key of type ") + (type != nullptr ? type : "unknown") +
           ", not ECDSA P-256";
  }
  std::array<char, 80> group{};
  std::size_t group_length = 0;
  if (EVP_PKEY_get_group_name(key.get(), group.data(), group.size(), &group_length) != 1) {
    return "is an EC key on an unnamed curve, not P-256";
  }
  const std::string_view curve(group.data(), group_length);
  if (curve != "prime256v1") return "is an EC key on " + std::string(curve) + ", not P-256";
  out = std::move(key);
  return "";
}

std::string read_signing_key(const boost::json::value& entry, std::string_view path,
                             const std::vector<LeakSigningKey>& earlier, LeakSigningKey& out) {
  const std::string at(path);
  if (!entry.is_object()) return at + ": must be an object";
  const boost::json::object& object = entry.get_object();

  std::string problem = read_text(object, "key_identifier", true, leak_key_identifier_max_length,
                                  out.key_identifier);
  if (problem.empty() && !is_hex(out.key_identifier)) problem = "must be hex digits";
  if (!problem.empty()) return at + ".key_identifier: " + problem;
  for (std::size_t i = 0; i < earlier.size(); ++i) {
    if (earlier[i].key_identifier == out.key_identifier) {
      return at + ".key_identifier: repeats public_keys[" + std::to_string(i) + "]";
    }
  }

  const boost::json::value* pem = object.if_contains("key");
  if (pem == nullptr || pem->is_null()) return at + ".key: missing";
  if (!pem->is_string()) return at + ".key: must be a string";
  if (pem->get_string().size() > leak_key_max_pem_bytes) {
    return at + ".key: is " + std::to_string(pem->get_string().size()) +
           " bytes, over the limit of " + std::to_string(leak_key_max_pem_bytes);
  }
  problem = read_public_key(view_of(pem->get_string()), out.key);
  if (!problem.empty()) return at + ".key: " + problem;

  if (const boost::json::value* current = object.if_contains("is_current")) {
    if (!current->is_bool()) return at + ".is_current: must be true or false";
    out.is_current = current->get_bool();
  }
  return "";
}

// Standard base64 (RFC 4648 section 4) with padding, nothing else (no whitespace, no url-safe
// alphabet): the decoded length, or nullopt. `out` holds at least 3/4 of the text's length.
std::optional<std::size_t> decode_base64(std::string_view text, std::span<unsigned char> out) {
  if (text.empty() || text.size() % 4 != 0 || text.size() / 4 * 3 > out.size()) return std::nullopt;
  std::size_t padding = 0;
  if (text.back() == '=') padding = text[text.size() - 2] == '=' ? 2 : 1;
  const auto is_base64 = [](char c) {
    return core::is_ascii_alpha(c) || core::is_ascii_digit(c) || c == '+' || c == '/';
  };
  if (!std::all_of(text.begin(), text.end() - static_cast<std::ptrdiff_t>(padding), is_base64)) {
    return std::nullopt;
  }
  // EVP_DecodeBlock decodes whole groups, padding as zero bytes it still counts.
  const int decoded = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(text.data()),
                                      static_cast<int>(text.size()));
  if (decoded < 0 || static_cast<std::size_t>(decoded) != text.size() / 4 * 3) return std::nullopt;
  return static_cast<std::size_t>(decoded) - padding;
}

// Whether `der` is exactly one ECDSA-Sig-Value (SEQUENCE of two INTEGERs) in DER, the one
// encoding of it: re-encoding the parsed value must give the same bytes.
bool is_der_ecdsa_signature(std::span<const unsigned char> der) {
  OpenSslErrorScope errors;
  const unsigned char* cursor = der.data();
  std::unique_ptr<ECDSA_SIG, EcdsaSigFree> sig(
      d2i_ECDSA_SIG(nullptr, &cursor, static_cast<long>(der.size())));
  if (!sig || cursor != der.data() + der.size()) return false;
  unsigned char* encoded = nullptr;
  const int length = i2d_ECDSA_SIG(sig.get(), &encoded);
  const std::unique_ptr<unsigned char, OpenSslFree> owned(encoded);
  return length > 0 && static_cast<std::size_t>(length) == der.size() &&
         std::memcmp(encoded, der.data(), der.size()) == 0;
}

}  // namespace

void PublicKeyFree::operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }

const LeakSigningKey* LeakKeys::find(std::string_view key_identifier) const {
  for (const LeakSigningKey& key : keys_) {
    if (key.key_identifier == key_identifier) return &key;
  }
  return nullptr;
}

LeakKeysParse parse_leak_keys(std::string_view document) {
  LeakKeysParse result;
  if (document.size() > leak_keys_max_document_bytes) {
    result.error = "the document is " + std::to_string(document.size()) +
                   " bytes, over the limit of " + std::to_string(leak_keys_max_document_bytes);
    return result;
  }
  JsonParse parsed = parse_json(document);
  if (!parsed.error.empty()) {
    result.error = "the document is " + parsed.error;
    return result;
  }
  if (!parsed.value.is_object()) {
    result.error = "the document must be a JSON object with \"public_keys\"";
    return result;
  }
  const boost::json::value* list = parsed.value.get_object().if_contains("public_keys");
  if (list == nullptr) {
    result.error = "public_keys: missing";
    return result;
  }
  if (!list->is_array()) {
    result.error = "public_keys: must be an array";
    return result;
  }
  const boost::json::array& entries = list->get_array();
  if (entries.empty()) {
    result.error = "public_keys: is empty (no report could be verified)";
    return result;
  }
  if (entries.size() > leak_keys_max_count) {
    result.error = "public_keys: has " + std::to_string(entries.size()) +
                   " keys, over the limit of " + std::to_string(leak_keys_max_count);
    return result;
  }
  std::vector<LeakSigningKey> keys;
  keys.reserve(entries.size());
  for (std::size_t i = 0; i < entries.size(); ++i) {
    LeakSigningKey key;
    result.error = read_signing_key(entries[i], index_path("public_keys", i), keys, key);
    if (!result.error.empty()) return result;
    keys.push_back(std::move(key));
  }
  result.keys = LeakKeys(std::move(keys));
  return result;
}

std::string_view name_of(SignatureCheck check) {
  switch (check) {
    case SignatureCheck::ok: return "ok";
    case SignatureCheck::unknown_key_id: return "unknown_key_id";
    case SignatureCheck::malformed_signature: return "malformed_signature";
    case SignatureCheck::bad_signature: return "bad_signature";
  }
  return "unknown";
}

SignatureCheck verify_signature(const LeakKeys& keys, std::string_view key_identifier,
                                std::string_view signature_b64, std::string_view body) {
  const LeakSigningKey* signer = key_identifier.empty() ? nullptr : keys.find(key_identifier);
  if (signer == nullptr) return SignatureCheck::unknown_key_id;

  std::array<unsigned char, leak_signature_max_length / 4 * 3> der{};
  if (signature_b64.size() > leak_signature_max_length) return SignatureCheck::malformed_signature;
  const std::optional<std::size_t> der_length = decode_base64(signature_b64, der);
  if (!der_length || !is_der_ecdsa_signature(std::span(der.data(), *der_length))) {
    return SignatureCheck::malformed_signature;
  }

  OpenSslErrorScope errors;
  std::unique_ptr<EVP_MD_CTX, MdContextFree> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr,
                                   signer->key.get()) != 1) {
    return SignatureCheck::bad_signature;  // fail closed: nothing was verified
  }
  const int verified =
      EVP_DigestVerify(ctx.get(), der.data(), *der_length,
                       reinterpret_cast<const unsigned char*>(body.data()), body.size());
  return verified == 1 ? SignatureCheck::ok : SignatureCheck::bad_signature;
}

LeakReport parse_leak_report(std::string_view body) {
  LeakReport report;
  const auto fail = [&report](std::string field, std::string_view problem) {
    report.tokens.clear();
    report.error = field.empty() ? std::string(problem) : field + ": " + std::string(problem);
    report.field = std::move(field);
    return std::move(report);
  };
  JsonParse parsed = parse_json(body);
  if (!parsed.error.empty()) return fail("", "the body is " + parsed.error);
  if (!parsed.value.is_array()) return fail("", "the body must be a JSON array of matches");
  const boost::json::array& entries = parsed.value.get_array();
  if (entries.size() > leak_report_max_entries) {
    return fail("", "the body has " + std::to_string(entries.size()) +
                        " matches, over the limit of " + std::to_string(leak_report_max_entries));
  }

  struct Field {
    std::string_view name;
    bool required;
    std::size_t max_length;
    std::string LeakedToken::*member;
  };
  static constexpr std::array<Field, 4> fields{{
      {"token", true, leak_token_max_length, &LeakedToken::token},
      {"type", false, leak_type_max_length, &LeakedToken::type},
      {"url", false, leak_url_max_length, &LeakedToken::url},
      {"source", false, leak_source_max_length, &LeakedToken::source},
  }};

  report.tokens.reserve(entries.size());
  for (std::size_t i = 0; i < entries.size(); ++i) {
    if (!entries[i].is_object()) return fail(index_path("", i), "must be an object");
    LeakedToken& token = report.tokens.emplace_back();
    for (const Field& field : fields) {
      const std::string problem = read_text(entries[i].get_object(), field.name, field.required,
                                            field.max_length, token.*field.member);
      if (!problem.empty()) return fail(index_path("", i) + "." + std::string(field.name), problem);
    }
  }
  return report;
}

LeakedTokenKind classify_leaked_token(std::string_view token) {
  switch (check_key_format(token)) {
    case KeyFormat::valid: return LeakedTokenKind::keygate_key;
    case KeyFormat::bad_checksum: return LeakedTokenKind::bad_checksum;
    case KeyFormat::empty:
    case KeyFormat::malformed: return LeakedTokenKind::not_a_key;
  }
  return LeakedTokenKind::not_a_key;
}

std::string_view name_of(LeakLabel label) {
  return label == LeakLabel::true_positive ? "true_positive" : "false_positive";
}

std::string leak_answer_json(std::span<const LeakVerdict> verdicts) {
  boost::json::array answer;
  answer.reserve(verdicts.size());
  for (const LeakVerdict& verdict : verdicts) {
    boost::json::object entry;
    entry["token_hash"] = hash_to_hex(hash_key(verdict.token, {}));  // plain SHA-256, no pepper
    entry["token_type"] = boost::json::string(verdict.token_type.data(), verdict.token_type.size());
    const std::string_view label = name_of(verdict.label);
    entry["label"] = boost::json::string(label.data(), label.size());
    answer.push_back(std::move(entry));
  }
  return boost::json::serialize(answer);
}

std::string scanner_regex(std::string_view prefix) {
  if (!is_valid_key_prefix(prefix)) throw std::invalid_argument("invalid key prefix");
  return std::string(prefix) + "_[0-9A-Za-z]{" +
         std::to_string(key_random_length + key_checksum_length) + "}";
}

}  // namespace keygate::authz
