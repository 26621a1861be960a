#pragma once
// UTF-8 as RFC 3629 defines it: no overlong forms, no surrogates, nothing above U+10FFFF.
#include <cstddef>
#include <string_view>

namespace keygate::core {

// Length of the well-formed UTF-8 sequence of two or more bytes that starts at text[i], or 0
// when there is none (an ASCII byte included).
std::size_t utf8_sequence_length(std::string_view text, std::size_t i);

// Where `text` stops being UTF-8 text (a malformed sequence, or a NUL byte), or npos.
std::size_t first_invalid_utf8(std::string_view text);

}  // namespace keygate::core
