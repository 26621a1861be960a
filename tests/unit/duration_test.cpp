#include "core/duration.hpp"

#include <doctest/doctest.h>

using namespace std::chrono_literals;
using keygate::core::format_duration;
using keygate::core::parse_duration;
using keygate::core::parse_rate_limit;
using keygate::core::RateLimitSpec;

TEST_CASE("durations: digits then one unit") {
  CHECK(parse_duration("500ms") == 500ms);
  CHECK(parse_duration("90s") == 90s);
  CHECK(parse_duration("15m") == 15min);
  CHECK(parse_duration("24h") == 24h);
  CHECK(parse_duration("30d") == std::chrono::milliseconds(30LL * 86'400'000));
  CHECK(parse_duration("0s") == 0ms);
  CHECK(parse_duration("007s") == 7s);
}

TEST_CASE("durations: every malformed shape is rejected") {
  for (const char* text : {"", "s", "ms", "10", "10 s", " 10s", "10s ", "-5s", "+5s", "1.5s", "10S",
                           "10sec", "10x", "10mss", "10sm", "5h30m", "1e3s", "0x10s", "١٠s"}) {
    CAPTURE(text);
    CHECK_FALSE(parse_duration(text));
  }
}

TEST_CASE("durations: overflow is rejected, not wrapped") {
  CHECK(parse_duration("9223372036854775807ms"));
  CHECK_FALSE(parse_duration("9223372036854775808ms"));
  CHECK_FALSE(parse_duration("9223372036854775807s"));
  CHECK_FALSE(parse_duration("106751991167301d"));
  CHECK_FALSE(parse_duration("99999999999999999999999s"));
}

TEST_CASE("rate limits: <limit>/<window>") {
  CHECK(parse_rate_limit("100/60s") == RateLimitSpec{100, 60});
  CHECK(parse_rate_limit("10/1m") == RateLimitSpec{10, 60});
  CHECK(parse_rate_limit("5/1h") == RateLimitSpec{5, 3600});
  CHECK(parse_rate_limit("1/1d") == RateLimitSpec{1, 86400});
  CHECK(parse_rate_limit("3/2000ms") == RateLimitSpec{3, 2});
  CHECK(parse_rate_limit("2147483647/1s") == RateLimitSpec{2147483647, 1});
}

TEST_CASE("rate limits: every malformed shape is rejected") {
  for (const char* text : {"", "100", "100/", "/60s", "0/60s", "100/0s", "-1/60s", "100/60",
                           "100/1500ms", "100/500ms", "2147483648/1s", "100/24856d", "100 /60s",
                           "100/ 60s", "100/60s/2", "1e2/60s", "100/s", "100//60s"}) {
    CAPTURE(text);
    CHECK_FALSE(parse_rate_limit(text));
  }
}

TEST_CASE("format_duration picks the largest exact unit and round-trips") {
  CHECK(format_duration(30s) == "30s");
  CHECK(format_duration(24h) == "1d");
  CHECK(format_duration(25h) == "25h");
  CHECK(format_duration(90s) == "90s");
  CHECK(format_duration(15min) == "15m");
  CHECK(format_duration(1500ms) == "1500ms");
  CHECK(format_duration(0ms) == "0s");
  for (std::chrono::milliseconds d : {1ms, 999ms, 1000ms, 61000ms, 7200000ms, 2592000000ms}) {
    CHECK(parse_duration(format_duration(d)) == d);
  }
}
