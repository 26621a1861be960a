#include "core/duration.hpp"

#include <array>
#include <cstdint>
#include <limits>

namespace keygate::core {
namespace {

struct Unit {
  std::string_view suffix;
  std::int64_t milliseconds;
};

// Largest first, as format_duration wants them.
constexpr std::array<Unit, 5> units{{
    {"d", 86'400'000},
    {"h", 3'600'000},
    {"m", 60'000},
    {"s", 1'000},
    {"ms", 1},
}};

// Non-empty run of ASCII digits that fits an int64.
std::optional<std::int64_t> parse_digits(std::string_view digits) {
  if (digits.empty()) return std::nullopt;
  std::int64_t value = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    const int digit = c - '0';
    if (value > (std::numeric_limits<std::int64_t>::max() - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  return value;
}

}  // namespace

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) {
  std::size_t digits_end = 0;
  while (digits_end < text.size() && text[digits_end] >= '0' && text[digits_end] <= '9') {
    ++digits_end;
  }
  const auto value = parse_digits(text.substr(0, digits_end));
  if (!value) return std::nullopt;
  const std::string_view suffix = text.substr(digits_end);
  for (const Unit& unit : units) {
    if (suffix != unit.suffix) continue;
    if (*value > std::numeric_limits<std::int64_t>::max() / unit.milliseconds) return std::nullopt;
    return std::chrono::milliseconds(*value * unit.milliseconds);
  }
  return std::nullopt;
}

std::optional<RateLimitSpec> parse_rate_limit(std::string_view text) {
  const std::size_t slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  const auto limit = parse_digits(text.substr(0, slash));
  const auto window = parse_duration(text.substr(slash + 1));
  constexpr std::int64_t int_max = std::numeric_limits<int>::max();
  if (!limit || *limit <= 0 || *limit > int_max) return std::nullopt;
  if (!window || window->count() <= 0 || window->count() % 1000 != 0) return std::nullopt;
  const std::int64_t window_seconds = window->count() / 1000;
  if (window_seconds > int_max) return std::nullopt;
  return RateLimitSpec{static_cast<int>(*limit), static_cast<int>(window_seconds)};
}

std::string format_duration(std::chrono::milliseconds d) {
  const std::int64_t ms = d.count();
  if (ms == 0) return "0s";
  for (const Unit& unit : units) {
    if (ms % unit.milliseconds == 0) {
      return std::to_string(ms / unit.milliseconds) + std::string(unit.suffix);
    }
  }
  return std::to_string(ms) + "ms";  // unreachable: every count is a whole number of ms
}

}  // namespace keygate::core
