#pragma once
// What a Redis command gave back, as a value. Transport failures (no connection, no answer in
// time) are not replies: they are the RedisErrc of a RedisResult. A server error reply
// ("-ERR ...", "-NOSCRIPT ...") is a reply of kind `error`, delivered with errc `ok`.
#include <string>
#include <string_view>
#include <vector>

struct redisReply;   // hiredis' own reply (hiredis/hiredis.h)
struct redisReader;  // hiredis' RESP parser (hiredis/read.h)

namespace keygate::store {

// An owned copy of a hiredis reply (hiredis frees its own reply when the callback returns).
struct RedisReply {
  enum class Kind { nil, string, integer, status, array, error };
  Kind kind = Kind::nil;
  std::string str;  // string, status and error replies (binary-safe)
  long long integer = 0;
  std::vector<RedisReply> elements;  // array replies

  bool is_nil() const { return kind == Kind::nil; }
  bool is_error() const { return kind == Kind::error; }
  // True for a server error reply whose code (first word) is `code`, e.g. "NOSCRIPT".
  bool is_error_code(std::string_view code) const {
    return kind == Kind::error && std::string_view(str).substr(0, code.size()) == code &&
           (str.size() == code.size() || str[code.size()] == ' ');
  }
};

// An owned copy of a hiredis reply tree: hiredis frees its own when the callback returns.
RedisReply copy_reply(const redisReply& reply);

// keygate's own commands never get an array longer than this back.
inline constexpr int max_reply_elements = 64 * 1024;
// Makes `reader` refuse (as a protocol error: the connection is dropped) an array reply longer
// than max_reply_elements: hiredis 0.14 allocates the element table of any length a server
// announces ("*2147483647" is a 16 GB calloc) before a single element has arrived.
void bound_reply_reader(redisReader& reader);
// A reader as keygate's connections use (tests/fuzz); free with redisReaderFree.
redisReader* create_reply_reader();
// The bytes of a string, status or error reply; empty for other kinds and for null.
std::string_view reply_text(const redisReply* reply);

enum class RedisErrc {
  ok,            // a reply arrived (it may still be a server error reply)
  disconnected,  // no usable connection, or it dropped before the reply
  timeout,       // no reply within command_timeout
  protocol,      // the connection was dropped because the server's bytes were not RESP
};

constexpr std::string_view describe(RedisErrc errc) {
  switch (errc) {
    case RedisErrc::ok: return "ok";
    case RedisErrc::disconnected: return "disconnected";
    case RedisErrc::timeout: return "timeout";
    case RedisErrc::protocol: return "protocol error";
  }
  return "unknown";
}

struct RedisResult {
  RedisErrc errc = RedisErrc::disconnected;
  RedisReply reply;

  bool ok() const { return errc == RedisErrc::ok; }
};

}  // namespace keygate::store
