#pragma once
// PostgreSQL's text, pure (no I/O): the text forms of arrays and bytea values, and libpq's
// messages turned into keygate's one-line reasons.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace keygate::store {

// PostgreSQL's text form of one-dimensional arrays ("{a,\"b c\",NULL}", "{}"): nullopt when
// malformed or multi-dimensional.
std::optional<std::vector<std::optional<std::string>>> parse_pg_array(std::string_view text);
// An array literal whose elements are all quoted, for use as a text parameter.
std::string format_pg_array(const std::vector<std::string>& elements);
// bytea in hex output form ("\\x0a1b").
std::optional<std::vector<std::uint8_t>> parse_pg_bytea(std::string_view text);
std::string format_pg_bytea(const std::uint8_t* data, std::size_t size);

// libpq's messages are multi-line, capitalized and prefixed ("FATAL:  ", "connection to
// server at ... failed: "); a reason after a colon is one lower-case line: "connection refused".
std::string one_line_reason(std::string_view libpq_message);
// `message` with every occurrence of `secret` (when not empty) replaced by "***".
std::string hide_secret(std::string message, std::string_view secret);
// libpq's reason for a connection string it cannot parse quotes pieces of that string, which
// may be the password ('invalid percent-encoded token: "pa%zz"', 'missing "=" after "word"',
// the whole URI): each quoted piece becomes "***", except the format's own one-character ones
// ("=", "]", ":", "/"). When `dsn` itself holds a '"', the quotes cannot be paired: everything
// from the first to the last quote goes.
std::string hide_quoted_parts(std::string_view message, std::string_view dsn);

}  // namespace keygate::store
