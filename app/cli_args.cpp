// Strict parsing of a subcommand's arguments (see cli_args.hpp).
#include "app/cli_args.hpp"

#include "core/base62.hpp"
#include "core/duration.hpp"

namespace keygate::app {

std::optional<std::string> ParsedArgs::value(std::string_view flag) const {
  auto it = values.find(flag);
  if (it == values.end()) return std::nullopt;
  return it->second;
}

ParsedArgs parse_args(const std::string& command, Args args, const std::set<std::string_view>& valued,
                      const std::set<std::string_view>& switches, std::size_t max_positional) {
  ParsedArgs parsed;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (!arg.starts_with("--")) {
      if (parsed.positional.size() >= max_positional) {
        throw UsageError(command + ": unexpected argument " + quoted_argument(arg));
      }
      parsed.positional.push_back(arg);
      continue;
    }
    const auto eq = arg.find('=');
    const std::string flag = arg.substr(0, eq);
    if (switches.contains(flag)) {
      if (eq != std::string::npos) throw UsageError(flag + ": takes no value");
      if (!parsed.switches.insert(flag).second) throw UsageError(flag + ": given twice");
      continue;
    }
    if (!valued.contains(flag)) throw UsageError(command + ": unknown option " + flag);
    std::string value;
    if (eq != std::string::npos) {
      value = arg.substr(eq + 1);
    } else if (i + 1 < args.size() && !args[i + 1].starts_with("--")) {
      value = args[++i];
    } else {
      throw UsageError(flag + ": missing value");
    }
    if (!parsed.values.emplace(flag, std::move(value)).second) throw UsageError(flag + ": given twice");
  }
  return parsed;
}

std::chrono::milliseconds parse_duration_flag(const std::string& flag, const std::string& text,
                                              std::string_view example, bool allow_zero) {
  auto duration = core::parse_duration(text);
  if (!duration) {
    throw UsageError(flag + ": expected a duration like " + std::string(example) + ", got " +
                     quoted_argument(text));
  }
  if (!allow_zero && duration->count() <= 0) {
    throw UsageError(flag + ": must be more than 0, got " + quoted_argument(text));
  }
  return *duration;
}

bool may_hold_key(std::string_view text) {
  constexpr std::size_t shown_at_most = 15;  // a key's secret part is 38 characters
  std::size_t run = 0;
  for (char c : text) {
    run = core::is_base62(c) ? run + 1 : 0;
    if (run > shown_at_most) return true;
  }
  return false;
}

std::string quoted_argument(std::string_view text) {
  if (may_hold_key(text)) return "something that may be an API key (not shown)";
  return "\"" + std::string(text) + "\"";
}

}  // namespace keygate::app
