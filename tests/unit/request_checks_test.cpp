#include "proxy/request_checks.hpp"

#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <doctest/doctest.h>

#include <initializer_list>
#include <string>
#include <utility>

namespace http = boost::beast::http;
using namespace keygate::proxy;  // check_*, empty_lines_before_request, RequestHeader

namespace {

using FieldList = std::initializer_list<std::pair<std::string_view, std::string_view>>;

RequestHeader head(std::string_view method, std::string_view target, FieldList fields,
                   unsigned version = 11) {
  RequestHeader request;
  request.method_string(method);
  request.target(target);
  request.version(version);
  for (const auto& [name, value] : fields) request.insert(name, value);
  return request;
}

// A valid HTTP/1.1 POST with `fields` added.
RequestHeader post(FieldList fields, unsigned version = 11) {
  RequestHeader request = head("POST", "/x", {{"Host", "app.test"}}, version);
  for (const auto& [name, value] : fields) request.insert(name, value);
  return request;
}

int status_of(const RequestHeader& request) {
  const auto rejection = check_request_head(request);
  return rejection ? rejection->error.status : 0;
}

// What the session answers to `raw`: Beast's parser first (its errors are 400 unless
// check_unparsed_head names a status), then check_request_head, then the body. 0: accepted.
struct Answer {
  int status = 0;
  bool by_beast = false;  // the parser refused it, not check_request_head
};

Answer answer_to(std::string_view raw) {
  http::request_parser<http::string_body, FieldAllocator> parser;
  parser.header_limit(1024);
  raw.remove_prefix(empty_lines_before_request(raw));
  boost::system::error_code ec;
  raw.remove_prefix(parser.put(boost::asio::buffer(raw.data(), raw.size()), ec));
  if (ec) {
    const auto rejection = check_unparsed_head(ec, parser.get(), raw);
    return {rejection ? rejection->error.status : 400, true};
  }
  if (const auto rejection = check_request_head(parser.get())) {
    return {rejection->error.status, false};
  }
  while (!parser.is_done()) {
    const std::size_t used = parser.put(boost::asio::buffer(raw.data(), raw.size()), ec);
    raw.remove_prefix(used);
    if (ec == http::error::need_more && used == 0) return {-1, true};  // waits for more
    if (ec && ec != http::error::need_more) return {400, true};
  }
  return {};
}

std::string request_with(std::string_view fields, std::string_view body = "") {
  return "POST /x HTTP/1.1\r\nHost: app.test\r\n" + std::string(fields) + "\r\n" +
         std::string(body);
}

}  // namespace

TEST_CASE("what Beast 1.81's parser refuses itself: 400") {
  for (const std::string& raw : {
           std::string("G<T / HTTP/1.1\r\nHost: a\r\n\r\n"),     // method not a token
           std::string("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"),    // two spaces
           std::string("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"),    // tab as separator
           std::string("GET / HTTP/1.1 \r\nHost: a\r\n\r\n"),    // space after the version
           std::string("GET /\r\nHost: a\r\n\r\n"),              // no version (HTTP/0.9)
           std::string("GET / http/1.1\r\nHost: a\r\n\r\n"),     // version in lower case
           std::string("GET / HTTP/1.2\r\nHost: a\r\n\r\n"),     // stricter than RFC 9110 2.5
           std::string("GET / HTTP/1.1\nHost: a\n\n"),           // LF alone ends lines
           request_with("X-A : 1\r\n"),                          // space before the colon
           request_with("X-A\t: 1\r\n"),                         // tab before the colon
           request_with("X(A): 1\r\n"),                          // name not a token
           request_with(": 1\r\n"),                              // empty name
           request_with("X-A\r\n"),                              // no colon
           request_with("X-A: a\rb\r\n"),                        // bare CR
           request_with(std::string("X-A: a\0b\r\n", 11)),       // NUL
           request_with("X-A: a\x01" "b\r\n"),                   // another CTL
           request_with("X-A: a\x7f" "b\r\n"),                   // DEL
           request_with("Content-Length: -1\r\n"),
           request_with("Content-Length: +5\r\n", "hello"),
           request_with("Content-Length: 5 5\r\n", "hello"),
           request_with("Content-Length:\r\n"),
           request_with("Content-Length: 5, 6\r\n", "hello!"),
           request_with("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"),
           request_with("Content-Length: 99999999999999999999999\r\n"),
           request_with("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"),
           request_with("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", "0\r\n\r\n"),
           request_with("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"),
       }) {
    CAPTURE(raw);
    const Answer answer = answer_to(raw);
    CHECK(answer.status == 400);
    CHECK(answer.by_beast);
  }
}

TEST_CASE("what Beast lets through and check_request_head refuses") {
  const std::pair<int, std::string> cases[] = {
      {400, "get / HTTP/1.1\r\nHost: a\r\n\r\n"},
      {405, "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test\r\n\r\n"},
      {400, "GET / HTTP/1.1\r\n\r\n"},
      {400, "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"},
      {400, "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"},
      {400, "GET * HTTP/1.1\r\nHost: a\r\n\r\n"},
      {501, "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"},
      {400, "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
      {400, request_with("Transfer-Encoding: gzip\r\n", "hello")},
      {400, request_with("Transfer-Encoding: chunked, gzip\r\n", "0\r\n\r\n")},
      {501, request_with("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n")},
      {400, request_with("Transfer-Encoding: gzip\r\nContent-Length: 5\r\n", "hello")},
      {400, request_with("Content-Length: 5, 5\r\n", "hello")},
      {400, request_with("Content-Length: 5\r\nContent-Length: 5\r\n", "hello")},
      {400, request_with("Transfer_Encoding: chunked\r\nContent-Length: 5\r\n", "hello")},
  };
  for (const auto& [status, raw] : cases) {
    CAPTURE(raw);
    const Answer answer = answer_to(raw);
    CHECK(answer.status == status);
    CHECK_FALSE(answer.by_beast);
  }
}

TEST_CASE("505 for another major version, 414 for a request line over the header limit") {
  CHECK(answer_to("GET / HTTP/2.0\r\nHost: a\r\n\r\n").status == 505);
  CHECK(answer_to("GET / HTTP/0.9\r\nHost: a\r\n\r\n").status == 505);
  CHECK(answer_to("GET / HTTP/3\r\nHost: a\r\n\r\n").status == 505);
  CHECK(answer_to("GET / HTTP/11.1\r\nHost: a\r\n\r\n").status == 505);
  CHECK(answer_to("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").status == 505);
  CHECK(answer_to("GET / HTTP/1.2\r\nHost: a\r\n\r\n").status == 400);
  CHECK(answer_to("GET / HTTP/x.1\r\nHost: a\r\n\r\n").status == 400);
  CHECK(answer_to("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n").status == 400);
  CHECK(answer_to("GET /" + std::string(2000, 'a') + " HTTP/1.1\r\n\r\n").status == 414);
  // The request line fits, the fields do not: the session's 431.
  CHECK(answer_to("GET / HTTP/1.1\r\nX-Big: " + std::string(2000, 'a') + "\r\n\r\n").status ==
        400);
  const RequestHeader parsed = head("GET", "/", {});
  CHECK_FALSE(check_unparsed_head(http::error::header_limit, parsed, "X-Big: aaaa"));
  CHECK_FALSE(check_unparsed_head(http::error::bad_target, RequestHeader(), "GET /\x01 HTTP/1.1"));
}

TEST_CASE("valid shapes pass, bodies included") {
  for (const std::string& raw : {
           std::string("GET / HTTP/1.1\r\nHost: app.test\r\n\r\n"),
           std::string("\r\n\r\nGET / HTTP/1.1\r\nHost: app.test\r\n\r\n"),  // empty lines first
           std::string("GET / HTTP/1.0\r\n\r\n"),                            // 1.0: Host optional
           std::string("GET http://a.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n"),
           std::string("M-SEARCH / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n"),
           request_with("X-A: caf\xe9\r\n"),  // obs-text
           request_with("Content-Length: 005\r\n", "hello"),
           request_with("Transfer-Encoding: CHUNKED\r\n", "5\r\nhello\r\n0\r\n\r\n"),
           request_with("Transfer-Encoding: chunked\r\n", "5;a=b;c=\"d\"\r\nhello\r\n0;e\r\n\r\n"),
           request_with("Transfer-Encoding: chunked\r\n", "5 ; a = b\r\nhello\r\n0\r\n\r\n"),
           request_with("Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"),
       }) {
    CAPTURE(raw);
    CHECK(answer_to(raw).status == 0);
  }
}

TEST_CASE("chunked bodies Beast refuses (found once forwarding began): 400") {
  for (const char* body : {"5\r\nhello\r\nzz\r\n", "5\r\nhello\r\n0x5\r\nhello\r\n0\r\n\r\n",
                           "-5\r\nhello\r\n", "10000000000000005\r\nhello\r\n",
                           "5 \r\nhello\r\n", "5;=x\r\nhello\r\n", "2\r\nhello\r\n",
                           "5\r\nhello\n0\r\n\r\n", "5\r\nhello\r\n0\r\nX Bad: 1\r\n\r\n",
                           "5\r\nhello\r\n0\r\nX-T : 1\r\n\r\n"}) {
    const std::string_view chunks = body;
    CAPTURE(chunks);
    CHECK(answer_to(request_with("Transfer-Encoding: chunked\r\n", chunks)).status == 400);
  }
  // Beast 1.81 reads a quoted chunk-ext value across the line end: it waits for a closing
  // quote instead of refusing (the session answers when the body deadline ends).
  CHECK(answer_to(request_with("Transfer-Encoding: chunked\r\n", "5;a=\"x\r\nhello\r\n"))
            .status == -1);
}

TEST_CASE("Transfer-Encoding: exactly chunked passes, the rest is 400, or 501 for a coding") {
  const std::pair<std::string_view, int> cases[] = {
      {"chunked", 0},          {" chunked ", 0},       {"Chunked", 0},
      {"gzip", 400},           {"identity", 400},      {"", 400},
      {"chunked, gzip", 400},  {"chunked, chunked", 400}, {"chunked;q=1", 400},
      {", chunked", 400},      {"chunked,", 400},      {"gz ip, chunked", 400},
      {"gzip, chunked", 501},  {"gzip;q=1, chunked", 501}, {"deflate, gzip, chunked", 501},
  };
  for (const auto& [value, status] : cases) {
    CAPTURE(value);
    const auto rejection = check_framing(post({{"Transfer-Encoding", value}}));
    CHECK((rejection ? rejection->error.status : 0) == status);
    if (rejection) CHECK(rejection->close);
  }
}

TEST_CASE("framing: the other rules, all of which close the connection") {
  for (const RequestHeader& request : {
           post({{"Transfer-Encoding", "chunked"}}, 10),
           post({{"Transfer-Encoding", "chunked"}, {"Content-Length", "5"}}),
           post({{"Content-Length", "5"}, {"Transfer-Encoding", "chunked"}}),
           post({{"Transfer-Encoding", "chunked"}, {"Transfer-Encoding", "chunked"}}),
           post({{"Content-Length", "5"}, {"Content-Length", "5"}}),
           post({{"Content-Length", "5, 5"}}),
           post({{"Transfer_Encoding", "chunked"}}),
           post({{"content_length", "5"}}),
           post({{"TRANSFER_encoding", "chunked"}}),
       }) {
    const auto rejection = check_framing(request);
    REQUIRE(rejection);
    CHECK(rejection->error.status == 400);
    CHECK(rejection->error.code == "bad_request");
    CHECK(rejection->close);
  }
  CHECK_FALSE(check_framing(post({{"Content-Length", "5"}})));
  CHECK_FALSE(check_framing(post({{"X_Content_Length", "5"}})));  // not a framing name
  CHECK_FALSE(check_framing(post({{"Transfer-Encoding", "chunked"}})));
}

TEST_CASE("method: CONNECT is 405, lower-case letters 400, other tokens pass") {
  const auto connect = check_request_head(head("CONNECT", "a.test:443", {{"Host", "a.test"}}));
  REQUIRE(connect);
  CHECK(connect->error.status == 405);
  CHECK(connect->error.code == "method_not_allowed");
  CHECK(connect->close);  // what follows may be tunnel data
  CHECK(status_of(head("CONNECT", "/x", {{"Host", "a"}})) == 405);
  CHECK(status_of(head("get", "/x", {{"Host", "a"}})) == 400);
  CHECK(status_of(head("Post", "/x", {{"Host", "a"}})) == 400);
  for (const char* method : {"GET", "PROPFIND", "M-SEARCH", "BREW", "X_1"}) {
    CAPTURE(method);
    CHECK(status_of(head(method, "/x", {{"Host", "a"}})) == 0);
  }
}

TEST_CASE("Host: required in HTTP/1.1, at most once, a valid host[:port]") {
  CHECK(status_of(head("GET", "/", {})) == 400);
  CHECK(status_of(head("GET", "/", {}, 10)) == 0);
  CHECK(status_of(head("GET", "/", {{"Host", "a"}, {"Host", "a"}})) == 400);
  CHECK(status_of(head("GET", "/", {{"Host", "a"}, {"Host", "b"}}, 10)) == 400);
  CHECK(status_of(head("GET", "/", {{"Host", "a"}}, 10)) == 0);
  for (const char* value : {"", "a b", "a, b", "a/b", "u@a", "a:8o", "a..b", "[::1"}) {
    CAPTURE(value);
    CHECK(status_of(head("GET", "/", {{"Host", value}})) == 400);
  }
  // Absolute-form: Host is still required and checked (nginx does the same), then replaced.
  CHECK(status_of(head("GET", "http://a.test/x", {})) == 400);
  CHECK(status_of(head("GET", "http://a.test/x", {{"Host", "other.test"}})) == 0);
}

TEST_CASE("target: over 8 KiB 414, the asterisk-form only for OPTIONS, which is 501") {
  const std::string longest = "/" + std::string(8 * 1024 - 1, 'a');
  CHECK(status_of(head("GET", longest, {{"Host", "a"}})) == 0);
  const auto too_long = check_request_head(head("GET", longest + "a", {{"Host", "a"}}));
  REQUIRE(too_long);
  CHECK(too_long->error.status == 414);
  CHECK(too_long->error.code == "uri_too_long");
  CHECK(status_of(head("GET", "*", {{"Host", "a"}})) == 400);
  const auto options = check_request_head(head("OPTIONS", "*", {{"Host", "a"}}));
  REQUIRE(options);
  CHECK(options->error.status == 501);
  CHECK(options->error.code == "not_implemented");
  CHECK_FALSE(options->close);  // nothing wrong with the message: keep-alive
}

TEST_CASE("empty lines before a request line: whole CRLF pairs only") {
  CHECK(empty_lines_before_request("\r\n\r\nGET") == 4);
  CHECK(empty_lines_before_request("\r\nGET") == 2);
  CHECK(empty_lines_before_request("GET") == 0);
  CHECK(empty_lines_before_request("\r\n\r") == 2);
  CHECK(empty_lines_before_request("\n") == 0);
  CHECK(empty_lines_before_request("") == 0);
}
