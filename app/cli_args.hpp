#pragma once
// The command line of a subcommand, strictly: --flag VALUE, --flag=VALUE, --switch and up to
// a given number of positional arguments. Every mistake is a UsageError naming the argument.
#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "app/commands.hpp"

namespace keygate::app {

struct ParsedArgs {
  std::map<std::string, std::string, std::less<>> values;  // --flag VALUE / --flag=VALUE
  std::set<std::string, std::less<>> switches;             // --flag
  std::vector<std::string> positional;

  std::optional<std::string> value(std::string_view flag) const;
  bool has(std::string_view flag) const { return switches.contains(flag); }
};

// `command` ("keys create") starts the messages about arguments it does not take.
ParsedArgs parse_args(const std::string& command, Args args, const std::set<std::string_view>& valued,
                      const std::set<std::string_view>& switches, std::size_t max_positional);

// A duration flag (--grace 24h); `example` is shown when the text is not one.
std::chrono::milliseconds parse_duration_flag(const std::string& flag, const std::string& text,
                                              std::string_view example, bool allow_zero);

// True when `text` holds a run of 16 or more base62 characters: it may be an API key, or a
// good part of one (a key pasted where an id or a value belongs), so it is never shown.
bool may_hold_key(std::string_view text);

// `"text"` for messages about an argument; an argument that may_hold_key is not shown.
std::string quoted_argument(std::string_view text);

}  // namespace keygate::app
