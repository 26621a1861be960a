#pragma once
// keygate keys on a custom key table (store.schema: custom): create, list, revoke.
#include <string>
#include <vector>

#include "app/cli_args.hpp"
#include "app/config.hpp"
#include "store/key_repository.hpp"

namespace keygate::app {

// `keys` after the subcommand `verb`, for a custom table.
int run_custom_keys(const Config& config, const std::string& verb, Args rest);

// Shared with keygate's own `keys` (app/cli_keys.cpp): one line naming the flag on a bad value.
store::KeyOwner parse_owner(const std::string& text);  // TYPE:ID
std::vector<std::string> parse_scopes(const std::string& text);  // a,b,c

}  // namespace keygate::app
