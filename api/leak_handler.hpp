#pragma once
// POST /v1/leaks: the receiving side of a secret-scanning partner program (GitHub's format,
// authz/leak_report.hpp). Internal to api/.
#include <boost/asio/awaitable.hpp>

#include <string>
#include <string_view>

#include "api/api_answer.hpp"
#include "api/api_server.hpp"

namespace keygate::api {

struct LeakReportRequest {
  std::string_view key_identifier;  // Github-Public-Key-Identifier
  std::string_view signature;       // Github-Public-Key-Signature (base64 DER ECDSA)
  std::string_view body;            // the raw bytes that were signed
  std::string request_id;
};

// No leak keys configured: 404. A bad signature: 401 and nothing read or changed. A malformed
// report: 400 naming the entry. Otherwise each keygate key in the report is looked up by its
// hash; one that is still active is revoked (or flagged, api.leaks.action) with an audit row
// recording where it was found, all in one transaction; the answer labels every token
// true_positive (a key of this deployment, whatever its status) or false_positive.
boost::asio::awaitable<Answer> report_leaks(const LeakReportRequest& request, const ApiServices& services);

}  // namespace keygate::api
