#pragma once
// Internal to proxy/: the answers keygate writes itself, as complete HTTP/1.1 responses in
// raw text (no serializer, no allocation beyond the reused `out`). Every error has the JSON
// body {"error": CODE, "message": TEXT}, Content-Type: application/json and
// Cache-Control: no-store. Never contains the key.
#include <string>
#include <string_view>

#include "authz/authorizer.hpp"

namespace keygate::proxy {

// keygate's own errors (the authorizer's are in authz/decision.hpp).
struct ProxyError {
  int status;
  std::string_view code;
  std::string_view message;
};
inline constexpr ProxyError bad_request{400, "bad_request", "the request is malformed"};
inline constexpr ProxyError request_timeout{408, "request_timeout",
                                            "the request was not received in time"};
inline constexpr ProxyError method_not_allowed{405, "method_not_allowed",
                                               "CONNECT is not served: keygate is no forward proxy"};
inline constexpr ProxyError body_too_large{413, "body_too_large", "the request body is too large"};
inline constexpr ProxyError uri_too_long{414, "uri_too_long", "the request target is too long"};
inline constexpr ProxyError header_too_large{431, "header_too_large",
                                             "the request header is too large"};
inline constexpr ProxyError internal_error{500, "internal_error", "internal error"};
inline constexpr ProxyError not_implemented{501, "not_implemented",
                                            "the request needs what keygate does not implement"};
inline constexpr ProxyError upstream_unavailable{502, "upstream_unavailable",
                                                 "the upstream service is unavailable"};
inline constexpr ProxyError over_capacity{503, "over_capacity",
                                          "keygate has too many open connections; retry shortly"};
inline constexpr ProxyError upstream_timeout{504, "upstream_timeout",
                                             "the upstream service did not answer in time"};
inline constexpr ProxyError version_not_supported{505, "version_not_supported",
                                                  "only HTTP/1.0 and HTTP/1.1 are served"};

// How the connection goes on after the answer.
struct AnswerFraming {
  bool keep_alive = true;
  bool http10 = false;  // the client spoke HTTP/1.0: keep-alive must be said explicitly
};

// `rate`: the RateLimit-* state of the request's key, when one was identified (else null).
void format_proxy_error(std::string& out, const ProxyError& error, AnswerFraming framing,
                        const authz::RateLimitStatus* rate = nullptr);
// A denied or undecided request: status and body from the decision (an undecided one is a
// 500, never a 200); WWW-Authenticate, Allow (405), Retry-After and RateLimit-* where they
// apply.
void format_rejection(std::string& out, const authz::AuthResult& result, AnswerFraming framing);
// A connection over max_connections: 503 over_capacity, Retry-After: 1, Connection: close.
void format_over_capacity(std::string& out);
// Authz mode, allowed: 200 with the identity headers and RateLimit-*.
void format_authz_allowed(std::string& out, const authz::AuthResult& result,
                          AnswerFraming framing);

inline constexpr std::string_view continue_answer = "HTTP/1.1 100 Continue\r\n\r\n";

std::string_view reason_phrase(int status);

}  // namespace keygate::proxy
