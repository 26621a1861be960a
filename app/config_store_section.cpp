// The store: section of config.yaml (see config_sections.hpp): keygate's own table, or a
// custom table described by a preset and per-column options, checked as a whole at the end.
#include "app/config_sections.hpp"

#include <functional>
#include <optional>

namespace keygate::app::configuration {
namespace {

// store.*: what each option wrote, applied over the preset once the section is read (so the
// preset may come after the options it fills in).
struct StoreOptions {
  std::optional<store::CustomSchema> preset;
  std::vector<std::function<void(store::CustomSchema&)>> overrides;
  int line = 1;
};

// A column name, or none (the table has no such column).
std::string column_name(std::string_view text, const Origin& at) {
  if (text == "none") return {};
  if (!store::is_plain_identifier(text)) {
    at.fail("expected a column name ([a-z_][a-z0-9_]*, at most 63 characters) or none, got " + quoted(text));
  }
  return std::string(text);
}

Handler column_into(const Reader& r, StoreOptions& options, std::string store::CustomSchema::*field) {
  return [&r, &options, field](const Entry& e) {
    const std::string name = column_name(r.text(e), r.at(e));
    options.overrides.push_back([field, name](store::CustomSchema& s) { s.*field = name; });
  };
}

template <typename Apply>
Handler store_option(const Reader& r, StoreOptions& options, Apply apply) {
  return [&r, &options, apply](const Entry& e) {
    auto change = apply(r.text(e), r.at(e));
    options.overrides.push_back(std::move(change));
  };
}

}  // namespace

void read_store(const Reader& r, const Entry& section, Config::Store& target) {
  StoreOptions options;
  options.line = section.line;
  int revocation_line = section.line;
  int poll_interval_line = 0;  // 0: not written
  using Schema = store::CustomSchema;
  auto text_field = [](std::string Schema::*field, std::string (*parse)(std::string_view, const Origin&)) {
    return [field, parse](std::string_view text, const Origin& at) {
      return std::function<void(Schema&)>([field, value = parse(text, at)](Schema& s) { s.*field = value; });
    };
  };
  auto length_field = [](std::size_t store::KeyTextRule::*field) {
    return [field](std::string_view text, const Origin& at) {
      const auto value = static_cast<std::size_t>(whole_number(text, 1, 512, false, at));
      return std::function<void(Schema&)>([field, value](Schema& s) { s.key_text.*field = value; });
    };
  };
  r.read_mapping(section, {
      {"schema", [&](const Entry& e) {
         const std::string text = r.text(e);
         if (text == "native") target.schema = Config::Store::Schema::native;
         else if (text == "custom") target.schema = Config::Store::Schema::custom;
         else r.at(e).fail("expected native or custom, got " + quoted(text));
       }},
      {"revocation", [&](const Entry& e) {
         const std::string text = r.text(e);
         if (text == "notify") target.revocation = Config::Store::Revocation::notify;
         else if (text == "poll") target.revocation = Config::Store::Revocation::poll;
         else r.at(e).fail("expected notify or poll, got " + quoted(text));
         revocation_line = e.line;
       }},
      {"poll_interval", [&](const Entry& e) {
         const Duration interval = duration(r.text(e), false, r.at(e));
         if (interval < std::chrono::milliseconds(100) || interval > std::chrono::minutes(1)) {
           r.at(e).fail("expected 100ms to 1m, got " + quoted(r.text(e)));
         }
         target.poll_interval = interval;
         poll_interval_line = e.line;
       }},
      {"preset", [&](const Entry& e) {
         const std::string text = r.text(e);
         const store::CustomSchema* preset = store::find_preset(text);
         if (preset == nullptr) {
           std::string names;
           for (std::string_view name : store::preset_names()) names += (names.empty() ? "" : ", ") + std::string(name);
           r.at(e).fail("expected one of " + names + ", got " + quoted(text));
         }
         target.preset = text;
         options.preset = *preset;
       }},
      {"table", store_option(r, options, [](std::string_view text, const Origin& at) {
         if (!store::is_table_name(text)) {
           at.fail("expected a table name like api_keys or auth.api_key (lower case), got " + quoted(text));
         }
         return std::function<void(Schema&)>([value = std::string(text)](Schema& s) { s.table = value; });
       })},
      {"credential", [&](const Entry& e) {
         r.read_mapping(e, {
             {"column", column_into(r, options, &Schema::credential_column)},
             {"encoding", store_option(r, options, [](std::string_view text, const Origin& at) {
                const auto encoding = store::credential_encoding_named(text);
                if (!encoding) at.fail("expected sha256-hex, sha256-bytea, hmac-sha256, bcrypt or plain, got " + quoted(text));
                return std::function<void(Schema&)>([value = *encoding](Schema& s) { s.encoding = value; });
              })},
             {"prefix_column", column_into(r, options, &Schema::prefix_column)},
             {"prefix_length", store_option(r, options, [](std::string_view text, const Origin& at) {
                const auto value = static_cast<std::size_t>(whole_number(text, 1, 64, false, at));
                return std::function<void(Schema&)>([value](Schema& s) { s.prefix_length = value; });
              })},
         });
       }},
      {"columns", [&](const Entry& e) {
         r.read_mapping(e, {
             {"id", column_into(r, options, &Schema::id_column)},
             {"owner_type", column_into(r, options, &Schema::owner_type_column)},
             {"owner_id", column_into(r, options, &Schema::owner_id_column)},
             {"name", column_into(r, options, &Schema::name_column)},
             {"scopes", column_into(r, options, &Schema::scopes_column)},
             {"expires_at", column_into(r, options, &Schema::expires_at_column)},
             {"revoked_at", column_into(r, options, &Schema::revoked_at_column)},
             {"is_active", column_into(r, options, &Schema::is_active_column)},
             {"allowed_ips", column_into(r, options, &Schema::allowed_ips_column)},
             {"rate_limit", column_into(r, options, &Schema::rate_limit_column)},
             {"window_seconds", column_into(r, options, &Schema::window_column)},
             {"last_used_at", column_into(r, options, &Schema::last_used_column)},
         });
       }},
      {"owner_type", store_option(r, options, text_field(&Schema::owner_type, required))},
      {"window", store_option(r, options, [](std::string_view text, const Origin& at) {
         const Duration window = duration(text, false, at);
         if (window.count() % 1000 != 0 || window > std::chrono::hours(24)) {
           at.fail("expected whole seconds from 1s to 24h, got " + quoted(text));
         }
         return std::function<void(Schema&)>([seconds = static_cast<int>(window.count() / 1000)](Schema& s) {
           s.window_seconds = seconds;
         });
       })},
      {"usage_table", store_option(r, options, [](std::string_view text, const Origin& at) {
         if (text != "none" && !store::is_table_name(text)) {
           at.fail("expected a table name like api_key_usage, or none, got " + quoted(text));
         }
         return std::function<void(Schema&)>([value = text == "none" ? std::string() : std::string(text)](Schema& s) {
           s.usage_table = value;
         });
       })},
      {"key_format", [&](const Entry& e) {
         r.read_mapping(e, {
             {"min_length", store_option(r, options, length_field(&store::KeyTextRule::min_length))},
             {"max_length", store_option(r, options, length_field(&store::KeyTextRule::max_length))},
             {"alphabet", store_option(r, options, [](std::string_view text, const Origin& at) {
                const auto alphabet = store::key_alphabet_named(text);
                if (!alphabet) at.fail("expected base62, base64url, base64, hex or printable, got " + quoted(text));
                return std::function<void(Schema&)>([value = *alphabet](Schema& s) { s.key_text.alphabet = value; });
              })},
         });
       }},
  });
  const bool custom = target.schema == Config::Store::Schema::custom;
  if (!custom && target.revocation == Config::Store::Revocation::poll) {
    r.at(revocation_line, "store.revocation")
        .fail("poll is for schema: custom (keygate's own api_keys always has its NOTIFY trigger)");
  }
  if (poll_interval_line != 0 && target.revocation != Config::Store::Revocation::poll) {
    r.at(poll_interval_line, "store.poll_interval").fail("needs revocation: poll");
  }
  if (!custom) {
    if (options.preset || !options.overrides.empty()) {
      r.at(section.line, "store.schema")
          .fail("the table options need schema: custom (native is keygate's own api_keys)");
    }
    return;
  }
  store::CustomSchema schema = options.preset.value_or(store::CustomSchema{});
  for (const auto& change : options.overrides) change(schema);
  if (const std::string problem = store::check_schema(schema); !problem.empty()) {
    // check_schema's lines start with the option they are about ("store.table: ...").
    const std::size_t colon = problem.find(": ");
    r.at(section.line, problem.substr(0, colon)).fail(problem.substr(colon + 2));
  }
  target.custom = std::move(schema);
}

}  // namespace keygate::app::configuration
