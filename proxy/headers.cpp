#include "proxy/headers.hpp"

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/rfc7230.hpp>

#include <array>
#include <charconv>

namespace keygate::proxy {

namespace http = boost::beast::http;

namespace {

constexpr std::string_view key_id_header = "X-Api-Key-Id";
constexpr std::string_view key_owner_header = "X-Api-Key-Owner";
constexpr std::string_view key_scopes_header = "X-Api-Key-Scopes";

// Values come from the key store: keep control characters out of the header block.
void append_printable(std::string& out, std::string_view value) {
  for (char c : value) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u != 0x7f) out += c;
  }
}

void append_owner(std::string& out, const store::KeyRecord& key) {
  append_printable(out, key.owner_type);
  out += ':';
  append_printable(out, key.owner_id);
}

void append_scopes(std::string& out, const store::KeyRecord& key) {
  for (std::size_t i = 0; i < key.scopes.size(); ++i) {
    if (i > 0) out += ',';
    append_printable(out, key.scopes[i]);
  }
}

std::string_view number(std::array<char, 24>& buffer, long long value) {
  const auto result = std::to_chars(buffer.data(), buffer.data() + buffer.size(), value);
  return {buffer.data(), static_cast<std::size_t>(result.ptr - buffer.data())};
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

bool has_ambiguous_framing(const http::fields& fields) {
  const std::size_t codings = fields.count(http::field::transfer_encoding);
  if (codings == 0) return false;
  if (codings > 1 || fields.count(http::field::content_length) > 0) return true;
  return !boost::beast::iequals(trim(fields[http::field::transfer_encoding]), "chunked");
}

void remove_hop_by_hop(http::fields& fields) {
  // Fields named in Connection go too. Collect names first: erasing frees their storage.
  std::array<std::string, 8> named;
  std::size_t count = 0;
  // (Not equal_range: Beast's spans the fields in between when a name repeats apart.)
  for (const auto& field : fields) {
    if (field.name() != http::field::connection) continue;
    for (const auto token : http::token_list{field.value()}) {
      if (count < named.size()) named[count++].assign(token.data(), token.size());
    }
  }
  for (std::size_t i = 0; i < count; ++i) fields.erase(named[i]);
  for (const auto name : {http::field::connection, http::field::keep_alive,
                          http::field::proxy_connection, http::field::te, http::field::trailer,
                          http::field::transfer_encoding, http::field::upgrade}) {
    fields.erase(name);
  }
}

void remove_identity(http::fields& fields) {
  fields.erase(key_id_header);
  fields.erase(key_owner_header);
  fields.erase(key_scopes_header);
}

void set_identity(http::fields& fields, const store::KeyRecord& key, std::string& scratch) {
  scratch.clear();
  append_printable(scratch, key.id);
  fields.set(key_id_header, scratch);
  scratch.clear();
  append_owner(scratch, key);
  fields.set(key_owner_header, scratch);
  scratch.clear();
  append_scopes(scratch, key);
  fields.set(key_scopes_header, scratch);
}

void append_identity(std::string& out, const store::KeyRecord& key) {
  out += key_id_header;
  out += ": ";
  append_printable(out, key.id);
  out += "\r\n";
  out += key_owner_header;
  out += ": ";
  append_owner(out, key);
  out += "\r\n";
  out += key_scopes_header;
  out += ": ";
  append_scopes(out, key);
  out += "\r\n";
}

void set_rate_limit(http::fields& fields, const authz::RateLimitStatus& rate) {
  if (!rate.applies) return;
  std::array<char, 24> buffer;
  fields.set("RateLimit-Limit", number(buffer, rate.limit));
  fields.set("RateLimit-Remaining", number(buffer, rate.remaining));
  fields.set("RateLimit-Reset", number(buffer, rate.reset_seconds));
}

void append_rate_limit(std::string& out, const authz::RateLimitStatus& rate) {
  if (!rate.applies) return;
  std::array<char, 24> buffer;
  out += "RateLimit-Limit: ";
  out += number(buffer, rate.limit);
  out += "\r\nRateLimit-Remaining: ";
  out += number(buffer, rate.remaining);
  out += "\r\nRateLimit-Reset: ";
  out += number(buffer, rate.reset_seconds);
  out += "\r\n";
}

void set_forwarded(http::fields& fields, std::string_view peer, bool peer_trusted,
                   std::string_view proto, std::string& scratch) {
  scratch.clear();
  if (peer_trusted) {
    // Several X-Forwarded-For fields are one comma-separated list (RFC 9110 5.3).
    for (const auto& field : fields) {
      if (!boost::beast::iequals(field.name_string(), "x-forwarded-for")) continue;
      const auto value = trim(field.value());
      if (value.empty()) continue;
      scratch += value;
      scratch += ", ";
    }
  }
  scratch += peer;
  fields.set("X-Forwarded-For", scratch);
  fields.set("X-Forwarded-Proto", proto);
}

std::string remove_query_parameter(std::string_view query, std::string_view parameter) {
  std::string kept;
  kept.reserve(query.size());
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    const std::string_view name = pair.substr(0, pair.find('='));
    if (name == parameter || pair.empty()) continue;
    if (!kept.empty()) kept += '&';
    kept += pair;
  }
  return kept;
}

}  // namespace keygate::proxy
