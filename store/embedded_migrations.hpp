#pragma once
// The SQL files of store/migrations/, compiled into the binary (see cmake/embed_migrations.cmake).
#include <string_view>
#include <vector>

namespace keygate::store {

struct EmbeddedSqlFile {
  std::string_view file_name;  // e.g. "0001_api_keys.up.sql"
  std::string_view sql;
};

// Sorted by file name.
const std::vector<EmbeddedSqlFile>& embedded_migration_files();

}  // namespace keygate::store
