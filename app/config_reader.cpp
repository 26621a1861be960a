// The YAML reader of config.yaml (see config_reader.hpp).
#include "app/config_reader.hpp"

#include <algorithm>

#include "core/text.hpp"

namespace keygate::app::configuration {
namespace {

constexpr auto npos = std::string_view::npos;

bool is_variable_name(std::string_view name) {
  return !name.empty() && !core::is_ascii_digit(name.front()) &&
         std::all_of(name.begin(), name.end(), [](char c) {
           return core::is_ascii_alpha(c) || core::is_ascii_digit(c) || c == '_';
         });
}

// Damerau-Levenshtein distance (optimal string alignment), for "did you mean" hints.
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
  for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

// " (did you mean cache.ttl?)" when a known option is a typo or two away, else "".
std::string suggestion(const std::string& section, const std::string& name,
                       const Handlers& handlers) {
  const std::size_t allowed = std::clamp<std::size_t>(name.size() / 4, 1, 2);
  const std::string lowered = core::to_lower_ascii(name);
  std::string_view best;
  std::size_t best_distance = std::numeric_limits<std::size_t>::max();
  for (const auto& [known, handler] : handlers) {
    // The length difference is a lower bound on the distance: names that far apart are no
    // typo, and skipping them keeps a long unknown key from costing length x length work.
    const std::size_t length_gap =
        lowered.size() > known.size() ? lowered.size() - known.size() : known.size() - lowered.size();
    if (length_gap > allowed) continue;
    const std::size_t distance = edit_distance(lowered, known);
    if (distance < best_distance) {
      best = known;
      best_distance = distance;
    }
  }
  if (best.empty() || best_distance > allowed) return {};
  return " (did you mean " + (section.empty() ? "" : section + ".") + std::string(best) + "?)";
}

}  // namespace

int line_of(const YAML::Node& node) { return node.Mark().line + 1; }  // Mark is 0-based

std::string describe(const YAML::Node& node) {
  if (node.IsSequence()) return "a list";
  if (node.IsMap()) return "a mapping";
  return quoted(node.IsScalar() ? node.Scalar() : std::string());
}

std::string kind_of(const YAML::Node& node) {
  return node.IsScalar() ? "a single value" : describe(node);
}

std::string expand(std::string_view raw, const Environment& environment, const Origin& at) {
  std::string out;
  std::size_t i = 0;
  while (i < raw.size()) {
    if (raw.substr(i).starts_with("$${")) {
      out += "${";
      i += 3;
      continue;
    }
    if (!raw.substr(i).starts_with("${")) {
      out += raw[i++];
      continue;
    }
    const std::size_t close = raw.find('}', i);
    if (close == npos) at.fail("unterminated ${ (expected ${NAME} or ${NAME:-default})");
    const std::string_view inside = raw.substr(i + 2, close - i - 2);
    const std::size_t dash = inside.find(":-");
    const std::string_view name = inside.substr(0, dash);
    if (!is_variable_name(name)) {
      at.fail("${" + std::string(inside) + "} is not a variable reference (expected ${NAME} or "
              "${NAME:-default})");
    }
    const auto found = environment.find(std::string(name));
    if (dash != npos && (found == environment.end() || found->second.empty())) {
      out += inside.substr(dash + 2);
    } else if (found != environment.end()) {
      out += found->second;
    } else {
      at.fail("environment variable " + std::string(name) + " is not set (write ${" +
              std::string(name) + ":-default} to give a default)");
    }
    i = close + 1;
  }
  return out;
}

Origin Reader::at(int line, const std::string& option) const {
  std::string prefix = source_ + ":" + std::to_string(line);
  if (!option.empty()) prefix += ": " + option;
  return Origin(std::move(prefix));
}

std::string Reader::text(const Entry& entry) const {
  if (entry.value.IsNull()) return {};
  if (!entry.value.IsScalar()) {
    at(entry).fail("expected a single value, got " + describe(entry.value));
  }
  return expand(entry.value.Scalar(), environment_, at(entry));
}

std::vector<Entry> Reader::items(const Entry& entry) const {
  std::vector<Entry> out;
  if (entry.value.IsNull()) return out;
  if (!entry.value.IsSequence()) {
    at(entry).fail("expected a list like [a, b], got " + describe(entry.value));
  }
  for (std::size_t i = 0; i < entry.value.size(); ++i) {
    YAML::Node item = entry.value[i];
    out.push_back({entry.option + "[" + std::to_string(i) + "]", item, line_of(item)});
  }
  return out;
}

void Reader::read_mapping(const Entry& section, const Handlers& handlers) const {
  if (section.value.IsNull()) return;
  if (!section.value.IsMap()) {
    at(section).fail("expected a mapping of options, got " + kind_of(section.value));
  }
  std::map<std::string, int> seen;  // option -> line, to reject duplicates
  for (auto it = section.value.begin(); it != section.value.end(); ++it) {
    YAML::Node key = it->first;
    YAML::Node value = it->second;
    const int key_line = line_of(key);
    if (!key.IsScalar()) at(key_line, section.option).fail("option names must be plain words");
    const std::string name = key.Scalar();
    const std::string option = section.option.empty() ? name : section.option + "." + name;
    const auto handler = std::find_if(handlers.begin(), handlers.end(),
                                      [&](const auto& h) { return h.first == name; });
    if (handler == handlers.end()) {
      at(key_line, option).fail("unknown option" + suggestion(section.option, name, handlers));
    }
    if (const auto [first, inserted] = seen.emplace(name, key_line); !inserted) {
      at(key_line, option).fail("given twice (first on line " + std::to_string(first->second) + ")");
    }
    handler->second({option, value, value.IsScalar() ? line_of(value) : key_line});
  }
}

Handler text_into(const Reader& r, std::string& target) {
  return [&r, &target](const Entry& e) { target = r.text(e); };
}

Handler required_into(const Reader& r, std::string& target) {
  return [&r, &target](const Entry& e) { target = required(r.text(e), r.at(e)); };
}

Handler boolean_into(const Reader& r, bool& target) {
  return [&r, &target](const Entry& e) { target = boolean(r.text(e), r.at(e)); };
}

Handler duration_into(const Reader& r, Duration& target, bool zero_allowed) {
  return [&r, &target, zero_allowed](const Entry& e) {
    target = duration(r.text(e), zero_allowed, r.at(e));
  };
}

}  // namespace keygate::app::configuration
