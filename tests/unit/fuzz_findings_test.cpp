// Regression tests for what ./scripts/fuzz found (tests/fuzz/), each named after the shape of
// the input that found it and checking the property that failed.
#include <doctest/doctest.h>

#include <string>

#include "app/config.hpp"

namespace {

std::string config_error(const std::string& yaml) {
  try {
    (void)keygate::app::parse_config(yaml, "config.yaml", {});
  } catch (const keygate::app::ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_SUITE("fuzz findings") {

TEST_CASE("config: a control byte where yaml-cpp expects an escape is answered on one line") {
  // "+\x17\0\n": yaml-cpp's own message quoted the byte it did not expect, a raw newline.
  const std::string error = config_error(std::string("+\x17\0\n", 4));
  CHECK(error.find("config.yaml:") == 0);
  CHECK(error.find("invalid YAML") != std::string::npos);
  CHECK(error.find('\n') == std::string::npos);
  for (const char c : error) CHECK(static_cast<unsigned char>(c) >= 0x20);
}

}
