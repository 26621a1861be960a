#include "api/key_request.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <cstdint>

namespace keygate::api {
namespace json = boost::json;

// ---- who may call ----------------------------------------------------------------------------

Authority admin_authority(const store::KeyRecord& caller) {
  Authority authority;
  const auto holds = [&](std::string_view scope) {
    return std::find(caller.scopes.begin(), caller.scopes.end(), scope) != caller.scopes.end();
  };
  if (holds(operator_scope)) authority.role = AdminRole::operator_;
  else if (holds(owner_scope)) authority.role = AdminRole::owner;
  authority.owner_type = caller.owner_type;
  authority.owner_id = caller.owner_id;
  authority.scopes = caller.scopes;
  return authority;
}

bool may_manage(const Authority& authority, std::string_view owner_type, std::string_view owner_id) {
  switch (authority.role) {
    case AdminRole::operator_: return true;
    case AdminRole::owner: return owner_type == authority.owner_type && owner_id == authority.owner_id;
    case AdminRole::none: return false;
  }
  return false;
}

std::optional<FieldError> check_grant(const Authority& authority, const std::vector<std::string>& scopes) {
  if (authority.role == AdminRole::operator_) return std::nullopt;
  for (std::size_t i = 0; i < scopes.size(); ++i) {
    const bool held = authority.role == AdminRole::owner && scopes[i] != operator_scope &&
                      std::find(authority.scopes.begin(), authority.scopes.end(), scopes[i]) != authority.scopes.end();
    if (!held) {
      return FieldError{"scopes[" + std::to_string(i) + "]",
                        "a key may grant only scopes it holds itself, and only an operator grants admin:*"};
    }
  }
  return std::nullopt;
}

// ---- request bodies --------------------------------------------------------------------------

bool KeyPatch::empty() const {
  return !name && !description && !scopes && !allowed_ips && !rate_limit && !quota &&
         !quota_period_seconds && !expires_at && !metadata_json;
}

namespace {

// Thrown inside the decoders only, caught at their edge into Decoded::error.
struct Invalid {
  FieldError error;
};

[[noreturn]] void fail(std::string field, std::string message) {
  throw Invalid{{std::move(field), std::move(message)}};
}

const char* kind_of(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null: return "null";
    case json::kind::bool_: return "a boolean";
    case json::kind::int64:
    case json::kind::uint64:
    case json::kind::double_: return "a number";
    case json::kind::string: return "a string";
    case json::kind::array: return "an array";
    case json::kind::object: return "an object";
  }
  return "a value";
}

bool visible_ascii(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

// Text meant for people: no control characters (they would reach logs and terminals).
bool no_controls(std::string_view text) {
  return std::none_of(text.begin(), text.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
}

std::string text(const json::value& v, const std::string& field, std::size_t max, bool allow_empty = false) {
  if (!v.is_string()) fail(field, "expected a string, got " + std::string(kind_of(v)));
  const json::string& s = v.get_string();
  if (s.empty() && !allow_empty) fail(field, "must not be empty");
  if (s.size() > max) fail(field, "longer than " + std::to_string(max) + " bytes");
  if (!no_controls(s)) fail(field, "must not hold control characters");
  return std::string(s);
}

std::vector<std::string> scopes(const json::value& v, const std::string& field, const RequestRules& rules) {
  if (!v.is_array()) fail(field, "expected an array of scopes, got " + std::string(kind_of(v)));
  const json::array& items = v.get_array();
  if (items.size() > rules.max_scopes) fail(field, "more than " + std::to_string(rules.max_scopes) + " scopes");
  std::vector<std::string> out;
  for (std::size_t i = 0; i < items.size(); ++i) {
    const std::string at = field + "[" + std::to_string(i) + "]";
    const std::string scope = text(items[i], at, 128);
    if (!visible_ascii(scope) || scope.find_first_of("\",\\") != std::string::npos) {
      fail(at, "a scope is visible ASCII without quotes, commas or backslashes");
    }
    const auto& vocabulary = rules.scope_vocabulary;
    if (!vocabulary.empty() && scope != operator_scope && scope != owner_scope &&
        std::find(vocabulary.begin(), vocabulary.end(), scope) == vocabulary.end()) {
      fail(at, "not one of the configured scopes");
    }
    if (std::find(out.begin(), out.end(), scope) == out.end()) out.push_back(scope);
  }
  return out;
}

std::vector<core::IpNetwork> networks(const json::value& v, const std::string& field, const RequestRules& rules) {
  if (!v.is_array()) fail(field, "expected an array of addresses or CIDR networks, got " + std::string(kind_of(v)));
  const json::array& items = v.get_array();
  if (items.size() > rules.max_allowed_ips) {
    fail(field, "more than " + std::to_string(rules.max_allowed_ips) + " networks");
  }
  std::vector<core::IpNetwork> out;
  for (std::size_t i = 0; i < items.size(); ++i) {
    const std::string at = field + "[" + std::to_string(i) + "]";
    auto network = core::IpNetwork::parse(text(items[i], at, 64));
    if (!network) fail(at, "expected an address or a CIDR network like 10.0.0.0/8 or ::1");
    out.push_back(*network);
  }
  return out;
}

core::RateLimitSpec rate_limit(const json::value& v, const std::string& field) {
  auto spec = core::parse_rate_limit(text(v, field, 32));
  if (!spec) fail(field, "expected REQUESTS/WINDOW like 100/60s");
  return *spec;
}

std::int64_t quota(const json::value& v, const std::string& field) {
  if (v.is_int64() && v.get_int64() >= 0) return v.get_int64();
  if (v.is_uint64() && v.get_uint64() <= static_cast<std::uint64_t>(INT64_MAX)) return static_cast<std::int64_t>(v.get_uint64());
  fail(field, "expected a whole number of requests, 0 or more");
}

std::chrono::milliseconds positive_duration(const json::value& v, const std::string& field) {
  auto d = core::parse_duration(text(v, field, 32));
  if (!d || d->count() <= 0) fail(field, "expected a duration like 30d, 12h or 90m");
  return *d;
}

int period_seconds(const json::value& v, const std::string& field) {
  const auto d = positive_duration(v, field);
  if (d.count() % 1000 != 0 || d > std::chrono::days(3660)) fail(field, "expected whole seconds, at most 3660d");
  return static_cast<int>(d.count() / 1000);
}

core::SystemTime future_time(const json::value& v, const std::string& field, core::SystemTime now) {
  auto t = core::parse_rfc3339(text(v, field, 40));
  if (!t) fail(field, "expected an RFC 3339 time like 2027-01-31T12:00:00Z");
  if (*t <= now) fail(field, "is in the past");
  return *t;
}

std::string metadata(const json::value& v, const std::string& field, const RequestRules& rules) {
  if (!v.is_object()) fail(field, "expected an object, got " + std::string(kind_of(v)));
  std::string out = json::serialize(v);
  if (out.size() > rules.max_metadata_bytes) {
    fail(field, "longer than " + std::to_string(rules.max_metadata_bytes) + " bytes");
  }
  return out;
}

const json::object& body_object(std::string_view body, json::value& storage) {
  boost::system::error_code ec;
  storage = json::parse(body, ec);
  if (ec) fail("", "the body is not JSON: " + ec.message());
  if (!storage.is_object()) fail("", "expected a JSON object, got " + std::string(kind_of(storage)));
  return storage.get_object();
}

void only_known(const json::object& object, std::initializer_list<std::string_view> known) {
  for (const auto& member : object) {
    if (std::find(known.begin(), known.end(), member.key()) == known.end()) {
      const std::string_view key = member.key();
      const bool printable = key.size() <= 64 && visible_ascii(key);
      fail(printable ? std::string(key) : std::string(), printable ? "unknown field" : "an unknown field");
    }
  }
}

template <typename T, typename Decode>
Decoded<T> decoding(Decode decode) {
  Decoded<T> out;
  try {
    out.value = decode();
  } catch (const Invalid& invalid) {
    out.error = invalid.error;
  }
  return out;
}

}  // namespace

Decoded<CreateKeyRequest> decode_create_key(std::string_view body, const RequestRules& rules, core::SystemTime now) {
  return decoding<CreateKeyRequest>([&] {
    json::value storage;
    const json::object& o = body_object(body, storage);
    only_known(o, {"owner", "name", "description", "scopes", "allowed_ips", "rate_limit", "quota", "quota_period",
                   "expires_at", "expires_in", "metadata"});
    CreateKeyRequest r;
    if (const json::value* v = o.if_contains("owner")) {
      const std::string owner = text(*v, "owner", 256);
      const std::size_t colon = owner.find(':');
      if (colon == 0 || colon == std::string::npos || colon + 1 == owner.size() || !visible_ascii(owner)) {
        fail("owner", "expected TYPE:ID like user:42");
      }
      r.owner_type = owner.substr(0, colon);
      r.owner_id = owner.substr(colon + 1);
    }
    const json::value* name = o.if_contains("name");
    if (name == nullptr) fail("name", "required");
    r.name = text(*name, "name", rules.max_name);
    if (const json::value* v = o.if_contains("description"); v && !v->is_null()) {
      r.description = text(*v, "description", rules.max_description, true);
    }
    if (const json::value* v = o.if_contains("scopes")) r.scopes = scopes(*v, "scopes", rules);
    if (const json::value* v = o.if_contains("allowed_ips")) r.allowed_ips = networks(*v, "allowed_ips", rules);
    if (const json::value* v = o.if_contains("rate_limit"); v && !v->is_null()) r.rate_limit = rate_limit(*v, "rate_limit");
    if (const json::value* v = o.if_contains("quota"); v && !v->is_null()) r.quota = quota(*v, "quota");
    if (const json::value* v = o.if_contains("quota_period"); v && !v->is_null()) {
      if (!r.quota) fail("quota_period", "needs quota");
      r.quota_period_seconds = period_seconds(*v, "quota_period");
    }
    const json::value* at = o.if_contains("expires_at");
    const json::value* in = o.if_contains("expires_in");
    if (at && in) fail("expires_in", "give expires_at or expires_in, not both");
    if (at && !at->is_null()) r.expires_at = future_time(*at, "expires_at", now);
    if (in && !in->is_null()) r.expires_at = now + positive_duration(*in, "expires_in");
    if (const json::value* v = o.if_contains("metadata")) r.metadata_json = metadata(*v, "metadata", rules);
    return r;
  });
}

Decoded<VerifyRequest> decode_verify(std::string_view body) {
  return decoding<VerifyRequest>([&] {
    json::value storage;
    const json::object& o = body_object(body, storage);
    only_known(o, {"key", "method", "path", "client_ip"});
    VerifyRequest r;
    const json::value* key = o.if_contains("key");
    if (key == nullptr) fail("key", "required");
    // Never quoted back: a malformed key is the caller's secret too.
    if (!key->is_string() || key->get_string().empty() || key->get_string().size() > 512) {
      fail("key", "expected the key, a string of 1 to 512 bytes");
    }
    r.key = std::string(key->get_string());
    if (const json::value* v = o.if_contains("method")) {
      r.method = text(*v, "method", 16);
      const bool token = std::all_of(r.method.begin(), r.method.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
      if (!token) fail("method", "expected an upper-case HTTP method like GET");
    }
    if (const json::value* v = o.if_contains("path")) {
      r.path = text(*v, "path", 2048);
      if (!r.path.starts_with('/') || !visible_ascii(r.path)) fail("path", "expected an absolute path like /orders/1");
    }
    if (const json::value* v = o.if_contains("client_ip")) {
      r.client_ip = core::IpAddress::parse(text(*v, "client_ip", 64));
      if (!r.client_ip) fail("client_ip", "expected an IPv4 or IPv6 address");
    }
    return r;
  });
}

Decoded<std::chrono::milliseconds> decode_rotate(std::string_view body) {
  return decoding<std::chrono::milliseconds>([&] {
    if (body.empty()) return std::chrono::milliseconds(std::chrono::hours(24));
    json::value storage;
    const json::object& o = body_object(body, storage);
    only_known(o, {"grace"});
    const json::value* v = o.if_contains("grace");
    if (v == nullptr) return std::chrono::milliseconds(std::chrono::hours(24));
    auto grace = core::parse_duration(text(*v, "grace", 32));
    if (!grace || *grace > std::chrono::days(30)) fail("grace", "expected a duration from 0s to 30d, like 24h");
    return *grace;
  });
}

Decoded<KeyPatch> decode_key_patch(std::string_view body, const RequestRules& rules, core::SystemTime now) {
  return decoding<KeyPatch>([&] {
    json::value storage;
    const json::object& o = body_object(body, storage);
    if (o.contains("owner")) fail("owner", "a key keeps its owner: create a key for the other owner instead");
    only_known(o, {"name", "description", "scopes", "allowed_ips", "rate_limit", "quota", "quota_period",
                   "expires_at", "expires_in", "metadata"});
    KeyPatch p;
    // A present null clears; only these fields may be cleared.
    const auto cleared = [&](std::string_view field) {
      const json::value* v = o.if_contains(field);
      return v != nullptr && v->is_null();
    };
    if (const json::value* v = o.if_contains("name")) p.name = text(*v, "name", rules.max_name);
    if (const json::value* v = o.if_contains("description")) {
      p.description = v->is_null() ? std::optional<std::string>() : text(*v, "description", rules.max_description, true);
    }
    if (const json::value* v = o.if_contains("scopes")) p.scopes = scopes(*v, "scopes", rules);
    if (const json::value* v = o.if_contains("allowed_ips")) p.allowed_ips = networks(*v, "allowed_ips", rules);
    if (const json::value* v = o.if_contains("rate_limit")) {
      p.rate_limit = cleared("rate_limit") ? std::optional<core::RateLimitSpec>() : rate_limit(*v, "rate_limit");
    }
    if (const json::value* v = o.if_contains("quota")) {
      p.quota = cleared("quota") ? std::optional<std::int64_t>() : quota(*v, "quota");
    }
    if (const json::value* v = o.if_contains("quota_period")) {
      p.quota_period_seconds = cleared("quota_period") ? std::optional<int>() : period_seconds(*v, "quota_period");
    }
    const json::value* at = o.if_contains("expires_at");
    const json::value* in = o.if_contains("expires_in");
    if (at && in) fail("expires_in", "give expires_at or expires_in, not both");
    if (at) p.expires_at = at->is_null() ? std::optional<core::SystemTime>() : future_time(*at, "expires_at", now);
    if (in) {
      if (in->is_null()) fail("expires_in", "expected a duration like 30d (expires_at: null removes the expiry)");
      p.expires_at = now + positive_duration(*in, "expires_in");
    }
    if (const json::value* v = o.if_contains("metadata")) p.metadata_json = metadata(*v, "metadata", rules);
    if (p.empty()) fail("", "nothing to change: give at least one field");
    return p;
  });
}

}  // namespace keygate::api
