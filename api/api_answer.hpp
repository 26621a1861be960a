#pragma once
// The API's answers and query strings (internal to api/): every answer is JSON, every error
// {"error","message"[,"field"]}, and a store failure is a 503 that names no internals.
#include <boost/beast/http/status.hpp>
#include <boost/json/value.hpp>

#include <string>
#include <string_view>

#include "api/key_request.hpp"
#include "store/key_repository.hpp"

namespace keygate::api {

using Status = boost::beast::http::status;

struct Answer {
  Status status = Status::ok;
  std::string body;
  std::string_view allow;  // 405
  bool challenge = false;  // 401: WWW-Authenticate: Bearer
  std::string request_id;  // X-Request-Id (the audit rows of the call carry it)
};

Answer json_answer(Status status, const boost::json::value& body);
Answer error_answer(Status status, std::string_view code, std::string_view message, std::string_view field = {});
Answer invalid(const FieldError& e);  // 400 naming e.field
Answer not_found();                   // 404 "no such key" (also for another owner's key)
Answer store_failure(const std::string& why);  // 503; `why` goes to the log only
// A repository failure: not_found -> 404, rejected -> 409, anything else -> 503.
Answer repository_failure(store::RepoStatus status, const std::string& why);

// The 400 for only_parameters' refusal.
Answer unknown_parameter(const std::string& name);

}  // namespace keygate::api
