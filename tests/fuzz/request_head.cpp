// A whole request head through keygate's session handling, in process: the bytes arrive in
// pieces of any size and go through the same steps as proxy/session.cpp (parse_header_bytes,
// check_unparsed_head, check_request_head, describe_request), then, as if the key were allowed,
// through prepare_upstream_request; and as if it were denied, through format_rejection.
// Properties: what keygate would send the upstream parses back as a head keygate itself accepts,
// with a target already normal, exactly one Host, the identity headers keygate set and no
// others, and no credential left; every rejection is one well-formed response.
#include <fuzzer/FuzzedDataProvider.h>

#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "authz/decision.hpp"
#include "fuzz_check.hpp"
#include "proxy/answers.hpp"
#include "proxy/exchange.hpp"
#include "proxy/forward.hpp"
#include "proxy/request_checks.hpp"
#include "proxy/request_facts.hpp"
#include "proxy/worker.hpp"

namespace {

using namespace keygate;
using namespace keygate::proxy;

struct Fixture {
  static ProxyOptions configured() {
    ProxyOptions options;
    options.credential_headers = {"authorization", "x-api-key"};
    options.credential_query_parameter = "api_key";
    options.hide_credentials = true;
    options.max_header_bytes = 16 * 1024;
    options.trusted_proxies = {*core::IpNetwork::parse("127.0.0.0/8")};
    return options;
  }
  ServerShared shared{configured()};
  Worker worker{shared, 0, {}};
  store::KeyRecordPtr key = [] {
    auto record = std::make_shared<store::KeyRecord>();
    record->id = "0b6f3a52-8d1e-4c1b-9a57-3f0d2b7c9e11";
    record->owner_type = "user";
    record->owner_id = "42";
    record->scopes = {"read", "write"};
    return record;
  }();
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

std::size_t count_fields(const RequestHeader& request, std::string_view name) {
  std::size_t n = 0;
  for (const auto& field : request) n += beast::iequals(field.name_string(), name) ? 1 : 0;
  return n;
}

// `text` is one complete response head (and body, by its Content-Length).
void check_answer(const std::string& text) {
  http::response_parser<http::string_body> parser;
  parser.eager(true);
  error_code ec;
  const std::size_t used = parser.put(asio::buffer(text), ec);
  FUZZ_CHECK(!ec && parser.is_done() && used == text.size());
}

void check_rejections(FuzzedDataProvider& input, bool http10) {
  authz::AuthResult denied;
  denied.decision = authz::Decision::deny(static_cast<authz::DenyReason>(
      input.ConsumeIntegralInRange<int>(1, static_cast<int>(authz::last_deny_reason))));
  if (input.ConsumeBool()) denied.key = fixture().key;
  denied.allow = "GET, POST";
  std::string out;
  format_rejection(out, denied, AnswerFraming{.keep_alive = true, .http10 = http10});
  check_answer(out);
  out.clear();
  format_rejection(out, authz::AuthResult{}, AnswerFraming{.keep_alive = false, .http10 = http10});
  check_answer(out);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider input(data, size);
  const std::size_t piece = input.ConsumeIntegralInRange<std::size_t>(1, 4096);
  const bool peer_trusted = input.ConsumeBool();
  const bool authz_mode = input.ConsumeBool();
  const std::string bytes = input.ConsumeRandomLengthString(32 * 1024);

  Fixture& f = fixture();
  ProxyOptions& options = const_cast<ProxyOptions&>(f.shared.options);  // one thread: safe
  options.mode = authz_mode ? ProxyOptions::Mode::authz : ProxyOptions::Mode::proxy;

  HeaderArena arena(f.worker);
  RequestParser parser = make_parser<RequestParser>(arena);
  parser.header_limit(static_cast<std::uint32_t>(options.max_header_bytes));
  parser.body_limit(options.max_body_bytes);
  beast::flat_buffer buffer;
  error_code ec = http::error::need_more;
  for (std::size_t at = 0; at < bytes.size() && ec == http::error::need_more;) {
    const std::size_t n = std::min(piece, bytes.size() - at);
    auto space = buffer.prepare(n);
    std::memcpy(space.data(), bytes.data() + at, n);
    buffer.commit(n);
    at += n;
    ec = parse_header_bytes(buffer, parser);
  }
  if (ec == http::error::need_more) return 0;  // the client would still be sending
  if (ec) {
    (void)check_unparsed_head(ec, parser.get(), buffered(buffer));
    return 0;
  }

  Request& request = parser.get();
  if (const auto rejection = check_request_head(request)) {
    std::string out;
    format_proxy_error(out, rejection->error, AnswerFraming{.keep_alive = !rejection->close});
    check_answer(out);
    return 0;
  }
  const Peer peer{*core::IpAddress::parse("127.0.0.1"), peer_trusted};
  const RequestFacts facts = describe_request(request, options, peer);
  if (!facts.target) return 0;
  check_rejections(input, request.version() < 11);
  if (authz_mode) return 0;

  // Allowed: the head the upstream would get.
  authz::AuthResult allowed;
  allowed.decision = authz::Decision::allow();
  allowed.key = f.key;
  const authz::NormalizedTarget target = *facts.target;
  UpstreamRequestContext context{"127.0.0.1", peer_trusted, false, parser.chunked(), std::nullopt};
  if (const auto length = parser.content_length()) context.content_length = *length;
  std::string scratch;
  prepare_upstream_request(request, ForwardPlan{allowed, target}, context, options, scratch);
  std::string head;
  format_header(head, request);

  HeaderArena arena2(f.worker);
  RequestParser upstream = make_parser<RequestParser>(arena2);
  upstream.header_limit(1024 * 1024);
  upstream.body_limit(options.max_body_bytes);
  const std::size_t used = upstream.put(asio::buffer(head), ec);
  FUZZ_CHECK(!ec || ec == http::error::need_buffer);  // need_buffer: a body follows
  FUZZ_CHECK(upstream.is_header_done() && used == head.size());
  const auto& sent = upstream.get();
  FUZZ_CHECK(!check_request_head(sent));
  FUZZ_CHECK(count_fields(sent, "host") == 1);
  FUZZ_CHECK(count_fields(sent, "x-api-key-id") == 1 && sent["x-api-key-id"] == f.key->id);
  FUZZ_CHECK(count_fields(sent, "x-api-key-owner") == 1 && count_fields(sent, "x-api-key-scopes") == 1);
  FUZZ_CHECK(count_fields(sent, "authorization") == 0 && count_fields(sent, "x-api-key") == 0);
  FUZZ_CHECK(upstream.chunked() == context.chunked);
  if (!context.chunked) FUZZ_CHECK(upstream.content_length() == parser.content_length());
  const auto again = authz::normalize_target(sent.target());
  FUZZ_CHECK(again && again->path == target.path);
  authz::PresentedKey left;
  authz::add_query_credentials(again->query, options.credential_query_parameter, left);
  FUZZ_CHECK(left.kind == authz::PresentedKey::Kind::none);
  return 0;
}
