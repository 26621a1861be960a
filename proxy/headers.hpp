#pragma once
// Internal to proxy/ (Beast fields in the interface): the header edits of the request path.
// Pure functions on a field set; no I/O.
#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/message.hpp>

#include <memory_resource>
#include <string>
#include <string_view>

#include "authz/authorizer.hpp"
#include "store/key_record.hpp"

namespace keygate::proxy {

// Field sets allocate from the exchange's arena (see HeaderArena in exchange.hpp).
using FieldAllocator = std::pmr::polymorphic_allocator<char>;
using Fields = boost::beast::http::basic_fields<FieldAllocator>;

// RFC 9110 7.6.1: Connection and every field it names, Keep-Alive, Proxy-Connection, TE,
// Trailer, Transfer-Encoding and Upgrade. The serializer re-frames the body.
void remove_hop_by_hop(Fields& fields);

// The X-Api-Key-* identity headers: removed from every client request (an upstream may trust
// them), then set from the identified key.
void remove_identity(Fields& fields);
void set_identity(Fields& fields, const store::KeyRecord& key,
                  std::string& scratch);
// Appends the same headers as raw "Name: value\r\n" lines (authz mode answers).
void append_identity(std::string& out, const store::KeyRecord& key);

// RateLimit-Limit/-Remaining/-Reset (IETF httpapi draft names), when rate.applies.
void set_rate_limit(Fields& fields, const authz::RateLimitStatus& rate);
void append_rate_limit(std::string& out, const authz::RateLimitStatus& rate);

// X-Forwarded-For: the peer appended to the client's list when the peer is a trusted proxy,
// else the peer alone; X-Forwarded-Proto: `proto` (http, or https behind a TLS listener).
void set_forwarded(Fields& fields, std::string_view peer, bool peer_trusted,
                   std::string_view proto, std::string& scratch);

// The request line or status line, the fields and the empty line, as they go on the wire
// (the bytes Beast's serializer would write), appended to `out`.
void format_header(std::string& out, const boost::beast::http::request_header<Fields>& request);
void format_header(std::string& out, const boost::beast::http::response_header<Fields>& response);

// The query string without `parameter` (name=value pairs split on '&').
std::string remove_query_parameter(std::string_view query, std::string_view parameter);

}  // namespace keygate::proxy
