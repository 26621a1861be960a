#include "proxy/exchange_log.hpp"

#include "core/json_line.hpp"
#include "proxy/access_log.hpp"
#include "proxy/worker.hpp"
#include "store/metrics.hpp"

namespace keygate::proxy {

namespace {

namespace json = core::json;

// One access-log line: what was asked, by which key, what was decided and answered. Never the
// key, the credential header or the query string (which may hold a key).
void format_access_line(std::string& out, const Exchange& x, const CompletedRequest& done) {
  out.clear();
  json::begin_line(out, "info", "request");
  json::add(out, "method", done.method.empty() ? std::string_view(x.parser.get().method_string())
                                               : done.method);
  if (!done.path.empty()) {
    json::add(out, "path", done.path);
  } else {
    json::add_null(out, "path");
  }
  json::add(out, "status", std::int64_t{done.status});
  const authz::AuthResult* auth = done.auth;
  if (auth != nullptr) {
    json::add(out, "decision", authz::decision_label(auth->decision));
  } else {
    json::add_null(out, "decision");
  }
  if (auth != nullptr && auth->key) {
    json::add(out, "key_id", auth->key->id);
    std::string owner = auth->key->owner_type;
    owner.append(":").append(auth->key->owner_id);
    json::add(out, "owner", owner);
  } else {
    json::add_null(out, "key_id");
    json::add_null(out, "owner");
  }
  json::add(out, "client_ip", done.client_ip.to_string());
  json::add(out, "duration_us", static_cast<std::int64_t>(done.duration.count()));
  if (x.upstream_status != 0) {
    json::add(out, "upstream_status", std::int64_t{x.upstream_status});
  } else {
    json::add_null(out, "upstream_status");
  }
  if (x.upstream_latency.count() >= 0) {
    json::add(out, "upstream_latency_us", static_cast<std::int64_t>(x.upstream_latency.count()));
  } else {
    json::add_null(out, "upstream_latency_us");
  }
  json::end_line(out);
}

void log_exchange(const Exchange& x, const RequestFacts* facts, const authz::AuthResult* auth) {
  const int status = x.status != 0 ? x.status : 499;  // 499: the client left first
  const auto status_class = static_cast<std::size_t>(status / 100);
  auto& classes = store::metrics().responses_by_status_class;
  if (status_class < classes.size()) {
    classes[status_class].fetch_add(1, std::memory_order_relaxed);
  }
  Worker& worker = x.conn.worker;
  const auto& on_completed = worker.services.on_completed;
  AccessLog* access_log = worker.shared.access_log;
  const bool wants_line = access_log != nullptr && access_log->wants(worker.index, status);
  if (!on_completed && !wants_line) return;
  const Request& request = x.parser.get();
  CompletedRequest done{};
  done.auth = auth;
  done.status = status;
  done.duration = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::steady_clock::now() - x.started);
  done.client_ip = x.conn.peer;
  if (facts != nullptr) {
    done.method = facts->method;
    if (facts->target) done.path = facts->target->path;
    done.client_ip = facts->client_ip;
    done.user_agent = request[http::field::user_agent];
  }
  if (on_completed) on_completed(done);
  if (wants_line) {
    format_access_line(worker.log_line, x, done);
    access_log->append(worker.index, worker.log_line);
  }
}

}  // namespace

ExchangeLog::~ExchangeLog() {
  if (dismissed_) return;
  try {
    log_exchange(x_, facts ? &*facts : nullptr, auth ? &*auth : nullptr);
  } catch (...) {
    // Out of memory formatting a line: the exchange itself is over either way.
  }
}

}  // namespace keygate::proxy
