#pragma once
// The YAML side of config.yaml: one option at a time (Entry), its text with ${VAR} expanded,
// mappings whose unknown options are refused with a "did you mean", and handlers that read
// one option into its field so that each section stays one line per option.
#include <yaml-cpp/yaml.h>

#include <functional>
#include <limits>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "app/config_values.hpp"

namespace keygate::app::configuration {

using Environment = std::map<std::string, std::string>;

// One option of the file: its dotted name, its value and the line to report.
struct Entry {
  std::string option;  // "cache.ttl", "routes[2].methods"; empty for the whole file
  YAML::Node value;    // a copy: references into yaml-cpp 0.7 iterators dangle
  int line = 1;        // of the value when it is a scalar, else of the key
};

using Handler = std::function<void(const Entry&)>;
using Handlers = std::vector<std::pair<std::string_view, Handler>>;

int line_of(const YAML::Node& node);  // 1-based
// "a list", "a mapping" or the quoted scalar.
std::string describe(const YAML::Node& node);
// The kind of a node that should have been a mapping, never its text: a DSN or URL written
// where a section belongs (postgres: postgresql://u:pw@db) must not be echoed.
std::string kind_of(const YAML::Node& node);

// ${NAME} and ${NAME:-default} (the default also replaces an empty value, as in the shell);
// $${ is a literal ${. The result is not expanded again.
std::string expand(std::string_view raw, const Environment& environment, const Origin& at);

class Reader {
 public:
  Reader(std::string source, const Environment& environment)
      : source_(std::move(source)), environment_(environment) {}

  Origin at(int line, const std::string& option) const;
  Origin at(const Entry& entry) const { return at(entry.line, entry.option); }

  // The value as text, ${VAR} expanded; nothing (null) is "".
  std::string text(const Entry& entry) const;
  // The elements of a list; nothing (null) is an empty list.
  std::vector<Entry> items(const Entry& entry) const;
  // Calls the handler of each option in document order; an option with no handler is an
  // error, with a suggestion when a known one is close. Nothing (null) is an empty mapping.
  void read_mapping(const Entry& section, const Handlers& handlers) const;

 private:
  std::string source_;
  const Environment& environment_;
};

// Handlers that read one option into its field.
Handler text_into(const Reader& r, std::string& target);
Handler required_into(const Reader& r, std::string& target);
Handler boolean_into(const Reader& r, bool& target);
// zero_allowed: 0s is meaningful for that option (it turns something off).
Handler duration_into(const Reader& r, Duration& target, bool zero_allowed = false);

template <typename Number>
Handler number_into(const Reader& r, Number& target, std::uint64_t min,
                    std::uint64_t max = std::numeric_limits<Number>::max()) {
  const bool open_ended = max == std::numeric_limits<Number>::max();
  return [&r, &target, min, max, open_ended](const Entry& e) {
    target = static_cast<Number>(whole_number(r.text(e), min, max, open_ended, r.at(e)));
  };
}

template <typename T>
Handler parsed_into(const Reader& r, T& target, T (*parse)(std::string_view, const Origin&)) {
  return [&r, &target, parse](const Entry& e) { target = parse(r.text(e), r.at(e)); };
}

template <typename T, std::size_t N>
Handler choice_into(const Reader& r, T& target, const Choice<T> (&choices)[N]) {
  return [&r, &target, &choices](const Entry& e) { target = choice(r.text(e), choices, r.at(e)); };
}

// Every element of a list, each parsed on its own (and named routes[1] etc. in messages).
template <typename T>
Handler list_into(const Reader& r, std::vector<T>& target,
                  T (*parse)(std::string_view, const Origin&)) {
  return [&r, &target, parse](const Entry& e) {
    target.clear();
    for (const Entry& item : r.items(e)) target.push_back(parse(r.text(item), r.at(item)));
  };
}

}  // namespace keygate::app::configuration
