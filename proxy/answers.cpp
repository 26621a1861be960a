#include "proxy/answers.hpp"

#include <array>
#include <charconv>

#include <boost/beast/http/status.hpp>

#include "authz/decision.hpp"
#include "proxy/headers.hpp"

namespace keygate::proxy {

namespace http = boost::beast::http;

namespace {

void append_number(std::string& out, long long value) {
  std::array<char, 24> buffer;
  const auto result = std::to_chars(buffer.data(), buffer.data() + buffer.size(), value);
  out.append(buffer.data(), result.ptr);
}

void append_status_line(std::string& out, int status) {
  out += "HTTP/1.1 ";
  append_number(out, status);
  out += ' ';
  out += reason_phrase(status);
  out += "\r\n";
}

void append_connection(std::string& out, AnswerFraming framing) {
  if (!framing.keep_alive) {
    out += "Connection: close\r\n";
  } else if (framing.http10) {
    out += "Connection: keep-alive\r\n";
  }
}

// The JSON error body; code and message are fixed ASCII texts without quotes or backslashes.
void append_json_error(std::string& out, std::string_view code, std::string_view message) {
  const std::size_t length = code.size() + message.size() + 25;  // {"error":"","message":""}
  out += "Content-Type: application/json\r\nCache-Control: no-store\r\nContent-Length: ";
  append_number(out, static_cast<long long>(length));
  out += "\r\n\r\n{\"error\":\"";
  out += code;
  out += "\",\"message\":\"";
  out += message;
  out += "\"}";
}

// RFC 6750 3: "Bearer" alone when no key was sent; error="..." when one was and failed.
std::string_view www_authenticate(authz::DenyReason reason) {
  switch (reason) {
    case authz::DenyReason::missing_key: return "Bearer";
    case authz::DenyReason::invalid_key:
    case authz::DenyReason::expired_key:
    case authz::DenyReason::revoked_key: return "Bearer error=\"invalid_token\"";
    case authz::DenyReason::insufficient_scope: return "Bearer error=\"insufficient_scope\"";
    case authz::DenyReason::conflicting_keys: return "Bearer error=\"invalid_request\"";
    default: return {};
  }
}

}  // namespace

void format_proxy_error(std::string& out, const ProxyError& error, AnswerFraming framing,
                        const authz::RateLimitStatus* rate) {
  out.clear();
  append_status_line(out, error.status);
  append_connection(out, framing);
  if (rate != nullptr) append_rate_limit(out, *rate);
  append_json_error(out, error.code, error.message);
}

void format_rejection(std::string& out, const authz::AuthResult& result, AnswerFraming framing) {
  const authz::DenyReason reason = result.decision.reason;
  const int status = authz::http_status(result.decision);
  out.clear();
  append_status_line(out, status);
  append_connection(out, framing);
  if (const auto challenge = www_authenticate(reason); !challenge.empty()) {
    out += "WWW-Authenticate: ";
    out += challenge;
    out += "\r\n";
  }
  if (status == 429 || status == 503) {
    long long seconds = result.rate.retry_after_seconds;
    if (seconds <= 0 && status == 429) seconds = result.rate.reset_seconds;
    out += "Retry-After: ";
    append_number(out, seconds > 0 ? seconds : 1);
    out += "\r\n";
  }
  if (status == 405) {
    out += "Allow: ";
    out += result.allow;
    out += "\r\n";
  }
  append_rate_limit(out, result.rate);
  append_json_error(out, authz::error_code(reason), authz::error_message(reason));
}

void format_over_capacity(std::string& out) {
  out.clear();
  append_status_line(out, over_capacity.status);
  append_connection(out, AnswerFraming{.keep_alive = false});
  out += "Retry-After: 1\r\n";
  append_json_error(out, over_capacity.code, over_capacity.message);
}

void format_authz_allowed(std::string& out, const authz::AuthResult& result,
                          AnswerFraming framing) {
  out.clear();
  append_status_line(out, 200);
  append_connection(out, framing);
  if (result.key) append_identity(out, *result.key);
  append_rate_limit(out, result.rate);
  out += "Cache-Control: no-store\r\nContent-Length: 0\r\n\r\n";
}

std::string_view reason_phrase(int status) {
  return http::obsolete_reason(http::int_to_status(static_cast<unsigned>(status)));
}

}  // namespace keygate::proxy
