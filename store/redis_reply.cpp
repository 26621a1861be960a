#include "store/redis_reply.hpp"

#include <hiredis/hiredis.h>

namespace keygate::store {

RedisReply copy_reply(const redisReply& reply) {
  RedisReply out;
  switch (reply.type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
      out.kind = reply.type == REDIS_REPLY_STRING   ? RedisReply::Kind::string
                 : reply.type == REDIS_REPLY_STATUS ? RedisReply::Kind::status
                                                    : RedisReply::Kind::error;
      out.str.assign(reply.str, reply.len);
      break;
    case REDIS_REPLY_INTEGER:
      out.kind = RedisReply::Kind::integer;
      out.integer = reply.integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.kind = RedisReply::Kind::array;
      out.elements.reserve(reply.elements);
      for (std::size_t i = 0; i < reply.elements; ++i) {
        out.elements.push_back(copy_reply(*reply.element[i]));
      }
      break;
    default:  // REDIS_REPLY_NIL
      out.kind = RedisReply::Kind::nil;
      break;
  }
  return out;
}

std::string_view reply_text(const redisReply* reply) {
  if (reply == nullptr || reply->str == nullptr) return {};
  return {reply->str, reply->len};
}

}  // namespace keygate::store
