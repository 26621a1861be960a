#include "authz/request_path.hpp"

#include <doctest/doctest.h>

#include <string>

using keygate::authz::normalize_target;
using keygate::authz::PathError;

namespace {
std::string path_of(std::string_view target) {
  PathError error = PathError::too_long;
  auto normalized = normalize_target(target, &error);
  REQUIRE_MESSAGE(normalized, target);
  CHECK(error == PathError::none);
  return normalized->path;
}
PathError error_of(std::string_view target) {
  PathError error = PathError::none;
  CHECK_FALSE(normalize_target(target, &error));
  return error;
}
}  // namespace

TEST_CASE("path and query are split at the first '?'") {
  auto target = normalize_target("/inventory/items?x=1&api_key=abc?d");
  REQUIRE(target);
  CHECK(target->path == "/inventory/items");
  CHECK(target->query == "x=1&api_key=abc?d");
  target = normalize_target("/a?");
  REQUIRE(target);
  CHECK(target->path == "/a");
  CHECK(target->query.empty());
  CHECK(normalize_target("/")->path == "/");
  CHECK(normalize_target("/?q=%2F..%2F")->query == "q=%2F..%2F");  // the query is kept as sent
}

TEST_CASE("dot segments are removed and never climb above the root") {
  CHECK(path_of("/public/../admin") == "/admin");
  CHECK(path_of("/public/./x") == "/public/x");
  CHECK(path_of("/a/b/c/./../../g") == "/a/g");
  CHECK(path_of("/..") == "/");
  CHECK(path_of("/../../../etc/passwd") == "/etc/passwd");
  CHECK(path_of("/a/..") == "/");
  CHECK(path_of("/a/b/..") == "/a/");
  CHECK(path_of("/a/.") == "/a/");
  CHECK(path_of("/a/b/.") == "/a/b/");
  CHECK(path_of("/.") == "/");
  CHECK(path_of("/a/...") == "/a/...");  // three dots are a name
  CHECK(path_of("/a/.b/..c") == "/a/.b/..c");
  CHECK(path_of("/public/..;/admin") == "/admin");  // Tomcat's path-parameter trick
  CHECK(path_of("/public/.;x/admin") == "/public/admin");
  CHECK(path_of("/a;v=1/b") == "/a;v=1/b");
}

TEST_CASE("repeated slashes are merged, a trailing slash is kept") {
  CHECK(path_of("//admin") == "/admin");
  CHECK(path_of("/a//b///c") == "/a/b/c");
  CHECK(path_of("/a/") == "/a/");
  CHECK(path_of("/a//") == "/a/");
  CHECK(path_of("//") == "/");
}

TEST_CASE("escapes of unreserved characters are decoded before dot removal") {
  CHECK(path_of("/public/%2e%2e/admin") == "/admin");
  CHECK(path_of("/public/%2E./admin") == "/admin");
  CHECK(path_of("/%61dmin") == "/admin");
  CHECK(path_of("/%41%5a%30%2D%5F%7E") == "/AZ0-_~");
}

TEST_CASE("other escapes are kept with upper-case hex, unsafe raw bytes are escaped") {
  CHECK(path_of("/a%20b") == "/a%20b");
  CHECK(path_of("/a%3fb") == "/a%3Fb");
  CHECK(path_of("/caf%c3%a9") == "/caf%C3%A9");
  CHECK(path_of("/a%25") == "/a%25");
  CHECK(path_of("/a%252e%252e") == "/a%252e%252e");  // decoded once only
  CHECK(path_of("/caf\xc3\xa9") == "/caf%C3%A9");
  CHECK(path_of("/a b\"<>") == "/a%20b%22%3C%3E");
  CHECK(path_of("/a:b@c!$&'()*+,;=") == "/a:b@c!$&'()*+,;=");
}

TEST_CASE("encoded separators, NUL and control characters are refused") {
  CHECK(error_of("/public%2F..%2Fadmin") == PathError::encoded_separator);
  CHECK(error_of("/public%2f..") == PathError::encoded_separator);
  CHECK(error_of("/a%5Cb") == PathError::encoded_separator);
  CHECK(error_of("/a%5cb") == PathError::encoded_separator);
  CHECK(error_of("/public\\..\\admin") == PathError::encoded_separator);
  CHECK(error_of("/a%00") == PathError::control_character);
  CHECK(error_of(std::string_view("/a\0b", 4)) == PathError::control_character);
  CHECK(error_of("/a\tb") == PathError::control_character);
  CHECK(error_of("/a\x7f") == PathError::control_character);
  CHECK(error_of("/a?x=\r\n") == PathError::control_character);
}

TEST_CASE("bad percent encoding is refused") {
  for (const char* target : {"/a%", "/a%2", "/a%zz", "/a%2g", "/%%32e", "/a%-1"}) {
    CAPTURE(target);
    CHECK(error_of(target) == PathError::bad_percent_encoding);
  }
}

TEST_CASE("only origin-form and http(s) absolute-form targets up to 8 KiB are accepted") {
  CHECK(error_of("") == PathError::not_origin_form);
  CHECK(error_of("*") == PathError::not_origin_form);
  CHECK(error_of("example.com:443") == PathError::not_origin_form);  // authority-form
  CHECK(error_of("ftp://example.com/admin") == PathError::not_origin_form);
  CHECK(error_of("http:/example.com/admin") == PathError::not_origin_form);
  CHECK(error_of("admin") == PathError::not_origin_form);
  CHECK(error_of("/a#frag") == PathError::not_origin_form);
  CHECK(error_of("http://example.com#frag") == PathError::not_origin_form);
  std::string longest = "/" + std::string(8 * 1024 - 1, 'a');
  CHECK(path_of(longest) == longest);
  CHECK(error_of(longest + "a") == PathError::too_long);
  CHECK_FALSE(normalize_target("relative"));  // the error pointer is optional
}

TEST_CASE("normalizing twice changes nothing") {
  for (const char* target :
       {"/public/%2e%2e/admin/", "/a//b/./c/../d", "/caf\xc3\xa9%3f", "/..;/x"}) {
    const std::string once = path_of(target);
    CHECK(path_of(once) == once);
  }
}

TEST_CASE("absolute-form: the path is normalized, the authority kept for Host") {
  auto target = normalize_target("http://example.com:8080/public/../admin?x=1");
  REQUIRE(target);
  CHECK(target->path == "/admin");
  CHECK(target->query == "x=1");
  CHECK(target->authority == "example.com:8080");
  target = normalize_target("HTTPS://Example.COM");
  REQUIRE(target);
  CHECK(target->path == "/");  // an empty path is "/" (RFC 9112 3.2.1)
  CHECK(target->authority == "Example.COM");
  target = normalize_target("http://[::1]?q");
  REQUIRE(target);
  CHECK(target->path == "/");
  CHECK(target->query == "q");
  CHECK(target->authority == "[::1]");
  CHECK(normalize_target("/origin")->authority.empty());
}

TEST_CASE("absolute-form: an empty or invalid authority, or userinfo, is refused") {
  for (const char* target : {"http:///x", "http://u@example.com/x", "http://u:p@example.com/",
                             "http://exa mple/", "http://a..b/", "http://a:8o/", "https://[::1/"}) {
    CAPTURE(target);
    CHECK(error_of(target) == PathError::bad_authority);
  }
}

TEST_CASE("an authority is uri-host [: port] without userinfo") {
  using keygate::authz::is_valid_authority;
  for (const char* valid : {"app.test", "app.test:8080", "app.test:", "app.test.", "127.0.0.1:9",
                            "[::1]", "[::1]:80", "[::ffff:127.0.0.1]", "a%41", "xn--bcher-kva.ch",
                            "a-b_c~d", "a,b"}) {
    CAPTURE(valid);
    CHECK(is_valid_authority(valid));
  }
  for (const char* invalid : {"", ":80", "app/test", "u@app", "app:8o", "app:1:2", "app..test",
                              ".", ".app", "[::1", "[]", "[::1]x", "[g::1]", "a b", "a\\b", "a%4",
                              "a%zz", "caf\xc3\xa9"}) {
    CAPTURE(invalid);
    CHECK_FALSE(is_valid_authority(invalid));
  }
}
