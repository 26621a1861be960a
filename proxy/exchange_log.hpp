#pragma once
// Internal to proxy/: the logging phase of an exchange — the response-class metric, the usage
// event (WorkerServices::on_completed) and the access-log line — run from one place, a scope
// guard, so that no way an exchange can end (an answer, a client that left, an exception, a
// coroutine destroyed at shutdown) skips it.
#include <optional>

#include "authz/authorizer.hpp"
#include "proxy/exchange.hpp"
#include "proxy/request_facts.hpp"

namespace keygate::proxy {

class ExchangeLog {
 public:
  explicit ExchangeLog(const Exchange& x) : x_(x) {}
  ~ExchangeLog();
  ExchangeLog(const ExchangeLog&) = delete;
  ExchangeLog& operator=(const ExchangeLog&) = delete;

  // The one exchange that is not logged: the client left before its header was complete,
  // and was answered nothing (no request was made).
  void dismiss() { dismissed_ = true; }

  // Filled in as the phases learn them; what is still empty is logged as unknown.
  std::optional<RequestFacts> facts;
  std::optional<authz::AuthResult> auth;

 private:
  const Exchange& x_;
  bool dismissed_ = false;
};

}  // namespace keygate::proxy
