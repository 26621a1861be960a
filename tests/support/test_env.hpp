#pragma once
// Addresses of the throwaway stores that scripts/test started. A missing variable is a failure,
// not a skip: an integration test that silently does nothing would pass for the wrong reason.
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace keygate::test {

inline std::string required_env(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') {
    throw std::runtime_error(std::string(name) + " is not set: run the tests through ./scripts/test");
  }
  return value;
}

inline std::string postgres_dsn() { return required_env("KEYGATE_TEST_PG_DSN"); }
inline std::string redis_url() { return required_env("KEYGATE_TEST_REDIS_URL"); }

}  // namespace keygate::test
