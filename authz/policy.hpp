#pragma once
// The policy decision: a pure function of the key record, the matched route, the client's
// address and the time. No I/O, no clock of its own, so every branch is unit-testable.
#include <string_view>

#include "authz/decision.hpp"
#include "authz/routes.hpp"
#include "store/key_record.hpp"

namespace keygate::authz {

// Checks in this order, the first failure wins:
//   is_active false or revoked_at set  -> revoked_key
//   expires_at <= now                  -> expired_key
//   allowed_ips set, none holds client -> ip_not_allowed
//   route's scopes not all granted     -> insufficient_scope
// otherwise allow. A null route (no route matched) needs no scope. Whether a public route
// needs a key at all is the authorizer's concern, not this function's.
Decision decide(const store::KeyRecord& key, const Route* route, const core::IpAddress& client,
                store::TimePoint now);

// `held` grants `required` when equal, when held is "*", or when held is "<ns>:*" and
// required starts with "<ns>:" ("inventory:*" grants "inventory:read", not "inventory").
bool scope_grants(std::string_view held, std::string_view required);

}  // namespace keygate::authz
