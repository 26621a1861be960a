#pragma once
// The handlers of /v1/keys and /v1/keys/{id}/... (internal to api/): each decodes what it is
// given, checks what the caller may do, and works in the caller's owner-scoped transaction
// (api_call.hpp), writing an audit row with every change.
#include <boost/asio/awaitable.hpp>

#include <string>
#include <string_view>

#include "api/api_call.hpp"

namespace keygate::api {

using AnswerTask = boost::asio::awaitable<Answer>;

AnswerTask create_key(std::string_view body, const ApiServices& services, const Caller& caller);
AnswerTask list_keys(std::string_view query, const ApiServices& services, const Caller& caller);
AnswerTask show_key(const std::string& id, const ApiServices& services, const Caller& caller);
AnswerTask patch_key(std::string_view body, const std::string& id, const ApiServices& services, const Caller& caller);
AnswerTask delete_key(const std::string& id, const ApiServices& services, const Caller& caller);
AnswerTask revoke_key(const std::string& id, const ApiServices& services, const Caller& caller);
AnswerTask rotate_key(std::string_view body, const std::string& id, const ApiServices& services, const Caller& caller);
// ?since=24h (1m to 31d): requests by status and by UTC hour.
AnswerTask key_usage(std::string_view query, const std::string& id, const ApiServices& services, const Caller& caller);

}  // namespace keygate::api
