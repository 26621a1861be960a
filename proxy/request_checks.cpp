#include "proxy/request_checks.hpp"

#include <boost/beast/http/error.hpp>

#include <algorithm>

#include "authz/request_path.hpp"
#include "core/text.hpp"

namespace keygate::proxy {

namespace http = boost::beast::http;

namespace {

constexpr std::string_view chunked = "chunked";

// A 400 naming the rule; the connection closes.
constexpr HeadRejection bad(std::string_view message) {
  return {ProxyError{bad_request.status, bad_request.code, message}, true};
}

// RFC 9112 6.1: the answer to a Transfer-Encoding value other than exactly "chunked".
HeadRejection check_transfer_codings(std::string_view value) {
  std::string_view last;       // the last element, parameters included
  std::string_view last_name;  // its coding name
  bool chunked_before_last = false;
  for (bool more = true; more;) {
    const std::size_t comma = value.find(',');
    more = comma != std::string_view::npos;
    const std::string_view element = core::trim_blanks(value.substr(0, comma));
    const std::string_view name = core::trim_blanks(element.substr(0, element.find(';')));
    if (!core::is_token(name)) return bad("the Transfer-Encoding header is malformed");
    if (core::iequals_ascii(last_name, chunked)) chunked_before_last = true;
    last = element;
    last_name = name;
    if (more) value.remove_prefix(comma + 1);
  }
  if (!core::iequals_ascii(last_name, chunked)) {
    return bad("chunked is not the final transfer coding: the body length is unknown");
  }
  if (chunked_before_last) return bad("chunked is applied more than once");
  if (last.size() != last_name.size()) return bad("chunked takes no parameters");
  return {ProxyError{not_implemented.status, not_implemented.code,
                     "no transfer coding but chunked is implemented"},
          true};
}

// True when `name`, with '_' read as '-', is `framing_name` (lower case) but not spelled so.
bool aliases(std::string_view name, std::string_view framing_name) {
  if (name.size() != framing_name.size() || name.find('_') == std::string_view::npos) {
    return false;
  }
  return std::equal(name.begin(), name.end(), framing_name.begin(), [](char c, char framing) {
    return (c == '_' ? '-' : core::ascii_lower(c)) == framing;
  });
}

std::optional<HeadRejection> check_method(const RequestHeader& request) {
  if (request.method() == http::verb::connect) return HeadRejection{method_not_allowed, true};
  const std::string_view method = request.method_string();
  if (std::any_of(method.begin(), method.end(), [](char c) { return c >= 'a' && c <= 'z'; })) {
    return bad("the method has lower-case letters (methods are case-sensitive)");
  }
  return std::nullopt;
}

std::optional<HeadRejection> check_host(const RequestHeader& request) {
  const std::size_t hosts = request.count(http::field::host);
  if (hosts > 1) return bad("more than one Host header");
  if (hosts == 0) {
    if (request.version() >= 11) return bad("an HTTP/1.1 request needs a Host header");
    return std::nullopt;
  }
  if (!authz::is_valid_authority(request[http::field::host])) {
    return bad("the Host header is not a valid host[:port]");
  }
  return std::nullopt;
}

std::optional<HeadRejection> check_target(const RequestHeader& request) {
  const std::string_view target = request.target();
  if (target.size() > authz::max_target_length) return HeadRejection{uri_too_long, true};
  if (target == "*") {
    if (request.method() != http::verb::options) return bad("the target * is only for OPTIONS");
    return HeadRejection{ProxyError{not_implemented.status, not_implemented.code,
                                    "OPTIONS for the whole server is not served"},
                         false};
  }
  return std::nullopt;
}

}  // namespace

std::optional<HeadRejection> check_framing(const RequestHeader& request) {
  const std::size_t codings = request.count(http::field::transfer_encoding);
  const std::size_t lengths = request.count(http::field::content_length);
  if (codings > 0) {
    if (request.version() < 11) return bad("Transfer-Encoding in an HTTP/1.0 request");
    if (lengths > 0) return bad("both Transfer-Encoding and Content-Length");
    if (codings > 1) return bad("more than one Transfer-Encoding header");
    const std::string_view value = core::trim_blanks(request[http::field::transfer_encoding]);
    if (!core::iequals_ascii(value, chunked)) return check_transfer_codings(value);
  }
  if (lengths > 1) return bad("more than one Content-Length header");
  if (lengths == 1 && request[http::field::content_length].find(',') != std::string_view::npos) {
    return bad("Content-Length is a list");
  }
  for (const auto& field : request) {
    if (field.name() != http::field::unknown) continue;
    const std::string_view name = field.name_string();
    if (aliases(name, "content-length") || aliases(name, "transfer-encoding")) {
      return bad("a framing header spelled with '_' for '-'");
    }
  }
  return std::nullopt;
}

std::optional<HeadRejection> check_request_head(const RequestHeader& request) {
  for (const auto check : {check_framing, check_method, check_host, check_target}) {
    if (auto rejection = check(request)) return rejection;
  }
  return std::nullopt;
}

std::optional<HeadRejection> check_unparsed_head(const boost::system::error_code& ec,
                                                 const RequestHeader& partial,
                                                 std::string_view received) {
  const bool in_request_line = partial.target().empty();
  if (ec == http::error::header_limit && in_request_line) return HeadRejection{uri_too_long, true};
  if (ec == http::error::bad_version && in_request_line) {
    const std::string_view line = received.substr(0, received.find_first_of("\r\n"));
    // The last word of the request line: "HTTP/" major "." minor when it is a version at all.
    const std::string_view version = line.substr(line.rfind(' ') + 1);
    if (version.substr(0, 5) == "HTTP/") {
      const std::string_view rest = version.substr(5);
      const std::string_view major =
          rest.substr(0, std::find_if_not(rest.begin(), rest.end(), core::is_ascii_digit) -
                             rest.begin());
      if (!major.empty() && major != "1") return HeadRejection{version_not_supported, true};
    }
  }
  return std::nullopt;
}

std::size_t empty_lines_before_request(std::string_view received) {
  std::size_t n = 0;
  while (received.substr(n, 2) == "\r\n") n += 2;
  return n;
}

}  // namespace keygate::proxy
