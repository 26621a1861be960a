// authz/key_format: any text is judged without reading outside it, and a valid key stays valid
// only as long as every character is the one that was checked.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "authz/key_format.hpp"
#include "fuzz_check.hpp"

using keygate::authz::KeyFormat;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view key(reinterpret_cast<const char*>(data), size);
  const KeyFormat format = keygate::authz::check_key_format(key);
  FUZZ_CHECK(format != KeyFormat::empty || key.empty());
  FUZZ_CHECK(keygate::authz::key_display_prefix(key).size() ==
             std::min(key.size(), keygate::authz::key_display_length));
  if (format != KeyFormat::valid) return 0;

  FUZZ_CHECK(key.size() <= keygate::authz::key_max_length);
  const std::size_t underscore = key.rfind('_');
  FUZZ_CHECK(underscore != std::string_view::npos);
  FUZZ_CHECK(keygate::authz::is_valid_key_prefix(key.substr(0, underscore)));
  // Any one character of the random part or checksum changed: never valid (a CRC32 catches
  // every single-character change).
  std::string changed(key);
  const std::size_t at = underscore + 1 + data[0] % (key.size() - underscore - 1);
  changed[at] = changed[at] == 'A' ? 'B' : 'A';
  FUZZ_CHECK(keygate::authz::check_key_format(changed) != KeyFormat::valid);
  return 0;
}
