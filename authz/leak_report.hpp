#pragma once
// Leaked-key reports in the format of GitHub's secret scanning partner program: the pure core
// of POST /v1/leaks (issue 14, item 5). No I/O: the handler reads the public keys file and the
// request, calls these in this order, and does the lookups and revocations itself.
//
//   1. at startup: parse_leak_keys(file contents)                    -> LeakKeys or a config error
//   2. verify_signature(keys, Github-Public-Key-Identifier,
//                       Github-Public-Key-Signature, raw body)        -> not ok: 401, change nothing
//   3. parse_leak_report(raw body)                                    -> error: 400 naming the field
//   4. per token: classify_leaked_token(token); a keygate_key is hashed (hash_key, with the
//      pepper) and looked up; found (whatever its status) -> true_positive, else false_positive
//   5. leak_answer_json(verdicts)                                     -> the 200 body
//
// GitHub signs the raw body bytes (ECDSA P-256, SHA-256, an ASN.1 DER signature in base64) with
// one of the keys it publishes at https://api.github.com/meta/public_keys/secret_scanning, a
// document {"public_keys": [{"key_identifier", "key" (PEM), "is_current"}, ...]}. Every key in
// the operator's file is accepted (is_current marks the one GitHub signs new reports with; older
// ones stay valid while GitHub rotates): the file is the trust anchor.
//
// Tokens are secrets that have leaked, but still secrets: no error text here ever contains one,
// and the answer carries each token's SHA-256 (token_hash), not the token (see leak_answer_json).
#include <openssl/types.h>

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "authz/key_format.hpp"

namespace keygate::authz {

// Bounds on the public keys document (read once at startup from a file the operator writes).
inline constexpr std::size_t leak_keys_max_document_bytes = 64 * 1024;
inline constexpr std::size_t leak_keys_max_count = 32;
inline constexpr std::size_t leak_key_max_pem_bytes = 4096;  // a P-256 key's PEM is 178 bytes
inline constexpr std::size_t leak_key_identifier_max_length = 128;  // GitHub's: 64 hex digits

// Bounds on a report. The body itself is bounded by the caller (64 KiB, 413 above).
inline constexpr std::size_t leak_report_max_entries = 1000;
inline constexpr std::size_t leak_token_max_length = 1024;
inline constexpr std::size_t leak_type_max_length = 256;
inline constexpr std::size_t leak_url_max_length = 8192;
inline constexpr std::size_t leak_source_max_length = 256;
// A base64 DER ECDSA P-256 signature is at most 96 characters (72 bytes); longer is malformed.
inline constexpr std::size_t leak_signature_max_length = 256;

struct PublicKeyFree {
  void operator()(EVP_PKEY* key) const;
};
using PublicKey = std::unique_ptr<EVP_PKEY, PublicKeyFree>;

// One of GitHub's signing keys: always an EC key on P-256 (checked when parsed).
struct LeakSigningKey {
  std::string key_identifier;  // hex, as in the document (public, not a secret)
  bool is_current = false;
  PublicKey key;
};

// The parsed public keys document. Immutable once built, so one instance can be shared by every
// thread (OpenSSL 3 allows concurrent verifies with one EVP_PKEY). Move-only.
class LeakKeys {
 public:
  LeakKeys() = default;
  explicit LeakKeys(std::vector<LeakSigningKey> keys) : keys_(std::move(keys)) {}

  std::span<const LeakSigningKey> keys() const { return keys_; }
  // The key with this identifier (exact match), or null.
  const LeakSigningKey* find(std::string_view key_identifier) const;

 private:
  std::vector<LeakSigningKey> keys_;
};

struct LeakKeysParse {
  LeakKeys keys;
  // When not ok: one line naming what is wrong, for a startup error, e.g.
  // "public_keys[1].key: not a PEM public key (no start line)". The caller adds the file name.
  std::string error;
  bool ok() const { return error.empty(); }
};

// GitHub's public keys document: a JSON object whose "public_keys" is an array of 1 to
// leak_keys_max_count objects, each with a "key_identifier" (1 to 128 hex digits, no repeats),
// a "key" (a PEM "PUBLIC KEY" of ECDSA P-256) and optionally "is_current" (a boolean). Other
// members are ignored (GitHub may add some).
LeakKeysParse parse_leak_keys(std::string_view document);

enum class SignatureCheck {
  ok,
  unknown_key_id,       // no key with that identifier in the document (or the header is empty)
  malformed_signature,  // not strict base64, or the bytes are not a DER ECDSA-Sig-Value
  bad_signature,        // well formed, but not a signature of this body by that key
};
std::string_view name_of(SignatureCheck check);  // "ok", "unknown_key_id", ...

// Whether `signature_b64` (standard base64 with padding, as GitHub sends it) is a valid ECDSA
// P-256 / SHA-256 signature of exactly the bytes `body` by the key named `key_identifier`.
// Nothing compared here is a secret (key identifiers and keys are published by GitHub; ECDSA
// verification involves no secret), so there is no timing concern. Leaves OpenSSL's error queue
// of the calling thread as it found it.
SignatureCheck verify_signature(const LeakKeys& keys, std::string_view key_identifier,
                                std::string_view signature_b64, std::string_view body);

// One match in a report. type, url and source are empty when the report gives none (GitHub says
// url "may be empty"); no field holds a control character (they end up in audit rows and logs).
struct LeakedToken {
  std::string token;
  std::string type;
  std::string url;
  std::string source;  // "content", "commit", "issue_comment", ... (not checked: GitHub adds some)
};

struct LeakReport {
  std::vector<LeakedToken> tokens;
  // When not ok: `field` says where ("[3].token", "" for the body as a whole) and `error` is one
  // line starting with it, e.g. "[3].token: must be a string"; neither ever contains a token.
  std::string field;
  std::string error;
  bool ok() const { return error.empty(); }
};

// GitHub's request body: a JSON array of at most leak_report_max_entries objects, each with a
// "token" (a non-empty string) and optionally "type", "url" and "source" (strings, or null for
// none); each bounded by the leak_*_max_length above. Other members are ignored: GitHub may add
// fields, and rejecting them would drop real leak reports. An empty array is a valid report.
LeakReport parse_leak_report(std::string_view body);

enum class LeakedTokenKind {
  keygate_key,   // well formed with a valid checksum: hash it and look it up
  bad_checksum,  // keygate's shape but a wrong checksum: a typo, an example, or invented
  not_a_key,     // not keygate's shape at all
};

// Uses check_key_format, so any valid prefix is accepted, as the proxy accepts it: a key made
// before keys.prefix changed still authenticates, so its leak must still be recognised. No I/O,
// no allocation. (A custom key table's keys, store.schema: custom, have no checksum and are not
// recognised here.)
LeakedTokenKind classify_leaked_token(std::string_view token);

enum class LeakLabel { true_positive, false_positive };
std::string_view name_of(LeakLabel label);  // "true_positive", "false_positive"

struct LeakVerdict {
  std::string_view token;       // LeakedToken::token
  std::string_view token_type;  // LeakedToken::type
  LeakLabel label;
};

// GitHub's expected answer: [{"token_hash": "<sha-256 hex>", "token_type": "...", "label":
// "true_positive"|"false_positive"}, ...], in the order given. GitHub accepts either the token
// itself (token_raw) or the lower-case hex SHA-256 of it (token_hash, plain SHA-256 whatever
// keys.pepper is); keygate sends the hash only: GitHub already has the token and can hash it,
// while a response body is copied into places a live key must not be (access logs, debugging
// proxies, GitHub's own records). A 190-bit random key cannot be recovered from its SHA-256.
std::string leak_answer_json(std::span<const LeakVerdict> verdicts);

// The regular expression an operator registers with GitHub for keys made with `prefix`:
// the prefix, '_', then key_random_length + key_checksum_length base62 characters, e.g.
// "kg_live_[0-9A-Za-z]{38}". A prefix is [a-z][a-z0-9_]* (no character special in a regex), so
// it is used as is. Throws std::invalid_argument for an invalid prefix.
//
// The match is not anchored: how a match must be delimited is agreed with GitHub when
// registering (their boundary rules), and a 38-character window cut out of a longer run of
// letters fails the checksum, so it is answered false_positive, never revoked.
// Each keygate deployment must register its own prefix: the default "kg_live" is every
// deployment's default, and GitHub sends a match to the one endpoint registered for the regex.
std::string scanner_regex(std::string_view prefix);

// scanner_regex("kg_live"), for the default keys.prefix.
inline constexpr std::string_view scanner_regex_kg_live = "kg_live_[0-9A-Za-z]{38}";
static_assert(key_random_length + key_checksum_length == 38,
              "scanner_regex_kg_live spells out the key's tail length");

}  // namespace keygate::authz
