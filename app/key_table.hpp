#pragma once
// store.schema: custom: the operator's table, checked against information_schema before keygate
// uses it. A mapping that does not fit the table is a ConfigError naming the column (exit 2);
// PostgreSQL that cannot be asked is a std::runtime_error naming it (exit 1).
#include <memory>

#include "app/config.hpp"
#include "store/custom_schema.hpp"

namespace keygate::app {

std::shared_ptr<const store::ResolvedSchema> resolve_key_table(const Config& config);

}  // namespace keygate::app
