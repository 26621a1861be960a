// store/key_record_codec: whatever Redis hands back (a value written by another version, or
// corrupted) decodes to a record or to nothing; a decoded record encodes to text that decodes
// to the same record.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "store/key_record_codec.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto record = keygate::store::decode_key_record(text);
  if (!record) return 0;
  const std::string encoded = keygate::store::encode_key_record(*record);
  const auto again = keygate::store::decode_key_record(encoded);
  FUZZ_CHECK(again.has_value());
  FUZZ_CHECK(keygate::store::encode_key_record(*again) == encoded);
  FUZZ_CHECK(again->id == record->id && again->key_hash == record->key_hash &&
             again->scopes == record->scopes && again->allowed_ips == record->allowed_ips &&
             again->expires_at == record->expires_at && again->revoked_at == record->revoked_at);
  return 0;
}
