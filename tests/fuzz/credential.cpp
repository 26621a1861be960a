// authz/credential: the key candidates a request presents, from a header value and a query
// string. What comes out is always a trimmed piece of what went in; two different candidates
// are a conflict, never one of them.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "authz/credential.hpp"
#include "fuzz_check.hpp"

namespace {

bool inside(std::string_view part, std::string_view whole) {
  return part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size();
}

bool is_blank(char c) { return c == ' ' || c == '\t'; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider input(data, size);
  const bool authorization = input.ConsumeBool();
  const std::string parameter = input.ConsumeRandomLengthString(16);
  const std::string value = input.ConsumeRandomLengthString(512);
  const std::string query = input.ConsumeRemainingBytesAsString();

  keygate::authz::PresentedKey presented;
  const auto from_header =
      keygate::authz::credential_from_header(authorization ? "authorization" : "x-api-key", value);
  if (from_header) {
    FUZZ_CHECK(!from_header->empty());
    FUZZ_CHECK(inside(*from_header, value));
    FUZZ_CHECK(!is_blank(from_header->front()) && !is_blank(from_header->back()));
    presented.add(*from_header);
  }
  const auto before = presented;
  keygate::authz::add_query_credentials(query, parameter, presented);

  using Kind = keygate::authz::PresentedKey::Kind;
  FUZZ_CHECK((presented.kind == Kind::one) == !presented.key.empty());
  if (presented.kind == Kind::one) {
    FUZZ_CHECK(inside(presented.key, value) || inside(presented.key, query));
    // The header's key survives only when the query presented nothing else.
    if (before.kind == Kind::one) FUZZ_CHECK(presented.key == before.key);
  }
  if (before.kind == Kind::conflicting) FUZZ_CHECK(presented.kind == Kind::conflicting);
  if (parameter.empty()) FUZZ_CHECK(presented.kind == before.kind);
  return 0;
}
