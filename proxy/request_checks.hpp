#pragma once
// Internal to proxy/ (Beast types in the interface): the RFC 9112 / RFC 9110 rules on a
// request head that Beast 1.81's parser does not apply itself. Pure functions, no I/O.
//
// Beast's parser already refuses (an http::error, answered 400): a method that is not a
// token; a target with a CTL; an HTTP-version other than exactly "HTTP/1.0" or "HTTP/1.1";
// extra or missing SP in the request line; a field name that is not a token (whitespace
// before the colon included); CR, LF, NUL or another CTL in a field value; bare CR; LF alone
// as a line end; a Content-Length element that is not 1*DIGIT, overflows or differs from
// another; Content-Length after chunked and Transfer-Encoding after Content-Length or after
// chunked. In a chunked body: a chunk-size that is not hex or overflows, a chunk-ext that is
// not *( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] ), chunk-data not ended
// by CRLF, and a trailer line that is not a field line. (obs-fold is refused by read_header.)
//
// What it lets through is checked here; see check_request_head for the list.
#include <boost/beast/http/message.hpp>
#include <boost/system/error_code.hpp>

#include <cstddef>
#include <optional>
#include <string_view>

#include "proxy/answers.hpp"
#include "proxy/headers.hpp"

namespace keygate::proxy {

using RequestHeader = boost::beast::http::request_header<Fields>;

struct HeadRejection {
  ProxyError error;   // 400, 405, 414, 501 or 505, with a message naming the rule
  bool close = true;  // the connection closes after the answer (always for framing errors)
};

// In this order; the first rule broken is the answer.
// Framing (RFC 9112 6.1, 6.3; 400 unless said, the connection always closes):
//   Transfer-Encoding in an HTTP/1.0 request; Transfer-Encoding with Content-Length; more
//   than one Transfer-Encoding line; a Transfer-Encoding value other than exactly "chunked"
//   (chunked not final, twice, with parameters, or malformed: 400; other codings before a
//   final chunked: 501); more than one Content-Length line or a list ("5, 5", which nginx
//   refuses too); a field named like Content-Length or Transfer-Encoding with '_' for '-'
//   (CGI-style servers read it as the real one).
// Method: CONNECT (keygate is no forward proxy): 405, as nginx; a method with lower-case
//   letters (methods are case-sensitive; an upstream may read "get" as GET): 400, as nginx.
// Host (RFC 9112 3.2): an HTTP/1.1 request without one, more than one, or one that is not
//   uri-host [":" port] (authz::is_valid_authority): 400.
// Target (RFC 9112 3): longer than authz::max_target_length: 414; asterisk-form: OPTIONS 501
//   (keep-alive: the server-wide OPTIONS is not served), any other method 400. Authority-form
//   and other non-origin, non-absolute forms are refused by authz::normalize_target (400).
std::optional<HeadRejection> check_request_head(const RequestHeader& request);

// The framing rules alone (part of check_request_head).
std::optional<HeadRejection> check_framing(const RequestHeader& request);

// A head Beast refused with `ec`: the answer when the RFC names one other than the session's
// 400 or 431. `partial` is what the parser holds (no target yet: the request line did not
// parse), `received` the bytes it left unparsed (then the request line first).
// 505 for an HTTP-version whose major version is not 1 ("HTTP/2.0", "HTTP/0.9", "HTTP/3");
// 414 when the header limit was reached inside the request line. Nothing otherwise.
std::optional<HeadRejection> check_unparsed_head(const boost::system::error_code& ec,
                                                 const RequestHeader& partial,
                                                 std::string_view received);

// RFC 9112 2.2: the empty lines (CRLF) before a request line, which a server SHOULD ignore:
// how many bytes of `received` they take.
std::size_t empty_lines_before_request(std::string_view received);

}  // namespace keygate::proxy
