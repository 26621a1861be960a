#include "api/api_answer.hpp"

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include "core/log.hpp"

namespace keygate::api {

namespace json = boost::json;

Answer json_answer(Status status, const json::value& body) {
  Answer a;
  a.status = status;
  a.body = json::serialize(body);
  return a;
}

Answer error_answer(Status status, std::string_view code, std::string_view message, std::string_view field) {
  json::object o;
  o["error"] = code;
  o["message"] = message;
  if (!field.empty()) o["field"] = field;
  return json_answer(status, o);
}

Answer invalid(const FieldError& e) { return error_answer(Status::bad_request, "invalid_request", e.message, e.field); }

Answer not_found() { return error_answer(Status::not_found, "not_found", "no such key"); }

Answer store_failure(const std::string& why) {
  core::log_warn("api: store error", {{"error", why}});
  return error_answer(Status::service_unavailable, "store_unavailable", "PostgreSQL did not answer; try again");
}

Answer repository_failure(store::RepoStatus status, const std::string& why) {
  if (status == store::RepoStatus::not_found) return not_found();
  if (status == store::RepoStatus::rejected) {
    return error_answer(Status::conflict, "conflict", why.empty() ? "the change breaks a rule of the key" : why);
  }
  return store_failure(why);
}

Answer unknown_parameter(const std::string& name) {
  return error_answer(Status::bad_request, "invalid_request", "unknown query parameter", name);
}

}  // namespace keygate::api
