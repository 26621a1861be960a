#pragma once
// The API's query strings (pure). Its parameters need no %-decoding (owners, statuses, numbers,
// cursors and uuids are URL-safe), so a value is the raw bytes between '=' and '&'.
#include <cstddef>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

namespace keygate::api {

inline constexpr std::size_t max_page = 500;

std::string_view query_of(std::string_view target);  // after '?', or empty
// One query parameter's raw value, or nullopt. A parameter given twice is the first.
std::optional<std::string_view> parameter(std::string_view query, std::string_view name);
// False, with the first unknown name in `unknown` (empty when over 64 bytes), when the query
// has a parameter not in `known`.
bool only_parameters(std::string_view query, std::initializer_list<std::string_view> known, std::string& unknown);
// The `limit` parameter of a listing: 1 to max_page, 100 when absent; nullopt when invalid.
std::optional<std::size_t> page_limit(std::string_view query);

}  // namespace keygate::api
