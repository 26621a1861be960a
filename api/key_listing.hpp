#pragma once
// GET /v1/keys' query string decoded into the page to read (pure): owner, status, limit and an
// opaque cursor for keyset pagination on (created_at, id).
#include <optional>
#include <string>
#include <string_view>

#include "api/key_request.hpp"
#include "store/key_repository.hpp"

namespace keygate::api {

struct KeyListQuery {
  store::KeyPageRequest page;
  // An owner token asked for another owner's keys: the answer is an empty page (as for an
  // owner with no keys: nothing says whether that owner exists).
  bool nothing_visible = false;
};

// owner=TYPE:ID, status=active|inactive|expired|revoked, limit=1..500 (100), cursor=<from the
// page before>; any other parameter is a 400 naming it. An owner token always lists its own
// owner's keys.
Decoded<KeyListQuery> decode_list_query(std::string_view query, const Authority& who);

// The cursor after `last`: "<created_at in microseconds>.<id>". Clients treat it as opaque.
std::string encode_key_cursor(const store::KeyDetails& last);
std::optional<store::KeyCursor> decode_key_cursor(std::string_view text);

}  // namespace keygate::api
