#pragma once
// The subcommands of the keygate binary. Each gets the validated config and the arguments
// after its own name ("keys create --owner ..." -> {"create", "--owner", ...}) and returns the
// process exit code: 0 success, 1 a store or runtime failure, 2 bad arguments.
#include <span>
#include <string>

#include "app/config.hpp"

namespace keygate::app {

inline constexpr int exit_ok = 0;
inline constexpr int exit_failure = 1;
inline constexpr int exit_usage = 2;

using Args = std::span<const std::string>;

int run_serve(const Config& config, Args args);
int run_migrate(const Config& config, Args args);
int run_keys(const Config& config, Args args);
int run_usage(const Config& config, Args args);

// A bad command line: what main prints (one line) before exiting with exit_usage.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace keygate::app
