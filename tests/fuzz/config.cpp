// app/config: any text is either a Config or a ConfigError with one line naming the option;
// nothing else escapes (no yaml-cpp exception, no crash), ${VAR} expansion included.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>

#include "app/config.hpp"
#include "fuzz_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::map<std::string, std::string> environment{
      {"UPSTREAM", "http://127.0.0.1:9000"},
      {"PEPPER", "a-pepper-of-thirty-two-bytes-or-more-0123"},
      {"EMPTY", ""},
      {"KEYGATE_LISTEN", "127.0.0.1:8080"},
  };
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const keygate::app::Config config = keygate::app::parse_config(text, "fuzz.yaml", environment);
    (void)config;
  } catch (const keygate::app::ConfigError& error) {
    const char* message = error.what();
    FUZZ_CHECK(std::strlen(message) > 0);
    FUZZ_CHECK(std::strchr(message, '\n') == nullptr);
  }
  return 0;
}
