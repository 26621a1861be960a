#include "proxy/headers.hpp"

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/rfc7230.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <initializer_list>
#include <iterator>

#include "core/text.hpp"

namespace keygate::proxy {

namespace http = boost::beast::http;

namespace {

constexpr std::string_view key_id_header = "X-Api-Key-Id";
constexpr std::string_view key_owner_header = "X-Api-Key-Owner";
constexpr std::string_view key_scopes_header = "X-Api-Key-Scopes";
constexpr std::string_view rate_limit_header = "RateLimit-Limit";
constexpr std::string_view rate_remaining_header = "RateLimit-Remaining";
constexpr std::string_view rate_reset_header = "RateLimit-Reset";
constexpr std::string_view forwarded_for_header = "X-Forwarded-For";
constexpr std::string_view forwarded_proto_header = "X-Forwarded-Proto";

// RFC 9110 7.6.1 (Connection and the fields it names are handled by remove_hop_by_hop).
bool is_hop_by_hop(http::field name) {
  switch (name) {
    case http::field::connection:
    case http::field::keep_alive:
    case http::field::proxy_connection:
    case http::field::te:
    case http::field::trailer:
    case http::field::transfer_encoding:
    case http::field::upgrade:
      return true;
    default:
      return false;
  }
}

// For the names Beast has no enum value for: compared as text, without a lookup by name.
bool is_named(const Fields::value_type& field, std::string_view name) {
  return field.name() == http::field::unknown && boost::beast::iequals(field.name_string(), name);
}

// Every field with one of `names` (names Beast has no enum value for), in one pass.
void remove_named(Fields& fields, std::initializer_list<std::string_view> names) {
  for (auto it = fields.begin(); it != fields.end();) {
    const bool found = std::any_of(names.begin(), names.end(),
                                   [&](std::string_view name) { return is_named(*it, name); });
    it = found ? fields.erase(it) : std::next(it);
  }
}

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

}  // namespace

void remove_hop_by_hop(Fields& fields) {
  // Every field named in Connection goes too (RFC 9110 7.6.1), however many there are. The
  // names are copied first: erasing a field frees its storage. "keep-alive" and "close", the
  // usual tokens, name nothing to look up (Keep-Alive is removed anyway).
  std::string named;  // the names, each followed by ','
  for (const auto& field : fields) {
    if (field.name() != http::field::connection) continue;
    for (const auto token : http::token_list{field.value()}) {
      if (boost::beast::iequals(token, "keep-alive") || boost::beast::iequals(token, "close")) {
        continue;
      }
      named.append(token.data(), token.size()).push_back(',');
    }
  }
  for (auto it = fields.begin(); it != fields.end();) {
    it = is_hop_by_hop(it->name()) ? fields.erase(it) : std::next(it);
  }
  for (std::size_t start = 0; start < named.size();) {
    const std::size_t end = named.find(',', start);
    fields.erase(std::string_view(named).substr(start, end - start));
    start = end + 1;
  }
}

void remove_identity(Fields& fields) {
  remove_named(fields, {key_id_header, key_owner_header, key_scopes_header});
}

void set_identity(Fields& fields, const store::KeyRecord& key, std::string& scratch) {
  // After remove_identity: inserted, nothing to replace.
  scratch.clear();
  append_printable(scratch, key.id);
  fields.insert(http::field::unknown, key_id_header, scratch);
  scratch.clear();
  append_owner(scratch, key);
  fields.insert(http::field::unknown, key_owner_header, scratch);
  scratch.clear();
  append_scopes(scratch, key);
  fields.insert(http::field::unknown, key_scopes_header, scratch);
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

void set_rate_limit(Fields& fields, const authz::RateLimitStatus& rate) {
  if (!rate.applies) return;
  remove_named(fields, {rate_limit_header, rate_remaining_header, rate_reset_header});
  std::array<char, 24> buffer;
  fields.insert(http::field::unknown, rate_limit_header, number(buffer, rate.limit));
  fields.insert(http::field::unknown, rate_remaining_header, number(buffer, rate.remaining));
  fields.insert(http::field::unknown, rate_reset_header, number(buffer, rate.reset_seconds));
}

void append_rate_limit(std::string& out, const authz::RateLimitStatus& rate) {
  if (!rate.applies) return;
  std::array<char, 24> buffer;
  out += rate_limit_header;
  out += ": ";
  out += number(buffer, rate.limit);
  out += "\r\n";
  out += rate_remaining_header;
  out += ": ";
  out += number(buffer, rate.remaining);
  out += "\r\n";
  out += rate_reset_header;
  out += ": ";
  out += number(buffer, rate.reset_seconds);
  out += "\r\n";
}

void set_forwarded(Fields& fields, std::string_view peer, bool peer_trusted,
                   std::string_view proto, std::string& scratch) {
  scratch.clear();
  for (auto it = fields.begin(); it != fields.end();) {
    if (is_named(*it, forwarded_for_header)) {
      // Several X-Forwarded-For fields are one comma-separated list (RFC 9110 5.3).
      const auto value = core::trim_blanks(it->value());
      if (peer_trusted && !value.empty()) {
        scratch += value;
        scratch += ", ";
      }
      it = fields.erase(it);
    } else if (is_named(*it, forwarded_proto_header)) {
      it = fields.erase(it);
    } else {
      ++it;
    }
  }
  scratch += peer;
  fields.insert(http::field::unknown, forwarded_for_header, scratch);
  fields.insert(http::field::unknown, forwarded_proto_header, proto);
}

namespace {

void append_version(std::string& out, unsigned version) {
  out += "HTTP/";
  out += static_cast<char>('0' + version / 10);
  out += '.';
  out += static_cast<char>('0' + version % 10);
}

void append_fields(std::string& out, const Fields& fields) {
  for (const auto& field : fields) {
    out += field.name_string();
    out += ": ";
    out += field.value();
    out += "\r\n";
  }
  out += "\r\n";
}

}  // namespace

void format_header(std::string& out, const http::request_header<Fields>& request) {
  out += request.method_string();
  out += ' ';
  out += request.target();
  out += ' ';
  append_version(out, request.version());
  out += "\r\n";
  append_fields(out, request);
}

void format_header(std::string& out, const http::response_header<Fields>& response) {
  append_version(out, response.version());
  const unsigned status = response.result_int();
  out += ' ';
  out += static_cast<char>('0' + status / 100);
  out += static_cast<char>('0' + status / 10 % 10);
  out += static_cast<char>('0' + status % 10);
  out += ' ';
  const auto reason = response.reason();
  out += reason.empty() ? http::obsolete_reason(response.result()) : reason;
  out += "\r\n";
  append_fields(out, response);
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
